#!/usr/bin/env bash
# Device-side wrapper for bench_lora.py (one H100, no network): installs the carried wheels, records the
# hardware and versions, then runs the benchmark with the given arguments. Everything lands in $OUT.
#   run (device tool): bash benchmarks/run_h100.sh --run 'stock|...' --run 'default|...'
# carry: .whl (pure-Python pins, ~17 MB) and, for QLoRA rows, .whl-qlora (bitsandbytes, CUDA 13.0 library only).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_HOME=/tmp/hf TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
for t in .whl-qlora/*.tgz; do [ -e "$t" ] && tar xzf "$t" -C /tmp/site; done
export PYTHONPATH=/tmp/site
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv
  nvidia-smi
  python3 - <<'EOF'
import importlib, sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
for m in ["transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "llamafactory", "liger_kernel",
          "triton", "bitsandbytes"]:
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"), mod.__file__)
    except Exception as e:  # noqa: BLE001
        print(m, "NOT IMPORTABLE", type(e).__name__, e)
EOF
} > "$OUT/env.txt" 2>&1
head -4 "$OUT/env.txt"; grep -E "^(python|transformers|llamafactory|liger|bitsandbytes|peft)" "$OUT/env.txt"
python3 benchmarks/bench_lora.py all --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log"
