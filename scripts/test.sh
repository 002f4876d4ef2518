#!/usr/bin/env bash
# The test command: installs, starts a local Kafka broker if none is running, runs the
# linter and the whole test suite against it, and stops the broker it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

started=0
if ! sf-sync kafka status >/dev/null 2>&1; then
  sf-sync kafka start
  started=1
fi
stop_broker() { if [ "$started" = 1 ]; then sf-sync kafka stop || true; fi; }
trap stop_broker EXIT

ruff check .
ruff format --check .
pytest -q "$@"
