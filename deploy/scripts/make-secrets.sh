#!/usr/bin/env bash
# Creates the secret env files that the kustomize secretGenerators read:
#   base/postfacto/secrets/app.env       SECRET_KEY_BASE (shared by 4.1.0 and 4.2.0)
#   base/postfacto/secrets/admin.env     ADMIN_EMAIL, ADMIN_PASSWORD
#   base/postfacto/secrets/backup.env    AZURE_STORAGE_KEY (backup storage account)
#   base/postfacto/v<version>/secrets/db.env   POSTGRES_PASSWORD, REDIS_PASSWORD
# Random values come from /dev/urandom. Files that exist are kept, so running
# the script again never rotates a password under a running database; pass
# --force to rewrite them all.
#
# Usage: deploy/scripts/make-secrets.sh [--force] [K8S_DIR]
#   K8S_DIR       the kustomize tree (default: deploy/k8s next to this script)
#   ADMIN_EMAIL   admin account e-mail (default admin@example.org)
#   AZURE_STORAGE_KEY  backup storage account key; when unset, the script asks
#                 `terraform output` in deploy/terraform, else leaves it empty
#                 (backups then fail until it is set).
set -euo pipefail

force=0
if [[ "${1:-}" == "--force" ]]; then
    force=1
    shift
fi
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s_dir=${1:-"$script_dir/../k8s"}
tf_dir="$script_dir/../terraform"
versions=(4.1.0 4.2.0)

if [[ ! -f "$k8s_dir/base/postfacto/kustomization.yaml" ]]; then
    echo "make-secrets: $k8s_dir is not the deploy/k8s tree" >&2
    exit 1
fi

# random_hex N: N random bytes as 2N hex digits (URL-safe, no quoting needed).
random_hex() {
    od -An -v -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# write_env FILE LINE...: writes FILE (mode 0600) unless it exists.
write_env() {
    local file=$1
    shift
    if [[ -f "$file" && $force -eq 0 ]]; then
        echo "kept    $file"
        return
    fi
    mkdir -p "$(dirname "$file")"
    local tmp
    tmp=$(mktemp "$file.XXXXXX")
    printf '%s\n' "$@" > "$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$file"
    echo "wrote   $file"
}

storage_key=${AZURE_STORAGE_KEY:-}
if [[ -z "$storage_key" ]] && command -v terraform > /dev/null 2>&1 && [[ -d "$tf_dir/.terraform" ]]; then
    storage_key=$(terraform -chdir="$tf_dir" output -raw backup_storage_key 2> /dev/null || true)
fi
if [[ -z "$storage_key" ]]; then
    echo "make-secrets: AZURE_STORAGE_KEY unknown; backup.env gets an empty key (backups fail until it is set)" >&2
fi

umask 077
postfacto="$k8s_dir/base/postfacto"
write_env "$postfacto/secrets/app.env" "SECRET_KEY_BASE=$(random_hex 64)"
write_env "$postfacto/secrets/admin.env" \
    "ADMIN_EMAIL=${ADMIN_EMAIL:-admin@example.org}" \
    "ADMIN_PASSWORD=$(random_hex 16)"
write_env "$postfacto/secrets/backup.env" "AZURE_STORAGE_KEY=$storage_key"
for version in "${versions[@]}"; do
    write_env "$postfacto/v$version/secrets/db.env" \
        "POSTGRES_PASSWORD=$(random_hex 24)" \
        "REDIS_PASSWORD=$(random_hex 24)"
done
