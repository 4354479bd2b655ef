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


def base_component_name(prefix: str) -> str:
    """The base model's inference component: `<prefix>--base`, lower case.

    Named, not generated: SageMaker writes names in lower case in ARNs, while the scaling target, the
    metric dimension and the adapters' BaseInferenceComponentName need the exact name. A double hyphen
    never comes out of `component_name`, so no adapter can take it.
    """
    return f"{_INVALID_RUN.sub('-', prefix.lower()).strip('-')}--base"
