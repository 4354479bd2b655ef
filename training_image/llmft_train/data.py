"""Dataset channels: every row judged by LLaMA-Factory's own reading rules for the recipe's stage before
the model loads, then written, normalised, for LLaMA-Factory.

A channel is one data file or a folder of them: JSON (an array of rows, or rows one per line), JSON
Lines, CSV, Parquet or Arrow, as LLaMA-Factory reads them. Without a `dataset_info.json`, each file's
layout comes from its first row (`dataset_format` may insist on one):

- alpaca: `instruction` and/or `input` (the prompt, joined by a newline as LLaMA-Factory does), `output`
  (supervised) or `chosen` and `rejected` strings (preference pairs), optional `system` and `history`
  (`[[user, assistant], ...]`).
- sharegpt: `conversations` of `{"from", "value"}` (human/observation then gpt/function_call, an optional
  leading system turn), or OpenAI-style `messages` of `{"role", "content"}` (user, assistant, system,
  tool); optional `system`, `tools`; preference pairs end on a user turn and add `chosen` and `rejected`
  turns.

With LLaMA-Factory's own `dataset_info.json` at the top of the channel, its entries that name files of
the channel say how those files are read (formatting, ranking, columns, tags, num_samples), as in
LLaMA-Factory. What LLaMA-Factory would drop or misread is refused, naming the file, the row and what is
unsupported: images, videos and audio (no recipe trains a multimodal model), KTO labels (no KTO recipe),
preference pairs under a supervised recipe and plain rows under a preference recipe (naming the recipes
that take them). Nothing is dropped silently: columns no rule reads are listed in the job log.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmft_train.hyperparams import ConfigError

DATASET_INFO = "dataset_info.json"
# File types LLaMA-Factory loads for a dataset (data_utils.FILEEXT2TYPE), less plain text.
FILE_TYPES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}
# Plain text is read by LLaMA-Factory as one `text` column: pre-training data.
PRETRAINING_TYPES = (".txt",)
# What each recipe stage trains on: instruction rows, or preference pairs (LLaMA-Factory loads DPO data
# with ranking=true).
STAGE_DATA = {"sft": "supervised", "dpo": "pairwise"}
FORMATTINGS = ("alpaca", "sharegpt")
MEDIA_COLUMNS = ("images", "videos", "audios")
# dataset_info.json entry keys (LLaMA-Factory's DatasetAttr) and the column and tag names it reads.
ENTRY_KEYS = (
    "file_name",
    "formatting",
    "ranking",
    "columns",
    "tags",
    "num_samples",
    "split",
    "subset",
    "folder",
)
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
COLUMN_NAMES = (
    "prompt", "query", "response", "history", "messages", "system", "tools",
    "images", "videos", "audios", "chosen", "rejected", "kto_tag",
)  # fmt: skip
TAG_NAMES = (
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "observation_tag",
    "function_tag",
    "system_tag",
)
# The tags of the normalised rows (LLaMA-Factory's sharegpt defaults).
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": None,
    "system_tag": "system",
}


ROW_KEYS = "row keys"


class DatasetError(ConfigError):
    """A dataset file or row that cannot be trained on."""


@dataclass(frozen=True)
class Layout:
    """How one file's rows are read: LLaMA-Factory's DatasetAttr (formatting, ranking, columns, tags)."""

    formatting: str
    ranking: bool = False
    columns: Mapping[str, str | None] = field(default_factory=dict)
    tags: Mapping[str, str | None] = field(default_factory=dict)
    # Where the layout comes from, for messages: "row keys" (detected per file) or a dataset_info.json entry.
    source: str = f"a {DATASET_INFO} entry"

    def column(self, name: str) -> str | None:
        return self.columns.get(name)


# LLaMA-Factory's default columns for a dataset_info.json entry that names none (DatasetAttr).
LLAMAFACTORY_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "messages": "conversations",
}
# Without dataset_info.json, the columns this entrypoint reads from row keys: LLaMA-Factory's defaults
# plus the optional ones its demo files use.
_ROW_KEY_COLUMNS = {
    "system": "system",
    "tools": "tools",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "label",
    **{name: name for name in MEDIA_COLUMNS},
}


def detect_layout(row: Any, where: str) -> Layout:
    """alpaca or sharegpt (conversations, or OpenAI-style messages), from the keys of one row."""
    if isinstance(row, dict):
        if "conversations" in row:
            columns = {"messages": "conversations", **_ROW_KEY_COLUMNS}
            return Layout("sharegpt", "chosen" in row, columns, SHAREGPT_TAGS, ROW_KEYS)
        if "messages" in row:
            columns = {"messages": "messages", **_ROW_KEY_COLUMNS}
            return Layout("sharegpt", "chosen" in row, columns, OPENAI_TAGS, ROW_KEYS)
        if {"instruction", "input", "output"} & set(row) or {"chosen", "rejected"} <= set(row):
            columns = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
            return Layout("alpaca", "chosen" in row, {**columns, **_ROW_KEY_COLUMNS}, {}, ROW_KEYS)
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise DatasetError(
        f"{where}: cannot tell the layout from {keys}; expected alpaca keys (instruction, input, output), "
        "sharegpt keys (conversations or messages), or a dataset_info.json naming the columns"
    )


# ---------------------------------------------------------------------------------------------------
# Reading files


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


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            # LLaMA-Factory reads CSV through pandas, where an empty cell is a missing value.
            yield f"line {reader.line_num}", {k: (v if v != "" else None) for k, v in row.items()}


def _arrow_rows(path: Path, suffix: str) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if suffix == ".parquet":
        batches = pq.ParquetFile(path).iter_batches(batch_size=1000)
    else:
        # The `datasets` library writes Arrow streams; the Arrow file format is read as well.
        with path.open("rb") as probe:
            is_file_format = probe.read(6) == b"ARROW1"
        source = pa.memory_map(str(path))
        reader = pa.ipc.open_file(source) if is_file_format else pa.ipc.open_stream(source)
        batches = (
            (reader.get_batch(i) for i in range(reader.num_record_batches))
            if is_file_format
            else iter(reader)
        )
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            yield f"row {number}", row


def iter_file_rows(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    """(place, row) for every row of a data file; place is `line N`, or `row N` in Parquet and Arrow."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        # Streamed: JSON Lines files can be larger than memory.
        with path.open(encoding="utf-8-sig") as lines:
            for line, row in _iter_lines(lines, name):
                yield f"line {line}", row
    elif suffix == ".json":
        for line, row in iter_json_rows(path.read_text(encoding="utf-8-sig"), name):
            yield f"line {line}", row
    elif suffix == ".csv":
        yield from _csv_rows(path)
    else:
        yield from _arrow_rows(path, suffix)


