#!/usr/bin/env bash
# Install the system packages the protocol tests need and pip cannot give: Debian's XRootD server and
# client (xrootd-server, xrootd-client). SeaweedFS (S3) and WsgiDAV (WebDAV) come with the test extra.
# Idempotent and quiet: does nothing when xrootd is already on PATH. Needs root (or sudo) for apt-get;
# without them it fails, since the tests must not be skipped for a missing server.
set -euo pipefail

if command -v xrootd >/dev/null 2>&1 && command -v xrdcp >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo -n)
else
    echo "install-test-deps: xrootd is missing and there is no root or sudo to apt-get it" >&2
    exit 1
fi

# A missing package list makes apt-get install fail, so refresh it first (quietly).
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    xrootd-server xrootd-client >/dev/null
echo "install-test-deps: installed $(xrootd -v 2>&1 | head -n 1) (xrootd-server, xrootd-client)"
