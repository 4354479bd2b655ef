"""Adapter name -> inference component name, the one mapping registration and the invoke command share."""

import hashlib
import re

# SageMaker's pattern and length limit for inference component names.
COMPONENT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$")
COMPONENT_NAME_MAX = 63
_INVALID_RUN = re.compile(r"[^a-z0-9]+")
_HASH_CHARS = 8


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def component_name(prefix: str, adapter_name: str) -> str:
    """The adapter's inference component: `<prefix>-<adapter>`, lowercased, in SageMaker's pattern.

    Runs of other characters become one hyphen. When that changes the name (`my_adapter`, `Bot`) or it must
    be shortened, a hash of the exact original is appended, so two adapters never share a component.
    """
    wanted = f"{prefix}-{adapter_name}".lower()
    cleaned = _INVALID_RUN.sub("-", wanted).strip("-")
    # Adapter names are case-sensitive S3 folders: `Bot` and `bot` must not share a component.
    if cleaned == wanted and adapter_name == adapter_name.lower() and len(cleaned) <= COMPONENT_NAME_MAX:
        return cleaned
    suffix = _digest(f"{prefix}/{adapter_name}")
    head = cleaned[: COMPONENT_NAME_MAX - _HASH_CHARS - 1].rstrip("-")
    return f"{head}-{suffix}" if head else suffix
