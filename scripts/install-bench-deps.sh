#!/usr/bin/env bash
# Install what the benchmarks compare against and the project does not need: Debian's rclone.
# Idempotent: does nothing when rclone is already on PATH. Needs root (or sudo) for apt-get.
set -euo pipefail

if command -v rclone >/dev/null 2>&1; then
    echo "rclone already installed: $(rclone version 2>/dev/null | head -n 1)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-bench-deps: need root or sudo for apt-get; the rclone column will print n/a" >&2
    exit 0
fi

# A missing package list makes apt-get install fail, so refresh it first (quietly).
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends rclone
echo "installed: $(rclone version | head -n 1)"
