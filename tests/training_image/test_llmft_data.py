"""Dataset validation and normalisation: every bad row is named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llmft_train.data import (
    DatasetError,
    dataset_info_entry,
    detect_format,
    iter_json_rows,
    normalise_row,
    prepare_channel,
)


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


ALPACA = {"instruction": "add two and three", "input": "", "output": "five"}
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "be brief"},
        {"from": "human", "value": "hello"},
        {"from": "gpt", "value": "hi"},
    ]
}
OPENAI = {
    "messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "and again"},
        {"role": "assistant", "content": "hi again"},
    ]
}


def test_layouts_are_detected_from_row_keys():
    assert detect_format(ALPACA, "x") == "alpaca"
    assert detect_format(SHAREGPT, "x") == "sharegpt"
    assert detect_format(OPENAI, "x") == "sharegpt"


def test_json_array_rows_carry_their_line_numbers():
    text = '[\n  {"a": 1},\n  {"a": 2,\n   "b": 3},\n\n  {"a": 4}\n]\n'
    assert list(iter_json_rows(text, "f.json")) == [(2, {"a": 1}), (3, {"a": 2, "b": 3}), (6, {"a": 4})]


def test_json_file_holding_json_lines_is_read_line_by_line():
    text = '{"a": 1}\n\n{"a": 2}\n'
    assert list(iter_json_rows(text, "f.json")) == [(1, {"a": 1}), (3, {"a": 2})]


def test_alpaca_rows_are_normalised_with_defaults():
    row = normalise_row({"instruction": "q", "output": "a"}, "alpaca", "x")
    assert row == {"instruction": "q", "input": "", "output": "a", "system": "", "history": []}


def test_sharegpt_system_turn_moves_to_the_system_field():
    row = normalise_row(SHAREGPT, "sharegpt", "x")
    assert row["system"] == "be brief"
    assert row["conversations"] == [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi"}]


def test_openai_messages_become_sharegpt_turns():
    row = normalise_row(OPENAI, "sharegpt", "x")
    assert [turn["from"] for turn in row["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert row["conversations"][3]["value"] == "hi again"


def test_channel_folder_with_json_and_jsonl_is_merged_in_name_order(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "b.jsonl", [ALPACA, ALPACA])
    (channel / "a.json").write_text(json.dumps([ALPACA]))
    (channel / ".hidden").write_text("ignored")
    layout, count = prepare_channel(channel, tmp_path / "out" / "train.jsonl")
    assert (layout, count) == ("alpaca", 3)
    assert len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 3


def test_byte_order_mark_from_windows_editors_is_accepted(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([ALPACA]).encode())
    (channel / "rows.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(ALPACA).encode() + b"\n")
    assert prepare_channel(channel, tmp_path / "out.jsonl") == ("alpaca", 2)


def test_single_file_channel(tmp_path):
    path = write_lines(tmp_path / "only.jsonl", [OPENAI])
    layout, count = prepare_channel(path, tmp_path / "out.jsonl")
    assert (layout, count) == ("sharegpt", 1)


def test_dataset_info_entries_name_the_normalised_columns():
    alpaca = dataset_info_entry("alpaca", "train.jsonl")
    assert alpaca["formatting"] == "alpaca"
    assert alpaca["columns"]["prompt"] == "instruction"
    assert alpaca["columns"]["response"] == "output"
    sharegpt = dataset_info_entry("sharegpt", "train.jsonl")
    assert sharegpt["formatting"] == "sharegpt"
    assert sharegpt["columns"]["messages"] == "conversations"
    # Every column named must exist in every normalised row, or LLaMA-Factory fails on a KeyError.
    assert set(alpaca["columns"].values()) == set(normalise_row(ALPACA, "alpaca", "x"))
    assert set(sharegpt["columns"].values()) == set(normalise_row(SHAREGPT, "sharegpt", "x"))


BAD_ROWS = [
    ({"instruction": "q"}, "alpaca", "train/data.jsonl line 2: field 'output' is missing"),
    ({"instruction": "q", "output": 5}, "alpaca", "field 'output' must be a string, got int"),
    ({"instruction": "  ", "output": "a"}, "alpaca", "field 'instruction' is empty"),
    (
        {"instruction": "q", "output": "a", "history": [["only one"]]},
        "alpaca",
        "field 'history[0]' must be a pair of strings",
    ),
    (
        {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]},
        "sharegpt",
        "field 'conversations[0].from' is 'gpt'; turns must alternate user then assistant",
    ),
    (
        {"conversations": [{"from": "human", "value": "hi"}]},
        "sharegpt",
        "field 'conversations' must end with an assistant turn",
    ),
    (
        {"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]},
        "sharegpt",
        "field 'conversations[0].value' must be a string",
    ),
    ({"messages": []}, "sharegpt", "field 'messages' must be a non-empty list of turns"),
    (
        {"messages": [{"role": "robot", "content": "x"}]},
        "sharegpt",
        "field 'messages[0].role' is 'robot'; allowed: user, assistant, system, tool",
    ),
    ({"prompt": "q", "completion": "a"}, "alpaca", "cannot tell the layout from ['completion', 'prompt']"),
    (OPENAI, "alpaca", "row is in the sharegpt layout, but this dataset is alpaca"),
]


@pytest.mark.parametrize(("bad", "layout", "message"), BAD_ROWS)
def test_bad_row_is_reported_by_file_line_and_field(tmp_path, bad, layout, message):
    good = ALPACA if layout == "alpaca" else OPENAI
    channel = tmp_path / "train"
    write_lines(channel / "data.jsonl", [good, bad, good])
    with pytest.raises(DatasetError) as caught:
        prepare_channel(channel, tmp_path / "out.jsonl", layout)
    assert "train/data.jsonl line 2: " in str(caught.value)
    assert message in str(caught.value)


def test_bad_row_in_a_json_array_names_its_line(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.json").write_text('[\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q"}\n]')
    with pytest.raises(DatasetError, match=r"train/rows.json line 3: field 'output' is missing"):
        prepare_channel(channel, tmp_path / "out.jsonl")


def test_invalid_json_line_is_reported(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "data.jsonl").write_text(json.dumps(ALPACA) + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"train/data.jsonl line 2: invalid JSON"):
        prepare_channel(channel, tmp_path / "out.jsonl")


def test_unclosed_json_array_is_reported(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.json").write_text('[{"instruction": "q", "output": "a"},')
    with pytest.raises(DatasetError, match=r"train/rows.json: the JSON array is not closed"):
        prepare_channel(channel, tmp_path / "out.jsonl")


def test_unsupported_file_in_channel_is_named_with_allowed_extensions(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "data.jsonl", [ALPACA])
    (channel / "data.csv").write_text("a,b\n")
    with pytest.raises(
        DatasetError, match=r"file data.csv has an unsupported extension; allowed: .json, .jsonl"
    ):
        prepare_channel(channel, tmp_path / "out.jsonl")


def test_empty_channel_is_rejected(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    with pytest.raises(DatasetError, match=r"channel train: no data files"):
        prepare_channel(channel, tmp_path / "out.jsonl")
    (channel / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match=r"channel train: no rows"):
        prepare_channel(channel, tmp_path / "out.jsonl")
