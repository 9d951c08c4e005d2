#!/usr/bin/env bash
# Wheels of what the device check needs beyond a CUDA machine's usual image (torch, numpy,
# scipy, xarray, h5py, matplotlib, torchmetrics, tqdm, pyyaml are taken as there), at the
# versions of this checkout's .venv, for another Python (default 3.12) on x86_64 Linux:
#
#   bash scripts/gpu-wheels.sh [DIR=.whl] [PYTHON_VERSION=3.12]
#
# On the GPU machine, before scripts/gpu-check.sh:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#   export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
pyver=${2:-3.12}
packages="netCDF4 cftime jsonschema jsonschema-specifications referencing rpds-py dask distributed
partd locket tblib zict tornado cryptography cffi pycparser"
mkdir -p "$dir"
for name in $packages; do
  version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$dir" "$name==$version"
done
du -sh "$dir"
