#!/usr/bin/env bash
# Instructions per request of each proxy under valgrind/callgrind (stable on a
# busy machine). See bench/README.md.
#
#   bench/profile.sh [--no-build] [--requests N] [--only nginx,haproxy,caddy,switchyard]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS="$BENCH_DIR/results"
BUILD=1
PASS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --requests|--warmup|--only) PASS+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "profile.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$RESULTS"

need=()
for t in valgrind nginx haproxy caddy openssl; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || need+=("$t")
done
install_packages profile.sh ${need[@]+"${need[@]}"}
export PATH="$PATH:/usr/sbin:/sbin"

if [ "$BUILD" = 1 ]; then
    make -C "$REPO" -j"$(nproc)" >"$RESULTS/build.log" 2>&1 \
        || echo "!! make failed: switchyard will be n/a (log: $RESULTS/build.log)"
fi

child=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
/usr/bin/python3 "$BENCH_DIR/profile.py" --switchyard "$REPO/build/switchyard" \
    --results "$RESULTS" ${PASS[@]+"${PASS[@]}"} &
child=$!
wait "$child"
