#!/usr/bin/env bash
# Side-by-side benchmark of Switchyard against nginx, HAProxy, Caddy (and H2O over HTTP/2).
#
#   bench/run.sh            full run (about 14 minutes)
#   bench/run.sh --quick    short run (about 90 s)
#
# Options (after the mode):  --no-build   use the existing build/switchyard
#                            --only LIST  comma list of proxies (nginx,haproxy,caddy,h2o,switchyard,
#                                         switchyard_uring: the io_uring row)
# Environment: BENCH_PORT_BASE (default 28000), BENCH_CLIENT_CPU (default 1; empty = no pinning).
# See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS="$BENCH_DIR/results"
SWITCHYARD="$REPO/build/switchyard"

MODE=()
BUILD=1
PASS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=(--quick) ;;
        --no-build) BUILD=0 ;;
        --only) PASS+=(--only "$2"); shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

mkdir -p "$RESULTS"

# ---------------------------------------------------------------- tools
need=()
command -v nginx   >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]   || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v caddy   >/dev/null 2>&1 || need+=(caddy)
command -v h2o     >/dev/null 2>&1 || need+=(h2o)
command -v h2load  >/dev/null 2>&1 || need+=(nghttp2-client)
command -v wrk     >/dev/null 2>&1 || need+=(wrk)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl    >/dev/null 2>&1 || need+=(curl)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/bin/python3 ] || need+=(python3)
install_packages run.sh ${need[@]+"${need[@]}"}
export PATH="$PATH:/usr/sbin:/sbin"

for svc in nginx haproxy caddy h2o; do
    if pgrep -x "$svc" >/dev/null 2>&1 && [ -z "${BENCH_QUIET_SERVICES:-}" ]; then
        echo "note: a '$svc' not started by this harness is running; it is left alone (this harness uses its own ports, checked free)."
    fi
done

# ---------------------------------------------------------------- switchyard
BUILD_FAILED=""
if [ "$BUILD" = 1 ]; then
    echo "== building Switchyard (make -C $REPO)"
    buildlog="$RESULTS/build.log"
    if ! make -C "$REPO" -j"$(nproc)" >"$buildlog" 2>&1; then
        echo "!! make failed: Switchyard rows will be n/a (log: $buildlog)"
        tail -n 15 "$buildlog" | sed 's/^/   | /'
        BUILD_FAILED="$buildlog"
    fi
fi

# ---------------------------------------------------------------- limits
# 10,000 idle connections need that many descriptors in the proxy and the client.
ulimit -Hn 1048576 2>/dev/null || ulimit -Hn 65536 2>/dev/null || true
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- run
# bench.py stops everything it started; this trap is the second line of defence:
# every server's pid is written to <run dir>/pids and killed here if still alive.
child=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    for f in "$RESULTS"/run-*/pids; do
        [ -e "$f" ] || continue
        [ "$f" -nt "$stamp_file" ] || continue
        while read -r pid exe; do
            if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$exe"; then
                kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            fi
        done < "$f"
    done
    rm -f "$stamp_file"
    exit "$rc"
}
stamp_file=$(mktemp)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 "$BENCH_DIR/bench.py" "${MODE[@]}" ${PASS[@]+"${PASS[@]}"} \
    --switchyard "$SWITCHYARD" --switchyard-build-failed "$BUILD_FAILED" --results "$RESULTS" &
child=$!
wait "$child"
