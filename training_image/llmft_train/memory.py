"""Batch size and gradient checkpointing from the GPU's memory. Pure: memory in, LLaMA-Factory keys out.

A recipe opts in with `memory_tiers: <table>`; the job's `batch_sizing` hyperparameter (default `auto`)
applies it, and a hyperparameter that sets one of the planned keys itself always wins for that key.

The tiers are calibrated for 8B-class models (Llama-3-8B shape) on ONE GPU holding the whole model,
from the H100 and H200 runs in `benchmarks/README.md` (packed 2048-token rows, liger, sdpa). Sharding
(DeepSpeed ZeRO-3, FSDP) only lowers the per-GPU memory, so on several GPUs they stay on the safe side.
Larger models need smaller settings: pass them as hyperparameters.

Every tier keeps 4 packed sequences per device per optimizer step (batch x accumulation), so the
recipe's learning rate and schedule mean the same on every GPU size.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmft_train.hyperparams import ConfigError

# The keys a plan sets; a hyperparameter naming one of them keeps its own value.
PLANNED_KEYS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "disable_gradient_checkpointing",
)
SEQUENCES_PER_STEP = 4
BATCH_SIZING_CHOICES = ("auto", "recipe")


@dataclass(frozen=True)
class Tier:
    min_gib: float  # total memory of one GPU as the driver reports it, in GiB (2**30 bytes)
    batch_size: int
    checkpointing: bool
    why: str


@dataclass(frozen=True)
class MemoryPlan:
    table: str
    gpu_memory_gib: float
    tier: Tier
    keys: dict

    def describe(self) -> str:
        keys = " ".join(f"{k}={v}" for k, v in self.keys.items())
        return (
            f"table={self.table} gpu_memory_gib={self.gpu_memory_gib:.1f} tier>={self.tier.min_gib:g} {keys}"
        )


# Highest tier first. Figures are peak reserved GiB of an 8B-shaped model on one H100 (benchmarks/).
TIERS: dict[str, tuple[Tier, ...]] = {
    "lora": (
        # 80 GB cards (H100, A100 80GB, H200): 79.6 GiB reported on the H100.
        Tier(70.0, 4, False, "measured 64.19 GiB peak, 30.5-31.5% MFU (lora_dropout 0.0)"),
        # 40/48 GB cards (A100 40GB, L40S, A6000): no-checkpointing bs 2 already peaked 43.87 GiB.
        Tier(36.0, 4, True, "measured 21.43 GiB peak with checkpointing"),
        # 24 GB cards (A10G, L4; about 22.3 GiB reported): bs 4 with checkpointing (21.43) is too close.
        Tier(20.0, 2, True, "half the activations of the measured 21.43 GiB bs 4 run"),
        Tier(0.0, 1, True, "smallest setting; an 8B model in bf16 (15 GiB of weights) needs sharding here"),
    ),
    "qlora": (
        # 80 GB and 141 GB cards: without checkpointing 4 x 2048 peaked 61.99 GiB and ran 1.42x as fast
        # (H200: 11,355 vs 8,010 tok/s, the same losses within 0.02%; benchmarks/results/issue13_explore).
        Tier(70.0, 4, False, "measured 61.99 GiB peak without checkpointing, 1.42x the checkpointed tok/s"),
        Tier(20.0, 4, True, "measured 10.63 GiB peak (4-bit base, checkpointing)"),
        Tier(0.0, 2, True, "measured 8.31 GiB peak"),
    ),
}
# With LoRA dropout the adapters' inputs are copied in fp32: bs 4 without checkpointing peaked at
# 72.35 GiB (lora_dropout 0.05), too close to 80 GB; bs 2 peaked at 43.87 GiB.
DROPOUT_80GB_TIER = Tier(70.0, 2, False, "lora_dropout > 0: measured 43.87 GiB peak at bs 2 (72.35 at bs 4)")


def plan_memory(table: str, gpu_memory_gib: float, lora_dropout: float = 0.0) -> MemoryPlan:
    """Batch size, accumulation and checkpointing for one GPU of `gpu_memory_gib` GiB."""
    if table not in TIERS:
        raise ConfigError(f"unknown memory_tiers {table!r}; allowed: {', '.join(sorted(TIERS))}")
    if not gpu_memory_gib > 0:
        raise ConfigError(f"GPU memory {gpu_memory_gib!r} GiB must be greater than 0")
    tier = next(t for t in TIERS[table] if gpu_memory_gib >= t.min_gib)
    if table == "lora" and lora_dropout > 0 and not tier.checkpointing:
        tier = DROPOUT_80GB_TIER
    keys = {
        "per_device_train_batch_size": tier.batch_size,
        "gradient_accumulation_steps": max(1, SEQUENCES_PER_STEP // tier.batch_size),
        "disable_gradient_checkpointing": not tier.checkpointing,
    }
    return MemoryPlan(table, gpu_memory_gib, tier, keys)


def planned_keys(plan: MemoryPlan, overrides: dict) -> dict:
    """The plan's keys that no hyperparameter set. Unless set too, accumulation follows the batch size in
    use (a hyperparameter's included), so a step still holds about 4 packed sequences."""
    keys = {k: v for k, v in plan.keys.items() if k not in overrides}
    if "per_device_train_batch_size" in overrides and "gradient_accumulation_steps" in keys:
        keys["gradient_accumulation_steps"] = max(
            1, SEQUENCES_PER_STEP // overrides["per_device_train_batch_size"]
        )
    return keys