def _display_name(channel_dir: Path, path: Path) -> str:
    if path == channel_dir:
        return path.name
    return f"{channel_dir.name}/{path.relative_to(channel_dir)}"


def check_file_type(channel_dir: Path, path: Path) -> None:
    suffix = path.suffix.lower()
    name = _display_name(channel_dir, path)
    if suffix in PRETRAINING_TYPES:
        raise DatasetError(
            f"{name}: plain text is pre-training data (LLaMA-Factory's pt stage); no recipe here "
            "pre-trains: give instruction rows (alpaca or sharegpt) as JSON, JSON Lines, CSV, Parquet, Arrow"
        )
    if suffix not in FILE_TYPES:
        raise DatasetError(
            f"{name}: unsupported file type {suffix or '(none)'}; allowed: {', '.join(FILE_TYPES)}"
        )


def list_data_files(channel_dir: Path) -> list[Path]:
    """The channel's data files: one file, or every file under a folder (hidden ones and
    dataset_info.json aside), each of a type LLaMA-Factory loads."""
    if channel_dir.is_file():
        files = [channel_dir]
    else:
        files = sorted(
            p
            for p in channel_dir.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p != channel_dir / DATASET_INFO
        )
    if not files:
        raise DatasetError(f"channel {channel_dir.name}: no data files in {channel_dir}")
    for path in files:
        check_file_type(channel_dir, path)
    return files


