#!/usr/bin/env bash
# Set up xeonft in ./.venv: torch's CPU build (pinned), then the package with its test tools.
# Idempotent: a second run only checks. Override the torch requirement with XEONFT_TORCH (e.g. "torch==2.8.0").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${XEONFT_TORCH:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first and pinned: an unpinned torch from PyPI is the multi-GB CUDA build. Users elsewhere add
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# to get the CPU wheel (this workplace's pip finds it on local disk).
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, transformers, trl, peft; print(f'xeonft env: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}')"
