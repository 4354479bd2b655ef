#!/usr/bin/env bash
# Issue 13, second exploratory call (one H200), at the parity learning rate 1e-3: the host-stall keys a recipe can
# set by itself, and the torch_compile probe, to see the harness reject it.
# run (device tool): bash benchmarks/calls/explore2.sh   carry: [".whl", ".whl-qlora"]
R=training_image/llmft_train/recipes
L="$R/lora.yaml"
S="steps=16,warmup=3"
P="learning_rate=1.0e-3"
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-380}
exec bash benchmarks/run_h100.sh --rows 1500 --run-timeout 200 \
  --run "default|$L|$P|$S" \
  --run "workers4|$L|$P,dataloader_num_workers=4|$S,ref=default" \
  --run "no_nan_filter|$L|$P,logging_nan_inf_filter=false|$S,ref=default" \
  --run "compile_full|$L|$P,torch_compile=true|$S,ref=default"
