"""Small validators: each returns the typed value or raises ConfigError naming key, value and rule."""

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from project_config import instance_types

ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z][a-z0-9]*\.(?:[0-9]*x?large|medium|small|micro)$")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"cdk.json context {key} = {value!r} is invalid: {allowed}")
        self.key = key
        self.value = value


def section(raw: Any, key: str, allowed_keys: Iterable[str]) -> Mapping[str, Any]:
    """A context section: a JSON object whose keys are all known."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, "expected a JSON object")
    allowed = sorted(allowed_keys)
    for name in raw:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", raw[name], f"unknown key; allowed keys: {', '.join(allowed)}")
    return raw


def section_fields(raw: Any, key: str, config_class: type) -> Callable[[str], Any]:
    """A getter for a section built into a frozen dataclass: the cdk.json value, else the field's default."""
    values = section(raw, key, config_class.__dataclass_fields__)
    default = config_class()
    return lambda name: values.get(name, getattr(default, name))


def integer(key: str, value: Any, *, minimum: int, maximum: int) -> int:
    # bool is an int subclass in Python; `true` is never a count
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, value, f"expected an integer from {minimum} to {maximum}")
    if not minimum <= value <= maximum:
        raise ConfigError(key, value, f"expected an integer from {minimum} to {maximum}")
    return value


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected true or false")
    return value


def string(key: str, value: Any, *, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(key, value, rule)
    return value


def optional_string(key: str, value: Any, *, pattern: re.Pattern[str], rule: str) -> str | None:
    return None if value is None else string(key, value, pattern=pattern, rule=rule)


def choice(key: str, value: Any, allowed: Iterable[Any]) -> Any:
    options = list(allowed)
    if value not in options:
        raise ConfigError(key, value, f"expected one of: {', '.join(map(str, options))}")
    return value


# Each use of an instance type as messages name it: the type's kind, and where SageMaker offers it.
USE_NAMES = {
    "training": ("training", "training jobs"),
    "endpoint": ("endpoint", "real-time endpoints"),
    "cluster": ("HyperPod", "HyperPod clusters"),
    "notebook": ("notebook", "notebook instances"),
}


def instance_type(key: str, value: Any, *, use: str, gpu: bool) -> str:
    """A type SageMaker offers for `use` (botocore's catalogue), with NVIDIA GPUs when `gpu`."""
    kind, where = USE_NAMES[use]
    what = f"a SageMaker {kind} instance type{' with NVIDIA GPUs' if gpu else ''}"
    string(key, value, pattern=INSTANCE_TYPE_PATTERN, rule=f"expected {what} such as ml.g5.2xlarge")
    offered = instance_types.catalogue(use)
    if value not in offered:
        candidates = [t for t in offered if instance_types.has_gpu(t)] if gpu else list(offered)
        close = difflib.get_close_matches(value, candidates, n=3, cutoff=0.8)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(key, value, f"expected {what}; SageMaker offers no {value} for {where}{hint}")
    if gpu and not instance_types.has_gpu(value):
        families = ", ".join(sorted({instance_types.family(t) for t in offered if instance_types.has_gpu(t)}))
        raise ConfigError(key, value, f"expected {what}; {value} has none (GPU families: {families})")
    return value


def ipv4_network(key: str, value: Any, *, min_prefix: int, max_prefix: int) -> ipaddress.IPv4Network:
    rule = f"expected an IPv4 CIDR block from /{min_prefix} to /{max_prefix}, e.g. 10.20.0.0/16"
    if not isinstance(value, str):
        raise ConfigError(key, value, rule)
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ConfigError(key, value, f"{rule} ({error})") from None
    if not min_prefix <= network.prefixlen <= max_prefix:
        raise ConfigError(key, value, rule)
    return network


def string_list(key: str, value: Any, *, allowed: Iterable[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(key, value, "expected a list of strings")
    if len(set(value)) != len(value):
        raise ConfigError(key, value, "expected a list without repeated entries")
    if allowed is not None:
        options = sorted(allowed)
        for item in value:
            if item not in options:
                raise ConfigError(key, item, f"expected entries from: {', '.join(options)}")
    return tuple(value)
