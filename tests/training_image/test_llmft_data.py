"""Dataset channels: every row judged by LLaMA-Factory's rules for the stage, named by file, line and field
when refused, and normalised into rows LLaMA-Factory reads exactly as it would have read the originals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from llmft_train.data import (
    OPENAI_TAGS,
    DatasetError,
    Hints,
    Layout,
    dataset_info_entry,
    detect_layout,
    iter_json_rows,
    normalise_row,
    prepare_channel,
)

HINTS = Hints({"supervised": ("full_sft", "lora", "qlora_4bit"), "pairwise": ("dpo",)})


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def prepare(channel: Path, out: Path, **options):
    return prepare_channel(channel, out, hints=HINTS, **options)


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
# Rows shaped like LLaMA-Factory's demo files (data/dpo_en_demo.json, kto_en_demo.json, mllm_demo.json).
SHAREGPT_PAIR = {
    "conversations": [{"from": "human", "value": "name a colour"}],
    "chosen": {"from": "gpt", "value": "blue"},
    "rejected": {"from": "gpt", "value": "seven"},
}
ALPACA_PAIR = {"instruction": "name a colour", "input": "", "chosen": "blue", "rejected": "seven"}
KTO = {
    "messages": [{"role": "user", "content": "say hello"}, {"role": "assistant", "content": "go away"}],
    "label": False,
}
MULTIMODAL = {
    "messages": [
        {"role": "user", "content": "<image>Who are they?"},
        {"role": "assistant", "content": "Two players."},
    ],
    "images": ["mllm_demo_data/1.jpg"],
}

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
PAIR_COLUMNS = {"chosen": "chosen", "rejected": "rejected"}


def test_layouts_are_detected_from_row_keys():
    assert detect_layout(ALPACA, "x").formatting == "alpaca"
    assert detect_layout(SHAREGPT, "x").formatting == "sharegpt"
    assert detect_layout(OPENAI, "x").tags == OPENAI_TAGS
    assert detect_layout(ALPACA_PAIR, "x").ranking and detect_layout(SHAREGPT_PAIR, "x").ranking
    assert detect_layout({"input": "q", "output": "a"}, "x").formatting == "alpaca"


def test_json_array_rows_carry_their_line_numbers():
    text = '[\n  {"a": 1},\n  {"a": 2,\n   "b": 3},\n\n  {"a": 4}\n]\n'
    assert list(iter_json_rows(text, "f.json")) == [(2, {"a": 1}), (3, {"a": 2, "b": 3}), (6, {"a": 4})]


def test_json_file_holding_json_lines_is_read_line_by_line():
    text = '{"a": 1}\n\n{"a": 2}\n'
    assert list(iter_json_rows(text, "f.json")) == [(1, {"a": 1}), (3, {"a": 2})]


def normalise(row: dict, data: str = "supervised") -> dict:
    return normalise_row(row, detect_layout(row, "x"), data, "x", HINTS)


def test_alpaca_rows_become_turns_with_the_prompt_parts_joined():
    row = normalise({"instruction": "q", "input": "context", "output": "a", "system": "s"})
    assert row == {
        "conversations": [{"from": "human", "value": "q\ncontext"}, {"from": "gpt", "value": "a"}],
        "system": "s",
        "tools": "",
    }


def test_alpaca_prompt_in_input_with_an_empty_instruction_is_accepted():
    # Measured: refused, although LLaMA-Factory joins instruction and input and trains on the row.
    row = normalise({"instruction": "", "input": "translate cat", "output": "chat"})
    assert row["conversations"][0] == {"from": "human", "value": "translate cat"}


def test_sharegpt_system_turn_moves_to_the_system_field():
    row = normalise(SHAREGPT)
    assert row["system"] == "be brief"
    assert row["conversations"] == [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi"}]


def test_openai_messages_become_sharegpt_turns():
    row = normalise(OPENAI)
    assert [turn["from"] for turn in row["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert row["conversations"][3]["value"] == "hi again"


def test_preference_pairs_are_normalised_for_the_dpo_stage():
    sharegpt = normalise(SHAREGPT_PAIR, "pairwise")
    alpaca = normalise(ALPACA_PAIR, "pairwise")
    for row in (sharegpt, alpaca):
        assert row["conversations"] == [{"from": "human", "value": "name a colour"}]
        assert row["chosen"] == {"from": "gpt", "value": "blue"}
        assert row["rejected"] == {"from": "gpt", "value": "seven"}


def test_channel_folder_with_json_and_jsonl_is_merged_in_name_order(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "b.jsonl", [ALPACA, ALPACA])
    (channel / "a.json").write_text(json.dumps([ALPACA]))
    (channel / ".hidden").write_text("ignored")
    prepared = prepare(channel, tmp_path / "out")
    assert prepared.rows == 3 and list(prepared.datasets) == ["train"]
    assert len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 3


def test_parquet_and_csv_files_are_read_as_llamafactory_reads_them(tmp_path):
    # Measured: refused, although LLaMA-Factory loads both file types.
    import pyarrow as pa
    import pyarrow.parquet as pq

    channel = tmp_path / "train"
    channel.mkdir()
    pq.write_table(pa.Table.from_pylist([ALPACA, {**ALPACA, "output": "six"}]), channel / "a.parquet")
    with (channel / "b.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerow({"instruction": "say hello", "input": "", "output": "hello world"})
    prepared = prepare(channel, tmp_path / "out")
    rows = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert prepared.rows == 3
    assert [row["conversations"][1]["value"] for row in rows] == ["five", "six", "hello world"]


def test_an_empty_csv_cell_is_a_missing_value_as_in_llamafactory(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.csv").write_text("instruction,output\nsay hello,hello\nsay bye,\n")
    with pytest.raises(DatasetError, match=r"train/rows.csv line 3: field 'output' is missing"):
        prepare(channel, tmp_path / "out")


def test_arrow_stream_files_from_the_datasets_library_are_read(tmp_path):
    import pyarrow as pa

    channel = tmp_path / "train"
    channel.mkdir()
    table = pa.Table.from_pylist([ALPACA])
    with pa.OSFile(str(channel / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    assert prepare(channel, tmp_path / "out").rows == 1


def test_byte_order_mark_from_windows_editors_is_accepted(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([ALPACA]).encode())
    (channel / "rows.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(ALPACA).encode() + b"\n")
    assert prepare(channel, tmp_path / "out").rows == 2


def test_single_file_channel(tmp_path):
    path = write_lines(tmp_path / "only.jsonl", [OPENAI])
    prepared = prepare(path, tmp_path / "out", name="train")
    assert prepared.rows == 1 and prepared.layouts == ("only.jsonl: sharegpt (messages)",)


def test_columns_no_rule_reads_are_reported_not_silently_lost(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "data.jsonl", [{**ALPACA, "id": 7, "source": "web", "label": "easy"}])
    prepared = prepare(channel, tmp_path / "out")
    assert prepared.ignored_columns == ("id", "label", "source")
    assert "columns no rule reads, left out: id, label, source" in prepared.describe("train")


def test_normalised_entries_name_the_columns_every_row_has():
    supervised = dataset_info_entry("supervised", "train.jsonl")
    pairwise = dataset_info_entry("pairwise", "train.jsonl", num_samples=10)
    assert supervised == {
        "file_name": "train.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
    }
    assert pairwise["ranking"] is True and pairwise["num_samples"] == 10
    # Every column named must exist in every normalised row, or LLaMA-Factory fails on a KeyError.
    assert set(supervised["columns"].values()) == set(normalise(ALPACA))
    assert set(pairwise["columns"].values()) == set(normalise(ALPACA_PAIR, "pairwise"))


# --- what is refused, measured with rows shaped like LLaMA-Factory's demo files ---------------------


def refusal(tmp_path: Path, rows: list, stage: str = "sft", name: str = "data.jsonl") -> str:
    channel = tmp_path / "train"
    write_lines(channel / name, rows)
    with pytest.raises(DatasetError) as caught:
        prepare(channel, tmp_path / "out", stage=stage)
    return str(caught.value)


def test_kto_labels_are_refused_not_dropped(tmp_path):
    # Measured: kto_en_demo.json was accepted and its label dropped, so the bad answers became targets.
    message = refusal(tmp_path, [{**KTO, "label": True}, KTO])
    assert message.startswith("train/data.jsonl line 1: field 'label' is a KTO label"), message
    assert "no recipe here runs" in message and "would train on the undesirable answers" in message


def test_images_are_refused_not_dropped(tmp_path):
    # Measured: mllm_demo.json was accepted with its images dropped and `<image>` left in the text.
    message = refusal(tmp_path, [MULTIMODAL])
    assert message.startswith("train/data.jsonl line 1: field 'images' holds 1 image file(s)"), message
    assert "no recipe here trains" in message


def test_a_row_without_media_keeps_literal_placeholders_as_llamafactory_does(tmp_path):
    row = {**MULTIMODAL, "images": []}
    assert normalise(row)["conversations"][0]["value"] == "<image>Who are they?"


def test_preference_pairs_under_a_supervised_recipe_name_the_dpo_recipe(tmp_path):
    # Measured: refused as "must end with an assistant turn".
    message = refusal(tmp_path, [SHAREGPT_PAIR])
    assert message == (
        "train/data.jsonl line 1: this row is a preference pair (chosen and rejected), which a supervised "
        "recipe cannot train on; recipe dpo takes them"
    )
    assert "recipe dpo takes them" in refusal(tmp_path, [ALPACA_PAIR])


def test_plain_rows_under_the_dpo_recipe_name_the_supervised_recipes(tmp_path):
    message = refusal(tmp_path, [SHAREGPT_PAIR, SHAREGPT], stage="dpo")
    assert message.startswith("train/data.jsonl line 2: this row has no preference pair"), message
    assert message.endswith("recipes full_sft, lora, qlora_4bit take them")


BAD_ROWS = [
    ({"instruction": "q"}, "sft", "train/data.jsonl line 2: field 'output' is missing"),
    ({"instruction": "q", "output": 5}, "sft", "field 'output' must be a string, got int"),
    ({"instruction": 5, "output": "a"}, "sft", "field 'instruction' must be a string, got int"),
    (
        {"instruction": "q", "output": "a", "history": [["only one"]]},
        "sft",
        "field 'history[0]' must be a pair of strings",
    ),
    (
        {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]},
        "sft",
        "field 'conversations[0].from' is 'gpt'; turns must alternate user then assistant",
    ),
    (
        {"conversations": [{"from": "human", "value": "hi"}]},
        "sft",
        "field 'conversations' must end with an assistant turn",
    ),
    (
        {"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]},
        "sft",
        "field 'conversations[0].value' must be a string",
    ),
    ({"messages": []}, "sft", "field 'messages' must be a non-empty list of turns"),
    (
        {"messages": [{"role": "robot", "content": "x"}]},
        "sft",
        "field 'messages[0].role' is 'robot'; allowed: user, assistant, tool, system",
    ),
    ({"prompt": "q", "completion": "a"}, "sft", "cannot tell the layout from ['completion', 'prompt']"),
    (SHAREGPT, "sft", "row is in the sharegpt (conversations) layout, but this file is alpaca"),
    ({**SHAREGPT_PAIR, "chosen": "blue"}, "dpo", "field 'chosen' must be a turn object"),
    (
        {**SHAREGPT_PAIR, "rejected": {"from": "human", "value": "x"}},
        "dpo",
        "field 'rejected.from' is 'human'; allowed: gpt, function_call",
    ),
    (
        {**SHAREGPT_PAIR, "conversations": SHAREGPT["conversations"]},
        "dpo",
        "field 'conversations' must end with a user turn, which chosen and rejected answer",
    ),
    ({**ALPACA_PAIR, "rejected": None}, "dpo", "field 'rejected' is missing"),
]


@pytest.mark.parametrize(("bad", "stage", "message"), BAD_ROWS)
def test_bad_row_is_reported_by_file_line_and_field(tmp_path, bad, stage, message):
    good = {"sft": ALPACA, "dpo": ALPACA_PAIR}[stage]
    if "conversations" in bad or "messages" in bad:
        good = {"sft": OPENAI if "messages" in bad else SHAREGPT, "dpo": SHAREGPT_PAIR}[stage]
    if bad is SHAREGPT:
        good = ALPACA
    caught = refusal(tmp_path, [good, bad, good], stage=stage)
    assert caught.startswith("train/data.jsonl line 2: "), caught
    assert message in caught, caught


def test_bad_row_in_a_json_array_names_its_line(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.json").write_text('[\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q"}\n]')
    with pytest.raises(DatasetError, match=r"train/rows.json line 3: field 'output' is missing"):
        prepare(channel, tmp_path / "out")


def test_invalid_json_line_is_reported(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "data.jsonl").write_text(json.dumps(ALPACA) + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"train/data.jsonl line 2: invalid JSON"):
        prepare(channel, tmp_path / "out")


def test_unclosed_json_array_is_reported(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "rows.json").write_text('[{"instruction": "q", "output": "a"},')
    with pytest.raises(DatasetError, match=r"train/rows.json: the JSON array is not closed"):
        prepare(channel, tmp_path / "out")


@pytest.mark.parametrize(
    ("file_name", "message"),
    [
        ("notes.txt", "train/notes.txt: plain text is pre-training data (LLaMA-Factory's pt stage)"),
        ("data.xlsx", "train/data.xlsx: unsupported file type .xlsx; allowed: .json, .jsonl, .csv, .parquet"),
    ],
)
def test_files_llamafactory_cannot_train_a_recipe_on_are_named(tmp_path, file_name, message):
    channel = tmp_path / "train"
    write_lines(channel / "data.jsonl", [ALPACA])
    (channel / file_name).write_text("a,b\n")
    with pytest.raises(DatasetError) as caught:
        prepare(channel, tmp_path / "out")
    assert message in str(caught.value)


def test_empty_channel_is_rejected(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    with pytest.raises(DatasetError, match=r"channel train: no data files"):
        prepare(channel, tmp_path / "out")
    (channel / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match=r"channel train: no rows"):
        prepare(channel, tmp_path / "out")


def test_dataset_format_insists_on_one_layout(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "data.jsonl", [OPENAI])
    with pytest.raises(
        DatasetError, match=r"line 1: row is in the sharegpt layout, but dataset_format is alpaca"
    ):
        prepare(channel, tmp_path / "out", dataset_format="alpaca")


# --- LLaMA-Factory's own dataset_info.json in the channel -------------------------------------------


def write_info(channel: Path, info: dict) -> None:
    channel.mkdir(parents=True, exist_ok=True)
    (channel / "dataset_info.json").write_text(json.dumps(info, indent=2))


def test_a_dataset_info_json_in_the_channel_says_how_its_files_are_read(tmp_path):
    # Measured: a valid dataset_info.json in the channel was reported as invalid JSON.
    channel = tmp_path / "train"
    write_lines(channel / "qa.jsonl", [{"question": "say hello", "answer": "hello", "id": 1}])
    write_lines(
        channel / "chat.jsonl", [{"dialog": [{"speaker": "u", "text": "hi"}, {"speaker": "a", "text": "yo"}]}]
    )
    write_info(
        channel,
        {
            "qa": {
                "file_name": "qa.jsonl",
                "columns": {"prompt": "question", "response": "answer"},
                "num_samples": 5,
            },
            "chat": {
                "file_name": "chat.jsonl",
                "formatting": "sharegpt",
                "columns": {"messages": "dialog"},
                "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "u", "assistant_tag": "a"},
            },
            "alpaca_en": {"hf_hub_url": "llamafactory/alpaca_en"},
            "elsewhere": {"file_name": "not_here.json"},
        },
    )
    prepared = prepare(channel, tmp_path / "out")
    assert prepared.datasets == {
        "train_0": dataset_info_entry("supervised", "train_0.jsonl", num_samples=5),
        "train_1": dataset_info_entry("supervised", "train_1.jsonl"),
    }
    assert read_jsonl(tmp_path / "out" / "train_0.jsonl")[0]["conversations"][0]["value"] == "say hello"
    assert read_jsonl(tmp_path / "out" / "train_1.jsonl")[0]["conversations"][1] == {
        "from": "gpt",
        "value": "yo",
    }
    assert prepared.unused_entries == ("alpaca_en", "elsewhere")
    assert prepared.ignored_columns == ("id",)


@pytest.mark.parametrize(
    ("entry", "stage", "message"),
    [
        (
            {
                "file_name": "data.jsonl",
                "ranking": True,
                "columns": {"prompt": "instruction", **PAIR_COLUMNS},
            },
            "sft",
            "this row is a preference pair (chosen and rejected), which a supervised recipe cannot train on",
        ),
        ({"file_name": "data.jsonl"}, "dpo", "this row has no preference pair"),
        (
            {"file_name": "data.jsonl", "columns": {**ALPACA_COLUMNS, "kto_tag": "label"}},
            "sft",
            "field 'label' is a KTO label",
        ),
        ({"file_name": "data.jsonl", "formatting": "openai"}, "sft", "formatting 'openai' is not taken"),
        ({"file_name": "data.jsonl", "colums": {}}, "sft", "unknown keys ['colums']"),
        ({"file_name": "data.jsonl", "columns": {"answer": "x"}}, "sft", "unknown names ['answer']"),
        ({"file_name": "data.jsonl", "split": "test"}, "sft", "split 'test'"),
        (
            {"file_name": "data.jsonl", "ranking": True},
            "dpo",
            "names no chosen, rejected; LLaMA-Factory cannot",
        ),
        (
            {"file_name": "data.jsonl", "columns": {"prompt": "instruction"}},
            "sft",
            "names no response column",
        ),
    ],
)
def test_dataset_info_entries_are_judged_like_llamafactory_reads_them(tmp_path, entry, stage, message):
    channel = tmp_path / "train"
    row = {**ALPACA, "chosen": "five", "rejected": "six", "label": True}
    write_lines(channel / "data.jsonl", [row])
    write_info(channel, {"mine": entry})
    with pytest.raises(DatasetError) as caught:
        prepare(channel, tmp_path / "out", stage=stage)
    assert message in str(caught.value)


def test_a_file_no_dataset_info_entry_names_is_refused(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "a.jsonl", [ALPACA])
    write_lines(channel / "b.jsonl", [ALPACA])
    write_info(channel, {"a": {"file_name": "a.jsonl"}})
    with pytest.raises(DatasetError, match=r"train/b.jsonl: no entry of dataset_info.json names this file"):
        prepare(channel, tmp_path / "out")


def test_dataset_info_that_is_not_json_names_its_line(tmp_path):
    channel = tmp_path / "train"
    write_lines(channel / "a.jsonl", [ALPACA])
    (channel / "dataset_info.json").write_text('{\n  "a": {"file_name": "a.jsonl",}\n}')
    with pytest.raises(DatasetError, match=r"train/dataset_info.json line 2: invalid JSON"):
        prepare(channel, tmp_path / "out")


# --- what LLaMA-Factory reads from a normalised row is what it read from the original ---------------


def llamafactory_reads(row: dict, entry: dict) -> dict:
    """LLaMA-Factory 0.9.5's own converter applied to one row under a dataset_info.json entry."""
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    attr = DatasetAttr("file", dataset_name="x")
    attr.join(entry)
    # A loaded dataset has every column in every row; the datasets library fills the gaps with None.
    columns = [getattr(attr, name) for name in ("prompt", "query", "response", "history", "system", "tools")]
    full_row = {**dict.fromkeys(filter(None, columns)), **row}
    converted = get_dataset_converter(attr.formatting, attr, DataArguments())(full_row)
    return {key: converted[key] for key in ("_prompt", "_response", "_system", "_tools")}


