#!/usr/bin/env bash
# Offline checks of the deployment: renders the AKS overlay, validates every
# object against the Kubernetes API schemas, checks the policies, the gateway
# config (with build/switchyard when it exists), the Terraform files, the
# Dockerfile and every shell script under deploy/. Needs no cluster and no
# cloud account: kubectl, node/npm, shellcheck and python3-pytest/python3-yaml.
#
#   deploy/check.sh [pytest arguments]
set -euo pipefail

deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$deploy_dir/.." && pwd)
tools_dir="$deploy_dir/tools"

for tool in kubectl node npm shellcheck; do
    if ! command -v "$tool" > /dev/null 2>&1; then
        echo "check.sh: $tool is required" >&2
        exit 1
    fi
done

# PyYAML for the tests (Debian: python3-yaml).
if ! /usr/bin/python3 -c 'import yaml, pytest' > /dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get > /dev/null 2>&1; then
        apt-get install -y -q python3-yaml python3-pytest > /dev/null
    else
        echo "check.sh: install python3-yaml and python3-pytest" >&2
        exit 1
    fi
fi

# npm tools, installed locally from the lock file when missing or stale.
stamp="$tools_dir/node_modules/.package-lock.json"
if [[ ! -f "$stamp" || "$tools_dir/package-lock.json" -nt "$stamp" ]]; then
    npm ci --prefix "$tools_dir" --no-audit --no-fund --loglevel=error
fi

cd "$repo_dir"
exec /usr/bin/python3 -m pytest -q tests/deploy "$@"
