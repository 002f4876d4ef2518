#!/usr/bin/env bash
# The Dagster UI on http://127.0.0.1:3000 with the sensor running against the local broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
sf-sync kafka start
sf-sync topics create
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.sf-sync/dagster}"
mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
exec dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
