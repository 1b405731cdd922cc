#!/usr/bin/env bash
# Regenerate docs/report.png: replay examples/, write its report, and screenshot
# the page with headless Chromium (Debian: apt-get install -y chromium).
# Usage: bash scripts/report_screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
png=${1:-docs/report.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no Chromium found: apt-get install -y chromium" >&2; exit 1; }
work=out/report-example  # git-ignored; the page names this directory as its source
.venv/bin/alpha-panda replay --ticks examples/ticks.jsonl --strategies examples/strategies.yaml \
    --out "$work" --quiet --report >/dev/null
mkdir -p "$(dirname "$png")"
# --no-sandbox: Chromium refuses to run as root otherwise. The virtual-time
# budget lets plotly finish drawing before the shot.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000 \
    --window-size=1400,1000 --screenshot="$png" "file://$PWD/$work/report.html" 2>/dev/null
echo "wrote $png"
