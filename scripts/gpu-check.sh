#!/usr/bin/env bash
# The GPU paths checked in one run (issue 16): the solver, every emulator kind, DDP training
# under torchrun (nccl) with kill and resume, and the timing stage's GPU rows, on synthetic
# cubes the check makes itself, in at most about 8 minutes on one GPU.
#
#   bash scripts/gpu-check.sh OUT                 # on CUDA (paper sizes)
#   bash scripts/gpu-check.sh OUT --device cpu    # the same code paths on the CPU (small sizes; CI)
#
# Further options go to `python -m devicecheck` (devicecheck/ beside bench/; --size, --budget-s,
# --world, --work).
# Writes OUT/gpu-check.json and OUT/gpu-check.md; exits 1 when a check fails or CUDA is absent,
# 3 when a package it needs is missing. Uses ./.venv when there is one (README command 1), else
# $PYTHON or python3 with ./src on PYTHONPATH (a GPU machine with its own CUDA build of torch;
# scripts/gpu-wheels.sh fetches the other packages as wheels: README "Checking the GPU paths").
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu-check.sh OUT [--device cpu] [options of python -m devicecheck]}
shift
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then
  py=.venv/bin/python
  export PATH="$PWD/.venv/bin:$PATH"
else
  py=${PYTHON:-python3}
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$py" -c '
import importlib.util
need = ("torch", "numpy", "scipy", "xarray", "netCDF4", "h5py", "yaml", "jsonschema", "dask",
        "distributed", "cryptography", "torchmetrics", "matplotlib", "tqdm")
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))')
if [ -n "$missing" ]; then
  echo "gpu-check: $py lacks: $missing (scripts/gpu-wheels.sh fetches them as wheels)" >&2
  exit 3
fi
# from the repository root (the cd above), where `python -m devicecheck` finds devicecheck/
exec "$py" -m devicecheck "$out" "$@"
