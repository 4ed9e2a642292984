#!/usr/bin/env bash
# Install the system tools the speech stack and its tests need:
#   ffmpeg/ffprobe (audio decoding for openai-whisper), espeak-ng (test speech),
#   sox (mixing/padding test audio).
# Idempotent: a quick no-op when every command is already on PATH.
# Installs with apt-get only when running as root on Debian/Ubuntu; otherwise it
# fails with a message naming the missing commands.
set -euo pipefail

REQUIRED_COMMANDS=(ffmpeg ffprobe espeak-ng sox)
APT_PACKAGES=(ffmpeg espeak-ng sox)

missing_commands() {
    local cmd
    for cmd in "${REQUIRED_COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || printf '%s\n' "$cmd"
    done
}

mapfile -t missing < <(missing_commands)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_system_packages: all present (${REQUIRED_COMMANDS[*]})"
    exit 0
fi

echo "install_system_packages: missing: ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
    echo "install_system_packages: ERROR: not root; install these manually: ${missing[*]}" \
         "(Debian/Ubuntu: apt-get install ${APT_PACKAGES[*]})" >&2
    exit 1
fi
if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_packages: ERROR: not a Debian-based system; install these manually:" \
         "${missing[*]} (packages: ${APT_PACKAGES[*]})" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"

mapfile -t still_missing < <(missing_commands)
if [ "${#still_missing[@]}" -ne 0 ]; then
    echo "install_system_packages: ERROR: still missing after apt-get: ${still_missing[*]}" >&2
    exit 1
fi
echo "install_system_packages: installed ${APT_PACKAGES[*]}"
