"""Requests checked against botocore's service model: its own ParamValidator (types, required, minimums),
then what that validator leaves to the service (maximum lengths and values, enums, patterns), read from the
same shapes. Patterns are the model's Java-style expressions (\\p{L} and the like), matched with `regex`."""

from typing import Any

import botocore.session
import regex
from botocore.validate import ParamValidator


def input_shape(service: str, operation: str):
    return botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape


def _limits(value: Any, shape, where: str) -> list[str]:
    problems = []
    maximum = shape.metadata.get("max")
    if isinstance(value, str):
        if maximum is not None and len(value) > maximum:
            problems.append(f"{where}: {len(value)} characters, at most {maximum}")
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(f"{where}: {value!r} is not one of the {len(enum)} allowed values")
        pattern = shape.metadata.get("pattern")
        if pattern and not regex.fullmatch(pattern, value):
            problems.append(f"{where}: {value!r} does not match {pattern}")
    elif isinstance(value, (list, dict)) and maximum is not None and len(value) > maximum:
        problems.append(f"{where}: {len(value)} entries, at most {maximum}")
    elif (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and maximum is not None
        and value > maximum
    ):
        problems.append(f"{where}: {value}, at most {maximum}")
    return problems


def _walk(value: Any, shape, where: str) -> list[str]:
    problems = _limits(value, shape, where)
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                problems += _walk(member, shape.members[name], f"{where}.{name}")
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            problems += _walk(item, shape.member, f"{where}[{index}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            problems += _limits(key, shape.key, f"{where} key {key!r}")
            problems += _walk(item, shape.value, f"{where}[{key!r}]")
    return problems


def request_problems(service: str, operation: str, params: dict) -> list[str]:
    """Every way `params` is not a valid `operation` request by the service model; [] when it is."""
    shape = input_shape(service, operation)
    report = ParamValidator().validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    return problems + _walk(params, shape, operation)
