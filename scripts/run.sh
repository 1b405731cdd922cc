#!/usr/bin/env bash
# The main job: install into .venv if needed, then run `alpha-panda demo`:
# real Kafka-API (Tansu), Redis and PostgreSQL servers on loopback, the live
# pipeline on a simulated market for about a minute with live progress, and a
# summary read back from Redis and the Postgres ledger. Extra arguments go to
# `alpha-panda demo` (e.g. --duration 20 --mode per-stage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/alpha-panda demo "$@"