# ---------------------------------------------------------------------------------------------------
# dataset_info.json


@dataclass(frozen=True)
class Entry:
    """One dataset_info.json entry that names files of the channel."""

    name: str
    files: tuple[Path, ...]
    layout: Layout
    num_samples: int | None = None


def _entry_mapping(value: Any, where: str, allowed: Sequence[str]) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise DatasetError(f"{where} must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise DatasetError(f"{where} has unknown names {unknown}; allowed: {', '.join(allowed)}")
    for key, name in value.items():
        if name is not None and not isinstance(name, str):
            raise DatasetError(f"{where}.{key} must be a column or tag name (a string)")
    return dict(value)


def parse_entry(name: str, value: Any, channel_dir: Path) -> Entry | None:
    """An entry as LLaMA-Factory reads it; None when it names no file of the channel (Hub datasets,
    files elsewhere), which is only reported."""
    where = f"{channel_dir.name}/{DATASET_INFO} entry {name!r}"
    if not isinstance(value, dict):
        raise DatasetError(f"{where} must be an object")
    if "file_name" not in value:
        if any(key in value for key in REMOTE_KEYS):
            return None
        raise DatasetError(f"{where} has no file_name")
    target = channel_dir / str(value["file_name"])
    if not target.exists():
        return None
    unknown = sorted(set(value) - set(ENTRY_KEYS) - set(REMOTE_KEYS))
    if unknown:
        raise DatasetError(f"{where} has unknown keys {unknown}; allowed: {', '.join(ENTRY_KEYS)}")
    formatting = value.get("formatting", "alpaca")
    if formatting == "openai":
        raise DatasetError(
            f"{where}: formatting 'openai' is not taken: LLaMA-Factory 0.9.5's openai reader appends "
            "'detailed thinking off' to every system prompt; write formatting 'sharegpt' with tags "
            "role_tag 'role', content_tag 'content', user_tag 'user', assistant_tag 'assistant' for the "
            "same messages"
        )
    if formatting not in FORMATTINGS:
        raise DatasetError(f"{where}: formatting {formatting!r}; allowed: {', '.join(FORMATTINGS)}")
    if value.get("split", "train") != "train":
        raise DatasetError(f"{where}: split {value['split']!r}; a file dataset has only the split 'train'")
    ranking = value.get("ranking", False)
    if not isinstance(ranking, bool):
        raise DatasetError(f"{where}: ranking must be true or false")
    num_samples = value.get("num_samples")
    if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)):
        raise DatasetError(f"{where}: num_samples must be a whole number")
    if num_samples is not None and num_samples < 1:
        raise DatasetError(f"{where}: num_samples must be at least 1")
    # As LLaMA-Factory's DatasetAttr.join: an entry's `columns` (or `tags`) replaces all the defaults, and
    # the names it leaves out are read as no column (no tag).
    columns: dict[str, str | None] = dict(LLAMAFACTORY_COLUMNS)
    if "columns" in value:
        declared = _entry_mapping(value["columns"], f"{where} columns", COLUMN_NAMES)
        columns = {name: declared.get(name) for name in COLUMN_NAMES}
    tags: dict[str, str | None] = dict(SHAREGPT_TAGS)
    if "tags" in value:
        declared = _entry_mapping(value["tags"], f"{where} tags", TAG_NAMES)
        tags = {name: declared.get(name) for name in TAG_NAMES}
    needed = ["messages", "role_tag", "content_tag"] if formatting == "sharegpt" else []
    needed += ["chosen", "rejected"] if ranking else []
    missing = [name for name in needed if not {**columns, **tags}.get(name)]
    if missing:
        raise DatasetError(
            f"{where} names no {', '.join(missing)}; LLaMA-Factory cannot read its rows without "
            f"{'them' if len(missing) > 1 else 'it'}"
        )
    files = (target,) if target.is_file() else tuple(sorted(p for p in target.iterdir() if p.is_file()))
    for path in files:
        check_file_type(channel_dir, path)
    layout = Layout(formatting, ranking, columns, tags, f"{DATASET_INFO} entry {name!r}")
    return Entry(name, files, layout, num_samples)


