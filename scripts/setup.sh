#!/usr/bin/env bash
# Set up xeonft in ./.venv: torch's CPU build (pinned), then the package with its test tools, constrained to
# envs/current.txt (the stack the tests and the shipped figures were made on).
# Idempotent: a second run only checks. XEONFT_TORCH overrides the torch requirement (and drops the constraints).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${XEONFT_TORCH:-torch==2.13.0}
CONSTRAINTS=(-c envs/current.txt)
[ -n "${XEONFT_TORCH:-}" ] && CONSTRAINTS=()
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_install() {  # pip's own exit status survives the filter (pipefail)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
}
# torch first and pinned: an unpinned torch from PyPI is the multi-GB CUDA build. Users elsewhere add
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# to get the CPU wheel (this workplace's pip finds it on local disk).
pip_install "$TORCH"
pip_install "${CONSTRAINTS[@]}" -e ".[dev]"
.venv/bin/python -c "import torch, transformers, trl, peft; print(f'xeonft env: torch {torch.__version__}, \
transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}')"
