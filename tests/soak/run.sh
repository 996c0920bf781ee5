#!/bin/sh
# Long soak: the tests/e2e/test_83_soak.py load (wrk over mixed routes,
# WebSocket echo clients, a SIGHUP reload every 2 s) for minutes, then the
# same under the ASan/LSan build for a third of the time.
#
#   tests/soak/run.sh [SECONDS]      default 600
#
# Needs build/switchyard (`make`) and build-asan/switchyard (`make asan`).
# Prints requests, WebSocket messages, reloads, RSS and open fds before/after.
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:-600}
[ -x build/switchyard ] || { echo "soak: build/switchyard missing (run make)" >&2; exit 1; }
[ -x build-asan/switchyard ] || { echo "soak: build-asan/switchyard missing (run make asan)" >&2; exit 1; }
SWITCHYARD_SOAK_SECONDS=$seconds SWITCHYARD_BIN=$(pwd)/build/switchyard \
    exec /usr/bin/python3 -m pytest -s -q tests/e2e/test_83_soak.py