ROLE_CONTENT = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
}
EQUIVALENT = [
    ("alpaca", {"instruction": "q", "input": "c", "output": "a"}, {}, "supervised"),
    (
        "alpaca with history and system",
        {"instruction": "q", "output": "a", "system": "s", "history": [["u", "v"]]},
        {"columns": {**ALPACA_COLUMNS, "history": "history", "system": "system"}},
        "supervised",
    ),
    ("prompt in input only", {"instruction": "", "input": "c", "output": "a"}, {}, "supervised"),
    ("sharegpt", SHAREGPT, {"formatting": "sharegpt"}, "supervised"),
    (
        "messages",
        OPENAI,
        {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": ROLE_CONTENT},
        "supervised",
    ),
    (
        "sharegpt pair",
        SHAREGPT_PAIR,
        {"formatting": "sharegpt", "ranking": True, "columns": {"messages": "conversations", **PAIR_COLUMNS}},
        "pairwise",
    ),
    (
        "alpaca pair",
        ALPACA_PAIR,
        {"ranking": True, "columns": {**ALPACA_COLUMNS, **PAIR_COLUMNS}},
        "pairwise",
    ),
]


@pytest.mark.parametrize(("case", "row", "entry", "data"), EQUIVALENT, ids=[e[0] for e in EQUIVALENT])
def test_llamafactory_reads_the_normalised_row_as_it_reads_the_original(case, row, entry, data):
    normalised = normalise(row, data)
    ours = llamafactory_reads(normalised, dataset_info_entry(data, "x.jsonl"))
    assert ours == llamafactory_reads(row, {"file_name": "x", **entry})
    assert ours["_response"], "a row LLaMA-Factory would drop"


def test_layout_of_a_dataset_info_entry_applies_to_every_row():
    layout = Layout("alpaca", False, {"prompt": "q", "response": "a"})
    assert (
        normalise_row({"q": "hi", "a": "yo"}, layout, "supervised", "x")["conversations"][1]["value"] == "yo"
    )
