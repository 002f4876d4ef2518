#!/usr/bin/env bash
# The main command: installs, then starts in the background the local Kafka broker, the
# Salesforce stand-in (dev org), the Dagster UI with its daemon, and a traffic simulator.
# Open http://127.0.0.1:3000 and watch the history fill in. Stop it all with scripts/down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/sf-sync up "$@"
