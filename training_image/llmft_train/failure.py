"""The one-line failure reason SageMaker shows for a failed job."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmft_train.hyperparams import ConfigError

# SageMaker keeps the first 1024 characters of the failure reason.
MAX_LENGTH = 1000


def failure_line(error: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """One line naming the error, with any secret value masked."""
    text = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    line = " ".join(text.split())
    return line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 3] + "..."


def write_failure(path: Path, line: str, keep_existing: bool = False) -> None:
    """Write the failure file; with keep_existing, the first writer (the real cause) wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x" if keep_existing else "w", encoding="utf-8") as out:
            out.write(line + "\n")
    except FileExistsError:
        pass
