#!/usr/bin/env bash
# The main job on embedded defaults: installs, starts the local broker, creates the topics,
# produces a synthetic Salesforce stream (with some bad messages), ingests it through the
# Dagster sensor and job, and prints a look at the history. `sf-sync kafka stop` stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/sf-sync demo "$@"
