#!/usr/bin/env bash
# Multi-host rehearsal of the SageMaker multi-node path on ONE machine with two GPUs:
# two `train` entrypoints (training_image's console script), one GPU each, each with its own fake /opt/ml
# tree (moved with LLMFT_OPT_ML) whose resourceconfig.json makes it algo-1 or algo-2 of a two-host job.
# The entrypoint plans torchrun --nnodes=2 itself; the master name algo-1 resolves to 127.0.0.1 through
# /etc/hosts. Recipe `lora` as shipped (DeepSpeed ZeRO-3 across nodes), a tiny random Llama, a few steps.
#
# Device (nvidia-h100-x2), carry .whl and .whl-ds:   bash benchmarks/multihost_rehearsal.sh
# CPU smoke test of the plumbing here (no GPU, DDP/gloo, hosts 127.0.0.1 + localhost):
#   MODE=cpu PY=/tmp/bench-venv/bin/python bash benchmarks/multihost_rehearsal.sh
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/hf
MODE=${MODE:-gpu}
PY=${PY:-python3}
OUT=${OUT:-/tmp/rehearsal-out}
W=${W:-/tmp/rehearsal}
REPO=$PWD
mkdir -p "$OUT"
rm -rf "$W"
mkdir -p "$W"
LOG="$OUT/rehearsal.log"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

