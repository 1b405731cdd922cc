#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser tests: Debian's own package
# (never a browser download). Idempotent: does nothing when /usr/bin/chromium
# exists. Needs root (CI runs as root) or sudo.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "==> installing chromium with apt-get (browser tests)" >&2
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq >&2
as_root apt-get install -y -qq chromium >&2
[ -x /usr/bin/chromium ] || { echo "chromium did not install at /usr/bin/chromium" >&2; exit 1; }