def read_dataset_info(channel_dir: Path) -> tuple[list[Entry], list[str]]:
    """The entries that name files of the channel, and the names of those that name none."""
    path = channel_dir / DATASET_INFO
    text = path.read_text(encoding="utf-8-sig")
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{channel_dir.name}/{DATASET_INFO} line {err.lineno}: invalid JSON ({err.msg})"
        ) from None
    if not isinstance(info, dict):
        raise DatasetError(f"{channel_dir.name}/{DATASET_INFO} must be an object of dataset entries")
    entries, unused = [], []
    for name, value in info.items():
        entry = parse_entry(name, value, channel_dir)
        if entry is None:
            unused.append(name)
        else:
            entries.append(entry)
    return entries, unused


# ---------------------------------------------------------------------------------------------------
# Judging and normalising rows


@dataclass(frozen=True)
class Hints:
    """Which recipes take each kind of data, for messages (e.g. {"pairwise": ("dpo",)})."""

    recipes_by_data: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def recipes_for(self, data: str) -> str:
        names = self.recipes_by_data.get(data, ())
        if not names:
            return "no recipe here takes them"
        return f"recipe {names[0]} takes them" if len(names) == 1 else f"recipes {', '.join(names)} take them"


def _media_count(value: Any) -> int:
    if value is None or value == "":
        return 0
    return len(value) if isinstance(value, list) else 1


def _check_unsupported(row: dict, layout: Layout, data: str, where: str, hints: Hints) -> None:
    for kind in MEDIA_COLUMNS:
        column = layout.column(kind)
        count = _media_count(row.get(column)) if column else 0
        if count:
            raise DatasetError(
                f"{where}: field '{column}' holds {count} {kind[:-1]} file(s): rows with {kind} are for "
                f"vision or audio language models, which no recipe here trains; LLaMA-Factory would fail "
                "on them with a text model, and dropping them would leave their placeholders in the text"
            )
    kto = layout.column("kto_tag")
    if kto and isinstance(row.get(kto), bool):
        raise DatasetError(
            f"{where}: field '{kto}' is a KTO label (desirable or undesirable answer), data for "
            "LLaMA-Factory's kto stage, which no recipe here runs; a supervised recipe would train on the "
            f"undesirable answers too. Remove the rows labelled false and the '{kto}' field to train on"
            " the rest"
        )
    if data == "supervised" and layout.ranking:
        raise DatasetError(
            f"{where}: this row is a preference pair ({layout.column('chosen')} and "
            f"{layout.column('rejected')}), which a supervised recipe cannot train on; "
            f"{hints.recipes_for('pairwise')}"
        )
    if data == "pairwise" and not layout.ranking:
        raise DatasetError(
            f"{where}: this row has no preference pair (chosen and rejected), which a preference recipe "
            f"needs; {hints.recipes_for('supervised')}"
        )


def _text(row: dict, column: str | None, where: str, *, required: bool) -> str | None:
    value = row.get(column) if column else None
    if value is None:
        if required:
            raise DatasetError(f"{where}: field '{column}' is missing")
        return None
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field '{column}' must be a string, got {type(value).__name__}")
    return value


def _tools(row: dict, layout: Layout) -> str:
    column = layout.column("tools")
    value = row.get(column) if column else None
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _turn(tag: str, text: str) -> dict:
    return {"from": tag, "value": text}


