#!/usr/bin/env bash
# The whole test suite: unit, flow (1 and 2 workers) and integration tests
# against real Kafka-API, Redis and PostgreSQL processes that the test session
# starts itself (or external ones given by KAFKA_BOOTSTRAP_SERVERS, REDIS_URL,
# POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/install_chromium.sh  # the dashboard browser tests (Debian chromium)
exec .venv/bin/python -m pytest "$@"
