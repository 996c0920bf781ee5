# shellcheck shell=bash
# Shared by bench/run.sh and bench/profile.sh (sourced, not run).

# install_packages WHO PKG...: installs Debian packages as root, keeping their
# system services from starting meanwhile (every server of the benchmark is
# started by hand with its own config on high ports). Exits on failure.
install_packages() {
    local who=$1; shift
    [ $# -gt 0 ] || return 0
    echo "== installing $* (Debian packages)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "$who: missing $* and not root: install them first" >&2
        exit 1
    fi
    local policy_added=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } || rc=$?
    [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { echo "$who: apt-get install failed" >&2; exit 1; }
}
