#!/usr/bin/env bash
# Install what the tests need into the current Python environment, lint, and run the tests:
#
#     bash scripts/test.sh                 # the default suite (CI runs exactly this line)
#     bash scripts/test.sh -m slow         # arguments go to pytest: the long reproductions
#
# torch: an installed torch is kept (a CUDA build stays a CUDA build). Otherwise, with an NVIDIA GPU
# visible, the default build; without one, the CPU-only build (TORCH_CPU, default torch==2.13.0+cpu),
# tried from the configured package sources first (a local wheel or mirror: no network wait), then from
# the PyTorch CPU index with no retries, and only then the default build (which on Linux is the
# multi-GB CUDA one, so the script says so). PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TORCH_CPU=${TORCH_CPU:-torch==2.13.0+cpu}
CPU_INDEX=https://download.pytorch.org/whl/cpu
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

if "$PY" -c "import torch" 2>/dev/null; then
  echo "scripts/test.sh: keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  pip_install "torch>=2.4"
elif pip_install "$TORCH_CPU" 2>/dev/null; then
  echo "scripts/test.sh: installed $TORCH_CPU from the configured package sources"
elif pip_install "$TORCH_CPU" --index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple --retries 0 --timeout 20; then
  echo "scripts/test.sh: installed $TORCH_CPU from $CPU_INDEX"
else
  echo "scripts/test.sh: no CPU-only torch reachable ($CPU_INDEX); installing the default build" >&2
  pip_install "torch>=2.4"
fi
pip_install -e '.[dev]'
"$PY" -m ruff check .
"$PY" -m pytest "$@"
