#!/usr/bin/env bash
# Issue 13, exploratory device call (one H200): candidate speedups beside today's recipes, on the learnable task,
# each with its loss-parity verdict against the row named by ref=. Rows run in priority order; BENCH_TIMEOUT
# cuts the tail. run (device tool): bash benchmarks/calls/explore.sh   carry: [".whl", ".whl-qlora"]
R=training_image/llmft_train/recipes
L="$R/lora.yaml"
Q="$R/qlora_4bit.yaml"
S="steps=16,warmup=3"
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-555}
exec bash benchmarks/run_h100.sh --rows 1500 --run-timeout 240 \
  --run "default|$L||$S" \
  --run "nocast|$L||$S,ref=default,patch=no_input_cast" \
  --run "nocast_gpumask|$L||$S,ref=default,patch=no_input_cast+gpu_mask" \
  --run "qlora|$Q||$S" \
  --run "qlora_nogc|$Q|disable_gradient_checkpointing=true|$S,ref=qlora" \
  --run "qlora_nogc_pure|$Q|disable_gradient_checkpointing=true,pure_bf16=true|$S,ref=qlora,tol=reduced" \
  --run "nocast_gpumask_cl|$L||$S,ref=default,patch=no_input_cast+gpu_mask+compile_layers" \
  --run "nocast_flex|$L||$S,ref=default,patch=no_input_cast+flex" \
  --run "nocast_gpumask_nosync|$L|include_num_input_tokens_seen=no,logging_nan_inf_filter=false|$S,ref=default,patch=no_input_cast+gpu_mask" \
  --run "default_lr1e3|$L|learning_rate=1.0e-3|$S" \
  --run "compile_full|$L|torch_compile=true|$S,ref=default"
