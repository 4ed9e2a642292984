#!/usr/bin/env bash
# Install Debian's `prometheus` package, for `promtool` and the `prometheus` binary that
# tests/integration/test_deploy_files.py runs on loopback against deploy/'s config.
#
# Idempotent: a quick no-op when both commands are already on PATH. Installs with apt-get
# only as root on Debian/Ubuntu; otherwise it fails with a message saying what to install.
# The package's own daemon is NOT started: a temporary policy-rc.d forbids service starts
# during the install (unless the system already has a policy-rc.d), so nothing ends up
# listening or scraping.
set -euo pipefail

say() { echo "install_prometheus: $*" >&2; }

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    say "already installed ($(prometheus --version 2>&1 | head -n 1))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "ERROR: not root; install it manually (Debian/Ubuntu: apt-get install prometheus)"
    exit 1
fi
if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
    say "ERROR: not a Debian-based system; install Prometheus (prometheus and promtool) manually"
    exit 1
fi

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# install_prometheus.sh: no service starts during the install\nexit 101\n' \
        > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    say "ERROR: prometheus or promtool still missing after apt-get install prometheus"
    exit 1
fi
say "installed $(prometheus --version 2>&1 | head -n 1)"
