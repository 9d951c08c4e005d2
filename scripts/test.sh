#!/usr/bin/env bash
# README command 2: install the test extras (idempotent) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,test
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest "$@"
