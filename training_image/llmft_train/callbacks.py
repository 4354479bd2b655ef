"""Trainer callback that prints progress lines in the format `progress.py` parses."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from llmft_train.progress import format_eval_line, format_final_line, format_train_line


class ProgressCallback(TrainerCallback):
    """Prints one stable line per logging step, on the main process only."""

    def __init__(self) -> None:
        self._last_tokens = 0
        self._last_time = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_tokens = state.num_input_tokens_seen
        self._last_time = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            now = time.monotonic()
            tokens = state.num_input_tokens_seen
            elapsed = max(now - self._last_time, 1e-9)
            tokens_per_second = (tokens - self._last_tokens) / elapsed
            self._last_tokens, self._last_time = tokens, now
            line = format_train_line(
                step=state.global_step,
                loss=float(logs["loss"]),
                learning_rate=float(logs.get("learning_rate", 0.0)),
                epoch=float(logs.get("epoch", state.epoch or 0.0)),
                tokens_per_second=tokens_per_second,
            )
            print(line, flush=True)
        if "eval_loss" in logs:
            print(format_eval_line(state.global_step, float(logs["eval_loss"])), flush=True)
        if "train_loss" in logs:
            line = format_final_line(
                state.global_step, float(logs["train_loss"]), float(logs.get("train_runtime", 0.0))
            )
            print(line, flush=True)
