#!/usr/bin/env bash
# The main job: install into .venv if needed, then replay the sample market
# through the whole pipeline (no servers needed) and print the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh local
exec .venv/bin/alpha-panda replay --ticks examples/ticks.jsonl --strategies examples/strategies.yaml --out out/replay "$@"
