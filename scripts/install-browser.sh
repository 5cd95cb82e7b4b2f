#!/usr/bin/env bash
# Install Debian's chromium for the demo's browser test (Playwright drives /usr/bin/chromium;
# no browser is downloaded). Does nothing when it is already there.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
install=("${as_root[@]}" apt-get install -y -q --no-install-recommends chromium)
"${install[@]}" >/dev/null || { "${as_root[@]}" apt-get update -q >/dev/null && "${install[@]}" >/dev/null; }
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium installed')"
