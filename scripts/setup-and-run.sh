#!/usr/bin/env bash
# README command 1: install everything into ./.venv (idempotent) and run the
# default pipeline (config/config.yaml, synthetic data, CPU) on this machine.
# Extra arguments go to snakemake, e.g. `bash scripts/setup-and-run.sh -n`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
export PATH="$PWD/.venv/bin:$PATH"
exec snakemake --cores "${COEMU_CORES:-all}" "$@"
