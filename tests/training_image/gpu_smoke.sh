#!/usr/bin/env bash
# GPU smoke run of the `train` entrypoint on a device machine with no network (see gpu_smoke.py).
# Carry: .whl (LLaMA-Factory's pure-Python pins), .whl-qlora (bitsandbytes, optional) and
# .venv-train/gpu-wheels (deepspeed and its small dependencies: `make -C training_image gpu-wheels`).
set -euo pipefail
# NVLink multicast is off on the lent machines (device notes).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/llmft-smoke-out}
site=/tmp/llmft-site
python3 -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl .venv-train/gpu-wheels/*.whl
for archive in .whl-qlora/*.tgz; do [ -e "$archive" ] && tar xzf "$archive" -C "$site"; done
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" ./training_image
export PYTHONPATH="$site" PATH="$site/bin:$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, llamafactory, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)"
command -v train
python3 tests/training_image/gpu_smoke.py "$OUT"
