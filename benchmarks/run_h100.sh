#!/usr/bin/env bash
# Device-side wrapper for bench_lora.py (one H100 or H200, no network): installs the carried wheels, records the
# hardware and versions, then runs the benchmark with the given arguments. Everything lands in $OUT.
#   run (device tool): BENCH_TIMEOUT=540 bash benchmarks/run_h100.sh --run 'stock|...' --run 'default|...'
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
  python3 - <<'PY'
import importlib, sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
for m in ["transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "llamafactory", "liger_kernel",
          "triton", "bitsandbytes"]:
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"), mod.__file__)
    except Exception as e:  # noqa: BLE001
        print(m, "NOT IMPORTABLE", type(e).__name__, e)
PY
} > "$OUT/env.txt" 2>&1
head -4 "$OUT/env.txt"; grep -E "^(python|transformers|llamafactory|liger|bitsandbytes|peft)" "$OUT/env.txt"
# The bench stops at BENCH_TIMEOUT so that the log, the table and the gzipped run logs still come back.
timeout "${BENCH_TIMEOUT:-540}" python3 benchmarks/bench_lora.py all --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log"
if [ "${PIPESTATUS[0]}" = 124 ]; then
  echo "[bench] stopped at BENCH_TIMEOUT; the row in progress ends with:" | tee -a "$OUT/bench.log"
  tail -20 "$(ls -t /tmp/bench/*.log | head -1)" | tee -a "$OUT/bench.log"
fi
[ -f "$OUT/runs.log" ] && gzip -f "$OUT/runs.log"
[ -f "$OUT/results.jsonl" ] && python3 benchmarks/bench_lora.py table "$OUT/results.jsonl"
