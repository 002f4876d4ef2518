#!/usr/bin/env bash
# Stops what scripts/up.sh started (simulator, Dagster, dev org, broker), each by its PID file.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/sf-sync down "$@"
