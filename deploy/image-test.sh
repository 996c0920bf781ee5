#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile, as it is, on a machine that
# reaches Debian's package archive but no image registry, then runs the image the way the
# Deployment does through the shipped-configuration journey
# (tests/acme/test_shipped_journey.py with SWITCHYARD_IMAGE set).
#
# The base images the Dockerfile names in FROM (debian:12, debian:12-slim) are made here when
# podman does not have them: debootstrap (minbase) of Debian 12 into a root file system,
# cached as build/image/debian-12-rootfs.tar, imported under each FROM name. A second run
# reuses the cache and podman's layer cache.
#
#   deploy/image-test.sh            (root; or: make image-test)
#   IMAGE=name:tag                  the tag to build (default localhost/switchyard:image-test)
#   DEBIAN_MIRROR=URL               for debootstrap (default: the machine's own apt source)
#   IMAGE_TEST_FRESH=1              forget the cached root file system and the base images
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$repo/build/image"
rootfs_tar="$cache/debian-12-rootfs.tar"
image=${IMAGE:-localhost/switchyard:image-test}
# The Debian archive this machine's apt already uses (deb822 or one-line sources).
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        if [[ -f $f ]]; then
            awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' "$f"
        fi
    done
    if [[ -f /etc/apt/sources.list ]]; then
        awk '$1 == "deb" && $2 ~ /^http/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list
    fi
    return 0
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
if [[ -z $mirror ]]; then
    echo "image-test: no Debian archive found in the apt sources; set DEBIAN_MIRROR" >&2
    exit 1
fi
# podman's defaults exceed this machine's hard limits; crun refuses its cgroup setup.
podman_opts=(--runtime runc)
limits=(--ulimit nofile=16384:16384 --ulimit nproc=4096:4096)

start=$(date +%s)
step() { printf 'image-test: [%3ds] %s\n' "$(($(date +%s) - start))" "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "image-test: run as root (debootstrap, podman, mount namespaces)" >&2
    exit 1
fi
for tool in podman runc debootstrap pebble pebble-challtestsrv kubectl curl; do
    if ! command -v "$tool" > /dev/null 2>&1; then
        echo "image-test: $tool is required (scripts/install-deps.sh installs it)" >&2
        exit 1
    fi
done

# The base images, by the names the Dockerfile uses (stage names excluded).
mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' "$repo/Dockerfile" | sort -u |
    while read -r name; do
        grep -qiE "^FROM[[:space:]].*[[:space:]]AS[[:space:]]+$name([[:space:]]|\$)" \
            "$repo/Dockerfile" || echo "$name"
    done)
if [[ ${#bases[@]} -eq 0 ]]; then
    echo "image-test: no base image named in the Dockerfile" >&2
    exit 1
fi
for name in "${bases[@]}"; do
    case "$name" in
        debian:12 | debian:12-slim | docker.io/library/debian:12 | docker.io/library/debian:12-slim) ;;
        *)
            echo "image-test: the Dockerfile's base $name is not Debian 12: cannot make it here" >&2
            exit 1
            ;;
    esac
done

if [[ -n ${IMAGE_TEST_FRESH:-} ]]; then
    rm -f "$rootfs_tar"
    for name in "${bases[@]}"; do
        podman "${podman_opts[@]}" rmi -f "docker.io/library/${name#docker.io/library/}" \
            > /dev/null 2>&1 || true
    done
fi

if [[ ! -f $rootfs_tar ]]; then
    step "debootstrap Debian 12 (minbase) from $mirror"
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    debootstrap --variant=minbase bookworm "$tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 || {
        tail -20 "$cache/debootstrap.log" >&2
        exit 1
    }
    # The sources of Debian's own images: the release, its updates and security.
    rm -f "$tmp/etc/apt/sources.list"
    cat > "$tmp/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/apt/archives/*.deb \
        "$tmp"/var/log/* "$tmp"/tmp/*
    tar --numeric-owner -C "$tmp" -cf "$rootfs_tar.part" .
    mv "$rootfs_tar.part" "$rootfs_tar"
    rm -rf "$tmp"
    trap - EXIT
fi

for name in "${bases[@]}"; do
    full="docker.io/library/${name#docker.io/library/}"
    if ! podman "${podman_opts[@]}" image exists "$full"; then
        step "import $rootfs_tar as $full"
        podman "${podman_opts[@]}" import --change 'CMD ["bash"]' "$rootfs_tar" "$full" > /dev/null
    fi
done

step "podman build -t $image (the repository's Dockerfile, unmodified)"
podman "${podman_opts[@]}" build --pull=never --network host "${limits[@]}" \
    -t "$image" -f "$repo/Dockerfile" "$repo"

step "the image as the Deployment runs it, through the shipped-configuration journey"
cd "$repo"
SWITCHYARD_IMAGE=$image /usr/bin/python3 -m pytest -q tests/acme/test_shipped_journey.py
step "done"
