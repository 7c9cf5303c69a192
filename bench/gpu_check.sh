#!/usr/bin/env bash
# GPU check (see bench/gpu_check.py): packed vs padded, LoRA and full, on a ~100M Llama at 2048 tokens.
# On a machine without network: wheels carried in .whl/ are installed first (see the device notes in
# the README); the machine's own torch (CUDA) is used. Needs ../shared/data beside the checkout, or
# SHARED=path/to/shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu_check.py --shared "${SHARED:-../shared/data}" "$@"
