"""Typed reading of SageMaker hyperparameters, which arrive as strings."""

from __future__ import annotations

import json
from typing import Any

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """A bad input from the job's configuration; its message is the failure reason."""


def as_text(value: Any) -> str:
    """The string SageMaker would have passed; the SDK may JSON-quote strings, so unwrap them."""
    if not isinstance(value, str):
        return json.dumps(value)
    text = value.strip()
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(decoded, str):
            return decoded.strip()
    return text


def parse_value(key: str, raw: Any, kind: type) -> Any:
    """Convert one hyperparameter to `kind` (bool, int, float or str) or say why it cannot be."""
    text = as_text(raw)
    if kind is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(
            f"hyperparameter {key}={text!r} is not a boolean; allowed: true, false, 1, 0, yes, no"
        )
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"hyperparameter {key}={text!r} is not an integer") from None
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"hyperparameter {key}={text!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"hyperparameter {key}={text!r} must be a finite number")
        return number
    if kind is str:
        if not text:
            raise ConfigError(f"hyperparameter {key} is empty; give it a value or leave it out")
        return text
    raise TypeError(f"no parser for {kind!r}")
