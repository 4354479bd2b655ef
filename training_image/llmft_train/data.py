"""Dataset channels: validate every row, normalise it, and describe it for LLaMA-Factory.

Accepted layouts, in JSON (an array of rows, or rows one per line) or JSON Lines:
- alpaca: {"instruction", "output", optional "input", "system", "history": [[user, assistant], ...]}
- sharegpt: {"conversations": [{"from": "human"|"gpt"|..., "value": ...}], optional "system",
  "tools"}, or the same turns as OpenAI-style {"messages": [{"role", "content"}]}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llmft_train.hyperparams import ConfigError

EXTENSIONS = (".json", ".jsonl")
USER_TAGS = ("human", "observation")
ASSISTANT_TAGS = ("gpt", "function_call")
OPENAI_ROLES = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


class DatasetError(ConfigError):
    """A dataset file or row that cannot be trained on."""


def list_data_files(channel_dir: Path) -> list[Path]:
    """The channel's data files: one file, or every .json/.jsonl file under a folder."""
    if channel_dir.is_file():
        files = [channel_dir]
    else:
        files = sorted(p for p in channel_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"channel {channel_dir.name}: no data files in {channel_dir}")
    for path in files:
        if path.suffix not in EXTENSIONS:
            raise DatasetError(
                f"channel {channel_dir.name}: file {path.name} has an unsupported extension; "
                f"allowed: {', '.join(EXTENSIONS)}"
            )
    return files


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _iter_lines(lines: Iterable[str], name: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{name} line {number}: invalid JSON ({err.msg})") from None


def iter_json_rows(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line number, row) for a JSON array of rows, or for JSON Lines."""
    decoder = json.JSONDecoder()
    stripped = text.lstrip()
    if not stripped.startswith("["):
        yield from _iter_lines(text.splitlines(), name)
        return
    position = len(text) - len(stripped) + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            raise DatasetError(f"{name}: the JSON array is not closed with ']'")
        if text[position] == "]":
            return
        try:
            row, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{name} line {err.lineno}: invalid JSON ({err.msg})") from None
        yield _line_of(text, position), row
        position = end


def _iter_file_rows(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    if path.suffix == ".jsonl":
        # Streamed: JSON Lines files can be larger than memory.
        with path.open(encoding="utf-8-sig") as lines:
            yield from _iter_lines(lines, name)
    else:
        yield from iter_json_rows(path.read_text(encoding="utf-8-sig"), name)


def detect_format(row: Any, where: str) -> str:
    """alpaca or sharegpt, from the keys of one row."""
    if isinstance(row, dict):
        if "instruction" in row or "output" in row:
            return "alpaca"
        if "conversations" in row or "messages" in row:
            return "sharegpt"
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise DatasetError(
        f"{where}: cannot tell the layout from {keys}; expected alpaca keys "
        "(instruction, output) or sharegpt keys (conversations or messages)"
    )


def _text(row: dict, key: str, where: str, required: bool) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise DatasetError(f"{where}: field '{key}' is missing")
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise DatasetError(f"{where}: field '{key}' is empty")
    return value


def _normalise_alpaca(row: dict, where: str) -> dict:
    history = row.get("history") or []
    if not isinstance(history, list):
        raise DatasetError(f"{where}: field 'history' must be a list of [user, assistant] pairs")
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise DatasetError(
                f"{where}: field 'history[{index}]' must be a pair of strings [user, assistant]"
            )
    return {
        "instruction": _text(row, "instruction", where, required=True),
        "input": _text(row, "input", where, required=False),
        "output": _text(row, "output", where, required=True),
        "system": _text(row, "system", where, required=False),
        "history": history,
    }


def _turns(row: dict, where: str) -> tuple[str, list[tuple[str, Any]]]:
    """The turns as (tag, content) pairs with ShareGPT tags, and the field name for messages."""
    if "conversations" in row:
        key, tag_field, content_field, mapping = "conversations", "from", "value", None
    else:
        key, tag_field, content_field, mapping = "messages", "role", "content", OPENAI_ROLES
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise DatasetError(f"{where}: field '{key}' must be a non-empty list of turns")
    pairs = []
    for index, turn in enumerate(turns):
        field = f"{key}[{index}]"
        if not isinstance(turn, dict):
            raise DatasetError(f"{where}: field '{field}' must be an object")
        tag = turn.get(tag_field)
        if mapping is not None:
            if tag not in mapping:
                raise DatasetError(
                    f"{where}: field '{field}.{tag_field}' is {tag!r}; allowed: {', '.join(mapping)}"
                )
            tag = mapping[tag]
        content = turn.get(content_field)
        if not isinstance(content, str):
            raise DatasetError(f"{where}: field '{field}.{content_field}' must be a string")
        pairs.append((tag, content))
    return key, pairs


def _normalise_sharegpt(row: dict, where: str) -> dict:
    key, turns = _turns(row, where)
    tag_field = "from" if key == "conversations" else "role"
    system = _text(row, "system", where, required=False)
    offset = 0
    if turns[0][0] == "system":
        system, turns, offset = turns[0][1], turns[1:], 1
    for index, (tag, _) in enumerate(turns):
        expected = USER_TAGS if index % 2 == 0 else ASSISTANT_TAGS
        if tag not in expected:
            raise DatasetError(
                f"{where}: field '{key}[{index + offset}].{tag_field}' is {tag!r}; turns must "
                f"alternate user then assistant, so this one must be one of {', '.join(expected)}"
            )
    if len(turns) % 2:
        raise DatasetError(f"{where}: field '{key}' must end with an assistant turn")
    tools = row.get("tools", "")
    if not isinstance(tools, str):
        tools = json.dumps(tools)
    return {
        "conversations": [{"from": tag, "value": content} for tag, content in turns],
        "system": system,
        "tools": tools,
    }


def normalise_row(row: Any, layout: str, where: str) -> dict:
    """Check one row against its layout and return it in the shape `dataset_info_entry` names."""
    found = detect_format(row, where)
    if found != layout:
        raise DatasetError(f"{where}: row is in the {found} layout, but this dataset is {layout}")
    if layout == "alpaca":
        return _normalise_alpaca(row, where)
    return _normalise_sharegpt(row, where)


def dataset_info_entry(layout: str, file_name: str) -> dict:
    """One `dataset_info.json` entry for a normalised file."""
    if layout == "alpaca":
        columns = {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        }
    else:
        columns = {"messages": "conversations", "system": "system", "tools": "tools"}
    return {"file_name": file_name, "formatting": layout, "columns": columns}


def _display_name(channel_dir: Path, path: Path) -> str:
    if path == channel_dir:
        return path.name
    return f"{channel_dir.name}/{path.relative_to(channel_dir)}"


def prepare_channel(channel_dir: Path, out_file: Path, layout: str = "auto") -> tuple[str, int]:
    """Validate every row of a channel and write them, normalised, as JSON Lines.

    Returns the layout found and the number of rows.
    """
    count = 0
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w", encoding="utf-8") as out:
        for path in list_data_files(channel_dir):
            name = _display_name(channel_dir, path)
            for line, row in _iter_file_rows(path, name):
                where = f"{name} line {line}"
                if layout == "auto":
                    layout = detect_format(row, where)
                out.write(json.dumps(normalise_row(row, layout, where), ensure_ascii=False) + "\n")
                count += 1
    if count == 0:
        raise DatasetError(f"channel {channel_dir.name}: no rows in {channel_dir}")
    return layout, count