def _alpaca(row: dict, layout: Layout, data: str, where: str) -> dict:
    turns = []
    history_column = layout.column("history")
    history = row.get(history_column) if history_column else None
    if history is not None:
        if not isinstance(history, list):
            raise DatasetError(f"{where}: field '{history_column}' must be a list of [user, assistant] pairs")
        for index, pair in enumerate(history):
            if not (
                isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
            ):
                raise DatasetError(
                    f"{where}: field '{history_column}[{index}]' must be a pair of strings [user, assistant]"
                )
            turns += [_turn("human", pair[0]), _turn("gpt", pair[1])]
    parts = [
        _text(row, layout.column("prompt"), where, required=False),
        _text(row, layout.column("query"), where, required=False),
    ]
    # As LLaMA-Factory's alpaca reader: the non-empty parts, joined by a newline.
    turns.append(_turn("human", "\n".join(part for part in parts if part)))
    system = _text(row, layout.column("system"), where, required=False) or ""
    normalised = {"conversations": turns, "system": system, "tools": _tools(row, layout)}
    if data == "pairwise":
        for name in ("chosen", "rejected"):
            normalised[name] = _turn("gpt", _text(row, layout.column(name), where, required=True))
    elif layout.column("response") is None:
        raise DatasetError(f"{where}: {layout.source} names no response column, so the row has no answer")
    else:
        turns.append(_turn("gpt", _text(row, layout.column("response"), where, required=True)))
    return normalised


