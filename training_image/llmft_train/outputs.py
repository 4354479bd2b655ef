"""Checkpoints to resume from, and what the primary node leaves in the model folder."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Written by the trainer next to the final weights, but of no use to whoever loads the model.
_NOT_MODEL_FILES = frozenset({"training_args.bin"})


def adapter_member_names(names: Iterable[str]) -> list[str]:
    """Files of a trained job's model.tar.gz that make the adapter to continue: those at its top (the
    adapter, tokenizer, configs), not `merged/` or anything below it."""
    kept = []
    for name in names:
        plain = name.removeprefix("./")
        if plain and "/" not in plain and not plain.startswith("."):
            kept.append(name)
    return sorted(kept)


def newest_checkpoint(checkpoints: Mapping[str, bool]) -> str | None:
    """Name of the highest `checkpoint-N` that is complete (maps each name to 'has trainer_state')."""
    steps = {
        int(match.group(1)): name
        for name, complete in checkpoints.items()
        if complete and (match := _CHECKPOINT.match(name))
    }
    return steps[max(steps)] if steps else None


def find_resume_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint in the checkpoints folder, if any."""
    if not checkpoints_dir.is_dir():
        return None
    entries = {p.name: (p / "trainer_state.json").is_file() for p in checkpoints_dir.iterdir() if p.is_dir()}
    name = newest_checkpoint(entries)
    return checkpoints_dir / name if name else None


def model_file_names(names: Iterable[str]) -> list[str]:
    """Files at the top of the trainer's output folder that belong in the model folder."""
    return sorted(n for n in names if not n.startswith(".") and n not in _NOT_MODEL_FILES)


def summarize_metrics(trainer_state: Mapping[str, Any], resumed_from: str | None) -> dict:
    """metrics.json: where training ended and its last losses, from the trainer's state."""
    history = trainer_state.get("log_history", [])
    train_logs = [entry for entry in history if "loss" in entry]
    eval_logs = [entry for entry in history if "eval_loss" in entry]
    final = next((entry for entry in reversed(history) if "train_loss" in entry), {})
    metrics: dict[str, Any] = {
        "global_step": trainer_state.get("global_step"),
        "epoch": trainer_state.get("epoch"),
        "num_input_tokens_seen": trainer_state.get("num_input_tokens_seen"),
        "resumed_from": resumed_from,
    }
    if train_logs:
        metrics["loss"] = train_logs[-1]["loss"]
        metrics["learning_rate"] = train_logs[-1].get("learning_rate")
    if eval_logs:
        metrics["eval_loss"] = eval_logs[-1]["eval_loss"]
    for key in ("train_loss", "train_runtime", "train_samples_per_second", "train_steps_per_second"):
        if key in final:
            metrics[key] = final[key]
    return metrics
