#!/usr/bin/env bash
# README command 1: set everything up, then run the main job on the sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/fastprep demo "$@"
