"""Base models a recipe can train, judged from their config.json before any weight is loaded.

Pure: the training pipeline's judge applies it to an S3 model's config.json before a job starts, and the
entrypoint again to the model channel (or the Hub model's config.json) before LLaMA-Factory loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Pre-quantized checkpoints (config.json's quantization_config.quant_method) that LLaMA-Factory 0.9.5
# trains LoRA adapters on with what the image ships: bitsandbytes (QLoRA's own library), and FP8 and
# MXFP4, which it dequantizes on load.
TRAINABLE_QUANTIZATIONS = ("bitsandbytes", "fp8", "mxfp4")
# Those LLaMA-Factory loads into bf16 weights: ZeRO-3 and FSDP can shard them.
DEQUANTIZED_ON_LOAD = ("fp8", "mxfp4")
# Methods whose kernels LLaMA-Factory requires from a package the image does not ship, and why not.
NOT_SHIPPED = {
    "gptq": "gptqmodel>=2.0, whose CUDA kernels are compiled against one torch build",
    "awq": "autoawq, archived upstream and built against an older torch",
    "aqlm": "aqlm>=1.1",
}
UNQUANTIZED_HINT = (
    "train on the unquantized model instead (the qlora_4bit recipe quantizes it on the fly with bitsandbytes)"
)


def quant_method(config: Mapping[str, Any]) -> str | None:
    """The quantization of a checkpoint, from its config.json; None when its weights are not quantized."""
    quantization = config.get("quantization_config")
    if not isinstance(quantization, Mapping):
        return None
    method = quantization.get("quant_method") or ("bitsandbytes" if "load_in_4bit" in quantization else "")
    return str(method).lower() or "unknown"


def model_problem(config: Any, *, finetuning_type: str, sharded: bool = False) -> str | None:
    """Why a recipe cannot train this checkpoint, or None. `sharded`: ZeRO-3 or FSDP over several GPUs."""
    if not isinstance(config, Mapping):
        return "config.json is not a JSON object"
    method = quant_method(config)
    if method is None:
        return None
    what = f"the base model is {method.upper()}-quantized (config.json quantization_config.quant_method)"
    if finetuning_type != "lora" and method not in DEQUANTIZED_ON_LOAD:
        return f"{what}: a full fine-tune would train its quantized weights; use a LoRA recipe"
    if method in NOT_SHIPPED:
        needed = NOT_SHIPPED[method]
        return f"{what}: LLaMA-Factory trains on it only with {needed}, not in the image; {UNQUANTIZED_HINT}"
    if method not in TRAINABLE_QUANTIZATIONS:
        trainable = ", ".join(TRAINABLE_QUANTIZATIONS)
        return f"{what}: LLaMA-Factory 0.9.5 trains adapters on {trainable} models only; {UNQUANTIZED_HINT}"
    if sharded and method not in DEQUANTIZED_ON_LOAD:
        return (
            f"{what}: LLaMA-Factory refuses DeepSpeed ZeRO-3 and FSDP with quantized weights; set the "
            "hyperparameter distributed=ddp (or deepspeed_zero2)"
        )
    return None
