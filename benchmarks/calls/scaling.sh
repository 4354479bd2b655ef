#!/usr/bin/env bash
# Issue 14, the scaling call (kind nvidia-h200-x2 or nvidia-h200-x4; no network there): installs the carried wheels
# and the real `train` console script (pip-installed from ./training_image, as multihost_rehearsal.sh does), names
# the two-host layout's hosts, records the hardware, then runs benchmarks/scaling.py over the grid in ONE call:
# every recipe on 1 GPU and on 2 (and 4 on an x4) under ddp / deepspeed_zero2 / deepspeed_zero3 / fsdp.
#   run (device tool): bash benchmarks/calls/scaling.sh          carry: [".whl", ".whl-qlora", ".whl-ds"]
# Arguments pass through to scaling.py and win over the defaults below, e.g. one recipe a call:
#   bash benchmarks/calls/scaling.sh --recipes lora
#   LAYOUTS=single,two_host bash benchmarks/calls/scaling.sh --recipes lora --modes ddp,deepspeed_zero3
# BENCH_TIMEOUT stops the grid in time for the results, the table and the logs to come back.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_HOME=/tmp/hf TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/scaling-out}
mkdir -p "$OUT"
# DeepSpeed's wheel (.whl-ds) is needed only by the deepspeed_* rows; a one-GPU-only call may leave it out.
WHEELS=(.whl/*.whl); [ -d .whl-ds ] && WHEELS+=(.whl-ds/*.whl)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "${WHEELS[@]}" || { echo "wheel install failed"; exit 1; }
for t in .whl-qlora/*.tgz; do [ -e "$t" ] && tar xzf "$t" -C /tmp/site; done
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade \
  --target /tmp/site-train ./training_image && [ -x /tmp/site-train/bin/train ] \
  || { echo "pip install of ./training_image gave no train script"; exit 1; }
export PYTHONPATH=/tmp/site-train:/tmp/site
# The two-host layout's master name must resolve (SageMaker's algo-1 is the other instance; here, this one).
grep -q "algo-1" /etc/hosts || echo "127.0.0.1 algo-1 algo-2" >> /etc/hosts

N=$(nvidia-smi -L | wc -l)
COUNTS=1
for n in 2 4 8; do [ "$n" -le "$N" ] && COUNTS="$COUNTS,$n"; done
{
  date -u
  nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv
  nvidia-smi topo -m
  nproc
  python3 - <<'PY'
import importlib, sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "nccl", torch.cuda.nccl.version())
for m in ["transformers", "peft", "trl", "accelerate", "datasets", "llamafactory", "liger_kernel", "deepspeed",
          "bitsandbytes"]:
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"), mod.__file__)
    except Exception as e:  # noqa: BLE001
        print(m, "NOT IMPORTABLE", type(e).__name__, e)
PY
} > "$OUT/env.txt" 2>&1
head -6 "$OUT/env.txt"; grep -E "^(python|llamafactory|deepspeed|bitsandbytes)" "$OUT/env.txt"

# Learning rate 1e-3 for the LoRA recipes, as issue 13's parity rows: their 1e-4 barely moves a random model in
# 16 steps, and a curve that does not move cannot tell two trainings apart. full_sft trains every weight: 1e-4.
timeout "${BENCH_TIMEOUT:-560}" python3 benchmarks/scaling.py all --out "$OUT" --work /tmp/scaling \
  --train /tmp/site-train/bin/train --gpus "$COUNTS" --layouts "${LAYOUTS:-single}" --steps 16 --warmup 3 \
  --rows 1500 --run-timeout 300 \
  --set lora:learning_rate=1.0e-3 --set qlora_4bit:learning_rate=1.0e-3 --set full_sft:learning_rate=1.0e-4 \
  "$@" 2>&1 | tee "$OUT/scaling.log"
[ "${PIPESTATUS[0]}" = 124 ] && echo "[scaling] stopped at BENCH_TIMEOUT; rows so far are in results.jsonl" \
  | tee -a "$OUT/scaling.log"
[ -d "$OUT/logs" ] && tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
[ -f "$OUT/results.jsonl" ] && python3 benchmarks/scaling.py table "$OUT/results.jsonl" | tee "$OUT/table.md"
