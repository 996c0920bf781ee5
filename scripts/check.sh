#!/bin/sh
# Runs every test: installs the Debian packages the tests need (scripts/install-deps.sh,
# which brings make and the compiler on a fresh machine), then `make check`.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec make check
