#!/usr/bin/env bash
# README command 2: install the test and fit extras (idempotent) and run the whole test suite
# in COEMU_TEST_WORKERS pytest-xdist processes (default 2; 0 runs them in this process).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,test,fit
export PATH="$PWD/.venv/bin:$PATH"
# The tests marked slurm submit jobs to a real SLURM: as root, start a single-node one
# here when none answers (scripts/slurm-local.sh); otherwise deselect them with
# -m "not slurm" where there is none.
if [ "$(id -u)" = 0 ] && ! sinfo >/dev/null 2>&1; then
  bash scripts/slurm-local.sh
fi
workers=${COEMU_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
  exec python -m pytest "$@"
fi
# loadgroup: the tests that share a session's pipeline run (xdist_group marks) stay together
exec python -m pytest -n "$workers" --dist loadgroup "$@"
