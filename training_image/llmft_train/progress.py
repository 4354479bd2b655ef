"""The progress line format and the regular expressions that read it back.

Standard library only: the CDK side imports this module (with `training_image/` on `sys.path`)
to give SageMaker its metric definitions, and it must not pull torch or transformers in.
"""

from __future__ import annotations

import re

PREFIX = "llmft"

# One number as this module prints it: fixed, or scientific for the learning rate.
_NUMBER = r"([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:loss", "Regex": rf"{PREFIX} step=\d+ loss={_NUMBER}"},
    {"Name": "train:learning_rate", "Regex": rf"{PREFIX} step=\d+ .*?learning_rate={_NUMBER}"},
    {"Name": "train:epoch", "Regex": rf"{PREFIX} step=\d+ .*?epoch={_NUMBER}"},
    {
        "Name": "train:tokens_per_second",
        "Regex": rf"{PREFIX} step=\d+ .*?tokens_per_second={_NUMBER}",
    },
    {"Name": "validation:loss", "Regex": rf"{PREFIX} eval step=\d+ eval_loss={_NUMBER}"},
    {"Name": "train:final_loss", "Regex": rf"{PREFIX} final step=\d+ train_loss={_NUMBER}"},
]


def format_train_line(
    step: int, loss: float, learning_rate: float, epoch: float, tokens_per_second: float
) -> str:
    """The line printed at each logging step of training."""
    return (
        f"{PREFIX} step={step} loss={loss:.4f} learning_rate={learning_rate:.3e} "
        f"epoch={epoch:.2f} tokens_per_second={tokens_per_second:.1f}"
    )


def format_eval_line(step: int, eval_loss: float) -> str:
    """The line printed after each evaluation on the validation channel."""
    return f"{PREFIX} eval step={step} eval_loss={eval_loss:.4f}"


def format_final_line(step: int, train_loss: float, train_runtime: float) -> str:
    """The line printed once when training ends."""
    return f"{PREFIX} final step={step} train_loss={train_loss:.4f} train_runtime={train_runtime:.1f}"


def parse_metrics(line: str) -> dict[str, float]:
    """Apply every metric definition to one log line, as SageMaker does (first group wins)."""
    found: dict[str, float] = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found
