#!/usr/bin/env bash
# README command 2: install the test and fit extras (idempotent) and run the whole test suite
# in COEMU_TEST_WORKERS pytest-xdist processes (default: the cores + 1, at most 8; 0 runs
# them in this process). Each worker gets cores // workers threads (tests/xdist_sharing.py).
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
cores=$(nproc)
# one more than the cores: the SLURM tests' worker mostly waits on SLURM
workers=${COEMU_TEST_WORKERS:-$((cores < 8 ? cores + 1 : 8))}
if [ "$workers" = 0 ]; then
  exec python -m pytest "$@"
fi
# loadgroup: the test modules that share a pipeline run each stay in one worker and start
# first (tests/xdist_sharing.py)
exec python -m pytest -n "$workers" --dist loadgroup "$@"
