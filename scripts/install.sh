#!/usr/bin/env bash
# Idempotent install into ./.venv: CPU torch 2.13.0 first (so nothing pulls a
# CUDA build), then coemu in editable mode with the given extras (default: dev).
# Usage: bash scripts/install.sh [extras, e.g. dev,test]
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-dev}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.coemu-installed-$extras"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/install.sh ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[$extras]"
case ",$extras," in
  *,test,*)
    # the reference solver for the oracle tests; --no-deps so that it cannot replace torch
    .venv/bin/python -m pip install --quiet --no-deps "pomme==0.2.1" ;;
esac
case ",$extras," in
  *,fit,*)
    # the learned harmonic mean evidence; --no-deps: its wheel pins setuptools and wheel and pulls
    # jupyter; what it imports is the fit extra
    .venv/bin/python -m pip install --quiet --no-deps "harmonic==1.3.1" ;;
esac
touch "$stamp"
