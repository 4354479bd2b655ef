"""Two exact-math speedups of the LoRA recipes, measured with a loss-parity check (benchmarks/README.md).

- `no_input_cast` (E1): PEFT copies each adapter's bf16 input to fp32 for the fp32 LoRA weights and autocast
  copies it back to bf16 for the matmul, a lossless round trip; skipping it changes no value (+14.7% on an
  H200, loss curve within 0.01% of the default's).
- `flex` (E2): no dense 4D block-diagonal mask collated on the host for packed rows; transformers derives the
  same mask from the rows' position_ids on the GPU and flex attention skips its masked tiles (+31.5% with E1,
  loss within 0.01%).

`planned_speedups` decides (pure); `prepare` and `SpeedupCallback` act. The benchmark runs these very
functions. Only one process is planned for: neither was measured under ZeRO-3 or FSDP across GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NO_INPUT_CAST, FLEX = "no_input_cast", "flex"


def planned_speedups(config: Mapping[str, Any], *, has_cuda: bool, world_size: int) -> tuple[str, ...]:
    """Which speedups apply to this LLaMA-Factory config on this machine."""
    if world_size != 1 or config.get("finetuning_type") != "lora":
        return ()
    names = []
    # Without autocast (no bf16/fp16) the cast is what makes the fp32 LoRA matmul valid: keep it.
    if config.get("bf16") or config.get("fp16"):
        names.append(NO_INPUT_CAST)
    # Flex attention needs CUDA (no CPU backward); neat packing is what makes the mask block-diagonal.
    if has_cuda and config.get("neat_packing") and config.get("flash_attn", "auto") in ("auto", "sdpa"):
        names.append(FLEX)
    return tuple(names)


def prepare(names: Sequence[str]) -> None:
    """Before the trainer starts, in the main process, so that dataloader workers inherit it."""
    if FLEX in names:
        import llamafactory.data.collator as collator

        # attention_mask=None: transformers builds the block-diagonal causal mask from position_ids.
        collator.prepare_4d_attention_mask = lambda mask, dtype: None


def speedup_callback(names: Sequence[str]):
    """A TrainerCallback that finishes the speedups on the model once the trainer has built it."""
    from transformers import TrainerCallback

    class SpeedupCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if NO_INPUT_CAST in names:
                for module in model.modules():
                    if hasattr(module, "cast_input_dtype_enabled"):
                        module.cast_input_dtype_enabled = False
            if FLEX in names:
                model.get_base_model().set_attn_implementation("flex_attention")

    return SpeedupCallback()