def _sharegpt_turns(row: dict, layout: Layout, where: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The system text of a leading system turn, and the other turns as (role, text), roles mapped."""
    column = layout.column("messages")
    tags = layout.tags
    turns = row.get(column)
    if not isinstance(turns, list) or not turns:
        raise DatasetError(f"{where}: field '{column}' must be a non-empty list of turns")
    roles = {**_role_names(layout), tags["system_tag"]: "system"}
    roles.pop(None, None)
    mapped = []
    for index, turn in enumerate(turns):
        place = f"{column}[{index}]"
        if not isinstance(turn, dict):
            raise DatasetError(f"{where}: field '{place}' must be an object")
        mapped.append(_tagged_turn(turn, place, tags, roles, where))
    system = None
    if mapped[0][0] == "system":
        system, mapped = mapped[0][1], mapped[1:]
    return system, mapped


def _reply(row: dict, name: str, layout: Layout, where: str) -> dict:
    column, tags = layout.column(name), layout.tags
    turn = row.get(column)
    if not isinstance(turn, dict):
        raise DatasetError(f"{where}: field '{column}' must be a turn object like the conversation's")
    allowed = {tags["assistant_tag"]: "gpt", tags["function_tag"]: "function_call"}
    allowed.pop(None, None)
    return _turn(*_tagged_turn(turn, column, tags, allowed, where))


def _tagged_turn(turn: dict, place: str, tags: dict, roles: dict, where: str) -> tuple[str, str]:
    """A turn object's role (one of `roles`, mapped) and its text, or the error naming the field."""
    tag = turn.get(tags["role_tag"])
    if tag not in roles:
        raise DatasetError(
            f"{where}: field '{place}.{tags['role_tag']}' is {tag!r}; allowed: {', '.join(roles)}"
        )
    text = turn.get(tags["content_tag"])
    if not isinstance(text, str):
        raise DatasetError(f"{where}: field '{place}.{tags['content_tag']}' must be a string")
    return roles[tag], text


def _sharegpt(row: dict, layout: Layout, data: str, where: str) -> dict:
    column, role_tag = layout.column("messages"), layout.tags["role_tag"]
    system, turns = _sharegpt_turns(row, layout, where)
    offset = 1 if system is not None else 0
    for index, (role, _) in enumerate(turns):
        expected = ("human", "observation") if index % 2 == 0 else ("gpt", "function_call")
        if role not in expected:
            names = {v: k for k, v in _role_names(layout).items()}
            allowed = ", ".join(names[r] for r in expected if r in names)
            raise DatasetError(
                f"{where}: field '{column}[{index + offset}].{role_tag}' is {names.get(role, role)!r}; turns "
                f"must alternate user then assistant, so this one must be one of {allowed}"
            )
    if not turns:
        raise DatasetError(f"{where}: field '{column}' has only a system turn")
    if data == "supervised" and len(turns) % 2:
        raise DatasetError(f"{where}: field '{column}' must end with an assistant turn")
    if data == "pairwise" and not len(turns) % 2:
        raise DatasetError(
            f"{where}: field '{column}' must end with a user turn, which {layout.column('chosen')} and "
            f"{layout.column('rejected')} answer"
        )
    if system is None:
        system = _text(row, layout.column("system"), where, required=False)
    normalised = {
        "conversations": [_turn(role, text) for role, text in turns],
        "system": system or "",
        "tools": _tools(row, layout),
    }
    if data == "pairwise":
        normalised["chosen"] = _reply(row, "chosen", layout, where)
        normalised["rejected"] = _reply(row, "rejected", layout, where)
    return normalised


def _role_names(layout: Layout) -> dict[str, str]:
    """Tag as written in the data -> normalised role."""
    tags = layout.tags
    names = {
        tags["user_tag"]: "human",
        tags["assistant_tag"]: "gpt",
        tags["observation_tag"]: "observation",
        tags["function_tag"]: "function_call",
    }
    names.pop(None, None)
    return names


NO_HINTS = Hints()


def normalise_row(row: Any, layout: Layout, data: str, where: str, hints: Hints = NO_HINTS) -> dict:
    """Judge one row as LLaMA-Factory would read it under `layout` for `data` (supervised or pairwise),
    and return it in the normalised sharegpt shape `dataset_info_entry` describes."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: a row must be an object, got {type(row).__name__}")
    if layout.source == ROW_KEYS:
        found = detect_layout(row, where)
        if (found.formatting, found.tags) != (layout.formatting, layout.tags):
            raise DatasetError(
                f"{where}: row is in the {_layout_name(found)} layout, "
                f"but this file is {_layout_name(layout)}"
            )
        # Preference pairs are told row by row: a file mixing them with plain rows is refused row by row.
        layout = replace(layout, ranking=found.ranking)
    _check_unsupported(row, layout, data, where, hints)
    if layout.formatting == "alpaca":
        return _alpaca(row, layout, data, where)
    return _sharegpt(row, layout, data, where)


def unread_columns(row: dict, layout: Layout) -> set[str]:
    """The fields of a row that no rule of its layout reads (reported, never silently lost)."""
    read = {name for name in layout.columns.values() if name}
    kto = layout.column("kto_tag")
    if kto in row and not isinstance(row[kto], bool):
        read.discard(kto)
    return set(row) - read


def dataset_info_entry(data: str, file_name: str, num_samples: int | None = None) -> dict:
    """The dataset_info.json entry of a normalised file."""
    columns = {"messages": "conversations", "system": "system", "tools": "tools"}
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if data == "pairwise":
        entry["ranking"] = True
        columns.update(chosen="chosen", rejected="rejected")
    entry["columns"] = columns
    if num_samples is not None:
        entry["num_samples"] = num_samples
    return entry


# ---------------------------------------------------------------------------------------------------
# A channel


@dataclass(frozen=True)
class PreparedChannel:
    """What `prepare_channel` wrote: LLaMA-Factory datasets (name -> dataset_info entry) and a summary."""

    datasets: dict[str, dict]
    rows: int
    layouts: tuple[str, ...]
    ignored_columns: tuple[str, ...] = ()
    unused_entries: tuple[str, ...] = ()

    def describe(self, channel: str) -> str:
        text = f"{channel}: {self.rows} rows ({', '.join(self.layouts)})"
        if self.ignored_columns:
            text += f"; columns no rule reads, left out: {', '.join(self.ignored_columns)}"
        if self.unused_entries:
            text += f"; {DATASET_INFO} entries naming no file here: {', '.join(self.unused_entries)}"
        return text


def _layout_name(layout: Layout) -> str:
    if layout.source != ROW_KEYS:
        return f"{layout.formatting} by {layout.source}"
    return layout.formatting if layout.formatting == "alpaca" else f"sharegpt ({layout.column('messages')})"


def _write_rows(
    files: Sequence[Path],
    channel_dir: Path,
    out_file: Path,
    *,
    layout: Layout | None,
    dataset_format: str,
    data: str,
    hints: Hints,
    ignored: set[str],
    layouts: list[str],
) -> int:
    count = 0
    with out_file.open("w", encoding="utf-8") as out:
        for path in files:
            name = _display_name(channel_dir, path)
            file_layout = layout
            for place, row in iter_file_rows(path, name):
                where = f"{name} {place}"
                if file_layout is None:
                    file_layout = detect_layout(row, where)
                    if dataset_format not in ("auto", file_layout.formatting):
                        raise DatasetError(
                            f"{where}: row is in the {file_layout.formatting} layout, but dataset_format is "
                            f"{dataset_format}"
                        )
                normalised = normalise_row(row, file_layout, data, where, hints)
                ignored.update(unread_columns(row, file_layout))
                out.write(json.dumps(normalised, ensure_ascii=False) + "\n")
                count += 1
            if file_layout is not None:
                layouts.append(f"{name}: {_layout_name(file_layout)}")
    return count


def prepare_channel(
    channel_dir: Path,
    out_dir: Path,
    *,
    name: str | None = None,
    stage: str = "sft",
    dataset_format: str = "auto",
    hints: Hints = NO_HINTS,
) -> PreparedChannel:
    """Judge every row of a channel for the recipe's stage and write the rows, normalised, as JSON Lines
    under `out_dir`: one file for the channel, or one per dataset_info.json entry. `name` (default: the
    folder's) names the LLaMA-Factory datasets written."""
    data = STAGE_DATA[stage]
    out_dir.mkdir(parents=True, exist_ok=True)
    channel = name or channel_dir.name
    ignored: set[str] = set()
    layouts: list[str] = []
    datasets: dict[str, dict] = {}
    rows = 0
    if channel_dir.is_dir() and (channel_dir / DATASET_INFO).is_file():
        entries, unused = read_dataset_info(channel_dir)
        named = {path for entry in entries for path in entry.files}
        if not entries:
            raise DatasetError(
                f"channel {channel}: {DATASET_INFO} names none of the channel's files "
                f"(its entries: {', '.join(unused) or 'none'})"
            )
        for path in list_data_files(channel_dir):
            if path not in named:
                raise DatasetError(
                    f"{_display_name(channel_dir, path)}: no entry of {DATASET_INFO} names this file, so it "
                    "would not be trained on; name it in an entry or remove it"
                )
        for index, entry in enumerate(entries):
            if dataset_format not in ("auto", entry.layout.formatting):
                raise DatasetError(
                    f"{channel}/{DATASET_INFO} entry {entry.name!r}: formatting {entry.layout.formatting}, "
                    f"but dataset_format is {dataset_format}"
                )
            file_name = f"{channel}_{index}.jsonl"
            count = _write_rows(
                entry.files,
                channel_dir,
                out_dir / file_name,
                layout=entry.layout,
                dataset_format=dataset_format,
                data=data,
                hints=hints,
                ignored=ignored,
                layouts=layouts,
            )
            if count == 0:
                raise DatasetError(f"{channel}/{DATASET_INFO} entry {entry.name!r}: no rows in its files")
            rows += count
            datasets[f"{channel}_{index}"] = dataset_info_entry(data, file_name, entry.num_samples)
    else:
        unused = []
        file_name = f"{channel}.jsonl"
        rows = _write_rows(
            list_data_files(channel_dir),
            channel_dir,
            out_dir / file_name,
            layout=None,
            dataset_format=dataset_format,
            data=data,
            hints=hints,
            ignored=ignored,
            layouts=layouts,
        )
        datasets[channel] = dataset_info_entry(data, file_name)
    if rows == 0:
        raise DatasetError(f"channel {channel}: no rows in {channel_dir}")
    return PreparedChannel(datasets, rows, tuple(layouts), tuple(sorted(ignored)), tuple(unused))
