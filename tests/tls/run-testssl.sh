#!/bin/sh
# Runs testssl (Debian package "testssl.sh") against a TLS listener in a bounded
# mode and fails when any finding is rated HIGH or CRITICAL.
#
#   tests/tls/run-testssl.sh [--ca FILE] [--out FILE.json] [--allow ID]... HOST:PORT [testssl args]
#
# --ca FILE   trust this CA as well (test certificates), so an untrusted chain is
#             not reported as a finding of its own.
# --out FILE  keep the JSON findings there (default: a temporary file, removed).
# --allow ID  do not fail on the finding with this testssl id (repeatable), for
#             what test certificates cannot have, e.g. --allow cert_revocation.
#             With several certificates served (ECDSA and RSA), testssl suffixes
#             certificate ids with " <cert#N>": ID matches all of them.
#
# Exit status: 0 clean, 1 HIGH/CRITICAL finding(s) (printed), 2 usage or tool error.
# TESTSSL_TIMEOUT (seconds, default 600) bounds the whole run.
set -eu

ca=
out=
allow=
while [ $# -gt 0 ]; do
    case "$1" in
    --ca) ca=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --allow) allow="$allow $2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
if [ $# -lt 1 ]; then
    echo "usage: $0 [--ca FILE] [--out FILE.json] [--allow ID]... HOST:PORT [testssl args]" >&2
    exit 2
fi
target=$1
shift

for tool in testssl jq timeout; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run-testssl: $tool not found" >&2; exit 2; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
json=${out:-$tmp/findings.json}
rm -f "$json"

# Bounded run: protocols, cipher categories, forward secrecy, server defaults,
# headers and the known vulnerabilities, with openssl doing the cipher walk (--fast).
set -- --quiet --color 0 --warnings batch --nodns min --fast \
    --connect-timeout 10 --openssl-timeout 10 \
    --protocols --std --fs --server-defaults --headers --vulnerable \
    --jsonfile "$json" "$@"
if [ -n "$ca" ]; then
    set -- --add-ca "$ca" "$@"
fi

status=0
timeout "${TESTSSL_TIMEOUT:-600}" testssl "$@" "$target" >"$tmp/log" 2>&1 || status=$?
if [ "$status" -eq 124 ]; then
    echo "run-testssl: testssl did not finish within ${TESTSSL_TIMEOUT:-600} s (TESTSSL_TIMEOUT);" \
        "its findings are incomplete. Its output:" >&2
    tail -n 40 "$tmp/log" >&2
    exit 2
fi
if [ ! -s "$json" ]; then
    echo "run-testssl: testssl produced no findings (exit $status); its output:" >&2
    tail -n 40 "$tmp/log" >&2
    exit 2
fi

# testssl's own exit status also counts findings of other kinds; the verdict
# comes from the severities only.
allowed=$(printf '%s\n' $allow | jq -R 'select(length > 0)' | jq -s .)
bad=$(jq -r --argjson allowed "$allowed" '.[]
        | select(.severity == "HIGH" or .severity == "CRITICAL")
        | select((.id | sub(" <cert#[0-9]+>$"; "")) as $id | $allowed | index($id) | not)
        | "\(.severity)\t\(.id)\t\(.finding)"' "$json")
total=$(jq 'length' "$json")
if [ -n "$allow" ]; then
    echo "run-testssl: allowed finding ids:$allow"
fi
if [ -n "$bad" ]; then
    echo "run-testssl: $target: HIGH/CRITICAL findings:"
    printf '%s\n' "$bad"
    exit 1
fi
echo "run-testssl: $target: $total findings, none HIGH or CRITICAL"