if [ "$MODE" = gpu ]; then
  H1=algo-1; H2=algo-2; DIST=deepspeed_zero3
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-ds/*.whl \
    || { say "wheel install failed"; exit 1; }
  # the real console script `train` from training_image/pyproject.toml
  if $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/site-train ./training_image \
      && [ -x /tmp/site-train/bin/train ]; then
    export PYTHONPATH=/tmp/site-train:/tmp/site:$REPO/benchmarks
    TRAIN=/tmp/site-train/bin/train
    say "== entrypoint: console script $TRAIN (pip-installed from ./training_image)"
  else  # same function the console script calls (pyproject: train = llmft_train.cli:main)
    export PYTHONPATH=$REPO/training_image:/tmp/site:$REPO/benchmarks
    printf '#!/usr/bin/env python3\nimport sys\nfrom llmft_train.cli import main\nsys.exit(main())\n' > /tmp/train && chmod +x /tmp/train
    TRAIN=/tmp/train
    say "== entrypoint: pip install of ./training_image failed; using llmft_train.cli:main directly"
  fi
  grep -q "algo-1" /etc/hosts || echo "127.0.0.1 algo-1 algo-2" >> /etc/hosts
  say "== /etc/hosts: $(grep algo /etc/hosts)"
  nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee -a "$LOG"
  say "deepspeed: $($PY -c 'import deepspeed; print(deepspeed.__version__)' 2>&1 | tail -1)"
else
  H1=127.0.0.1; H2=localhost; DIST=ddp
  export PYTHONPATH=/tmp/stubs:$REPO/training_image:$REPO/benchmarks
  TRAIN="$PY -c 'import sys; from llmft_train.cli import main; sys.exit(main())'"
fi
say "== mode=$MODE hosts=[$H1, $H2] distributed=$DIST"

# Shared assets: a tiny random Llama (Llama-3 vocabulary layout) and alpaca rows, from bench_lora.py.
$PY - "$W" "$MODE" <<'EOF' 2>&1 | tail -2 | tee -a "$LOG"
import sys
from pathlib import Path
import bench_lora as b
w, mode = Path(sys.argv[1]), sys.argv[2]
shape = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=512, vocab_size=128256)
(w / "model").mkdir(parents=True)
b.build_model(w / "model", shape, "cuda" if mode == "gpu" else "cpu")
b.build_tokenizer(w / "model")
print("data", b.build_data(w / "data", 600))
EOF

run_pair() {  # $1 = distributed strategy, $2 = tag for the fake roots and logs
  local DIST=$1 TAG=$2 i=0 H R
  local HP='{"recipe": "lora", "distributed": "'$DIST'", "template": "llama3", "max_steps": "6", "logging_steps": "1", "save_steps": "3", "preprocessing_num_workers": "2"}'
  [ "$MODE" = cpu ] && HP='{"recipe": "lora", "distributed": "ddp", "template": "llama3", "max_steps": "3", "logging_steps": "1", "save_steps": "2", "preprocessing_num_workers": "2", "cutoff_len": "256", "per_device_train_batch_size": "1"}'
  for H in "$H1" "$H2"; do
    i=$((i + 1))
    R="$W/$TAG-$i"
    mkdir -p "$R/input/config" "$R/input/data/train" "$R/input/data/model" "$R/checkpoints" "$R/model" "$R/output"
    cp "$W"/model/* "$R/input/data/model/"
    $PY -c "import json; rows=json.load(open('$W/data/bench_alpaca.json')); open('$R/input/data/train/train.jsonl','w').write(''.join(json.dumps(r)+'\\n' for r in rows))"
    echo "$HP" > "$R/input/config/hyperparameters.json"
    echo '{"current_host": "'$H'", "hosts": ["'$H1'", "'$H2'"], "network_interface_name": "lo"}' > "$R/input/config/resourceconfig.json"
    echo '{"train": {"TrainingInputMode": "File"}, "model": {"TrainingInputMode": "File"}}' > "$R/input/config/inputdataconfig.json"
  done
  say "======== run $TAG: distributed=$DIST"
  say "== node 1 resourceconfig: $(cat $W/$TAG-1/input/config/resourceconfig.json)"
  say "== node 2 resourceconfig: $(cat $W/$TAG-2/input/config/resourceconfig.json)"
  say "== hyperparameters: $HP"
  if [ "$MODE" = gpu ]; then
    ( export CUDA_VISIBLE_DEVICES=0 LLMFT_OPT_ML=$W/$TAG-1; timeout 300 $TRAIN > "$OUT/$TAG-node1.log" 2>&1; echo $? > "$W/$TAG-rc1" ) &
    ( export CUDA_VISIBLE_DEVICES=1 LLMFT_OPT_ML=$W/$TAG-2; timeout 300 $TRAIN > "$OUT/$TAG-node2.log" 2>&1; echo $? > "$W/$TAG-rc2" ) &
  else
    ( export LLMFT_GPUS_PER_NODE=0 LLMFT_OPT_ML=$W/$TAG-1; eval timeout 300 $TRAIN > "$OUT/$TAG-node1.log" 2>&1; echo $? > "$W/$TAG-rc1" ) &
    ( export LLMFT_GPUS_PER_NODE=0 LLMFT_OPT_ML=$W/$TAG-2; eval timeout 300 $TRAIN > "$OUT/$TAG-node2.log" 2>&1; echo $? > "$W/$TAG-rc2" ) &
  fi
  wait
  RC1=$(cat $W/$TAG-rc1); RC2=$(cat $W/$TAG-rc2)
  say "== exit codes: algo-1 (node 1) rc=$RC1  algo-2 (node 2) rc=$RC2"
  for i in 1 2; do
    R="$W/$TAG-$i"
    say "---- node $i: entrypoint + rank lines"
    grep -E "^llmft (data|recipe|training|failed|step=)|Process rank|world size|Saving model checkpoint|Training completed|DeepSpeed|FSDP|Error" "$OUT/$TAG-node$i.log" \
      | head -40 | tee -a "$LOG"
    say "---- node $i: files under /opt/ml/model and /opt/ml/checkpoints (fake root $R)"
    (cd "$R" && find model checkpoints -maxdepth 2 -type f | sort) | tee -a "$LOG"
    [ -s "$R/output/failure" ] && say "failure file: $(cat $R/output/failure)"
  done
  local a1 a2
  a1=$(ls "$W/$TAG-1/model/adapter_model.safetensors" 2>/dev/null | wc -l)
  a2=$(find "$W/$TAG-2/model" "$W/$TAG-2/checkpoints" -name "adapter_model*" 2>/dev/null | wc -l)
  say "== adapter files: node 1 (algo-1, rank 0) model/adapter_model.safetensors: $a1; node 2 (algo-2) anywhere: $a2"
  [ "$RC1" = 0 ] && [ "$RC2" = 0 ] && [ "$a1" = 1 ] && [ "$a2" = 0 ]
}

if run_pair "$DIST" "$DIST"; then
  say "== REHEARSAL PASSED with distributed=$DIST"
elif [ "$MODE" = gpu ]; then
  say "== $DIST run did not pass; trying the FSDP path (distributed=fsdp) once"
  run_pair fsdp fsdp && say "== REHEARSAL PASSED with distributed=fsdp" || say "== REHEARSAL FAILED"
else
  say "== REHEARSAL FAILED"
fi
