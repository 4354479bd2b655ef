"""Dataset text stays out of the job log: LLaMA-Factory's example print and its converter's row warnings."""

from __future__ import annotations

from llmft_train.log_privacy import WITHHELD, example_summary, redact_row, withhold_dataset_text

PRIVATE = "patient 4411 reports chest pain"


def test_the_example_summary_counts_tokens_and_trained_labels_only():
    summary = example_summary(
        {"input_ids": [5, 6, 7, 8], "attention_mask": [1, 1, 1, 1], "labels": [-100, -100, 7, 8]}
    )
    assert summary == f"input_ids: 4 tokens, labels: 2 trained ({WITHHELD})"
    pairs = example_summary(
        {"chosen_input_ids": [1, 2], "rejected_input_ids": [1], "chosen_labels": [2, -100]}
    )
    assert pairs.startswith(
        "chosen_input_ids: 2 tokens, rejected_input_ids: 1 tokens, chosen_labels: 1 trained"
    )


def test_a_row_in_a_warning_is_cut_off_and_other_messages_pass_unchanged():
    assert redact_row(f"Invalid role tag in [{{'from': 'gpt', 'value': '{PRIVATE}'}}].") == (
        f"Invalid role tag in a dataset row ({WITHHELD})."
    )
    assert redact_row("Skipping this abnormal example.") == "Skipping this abnormal example."


def test_llamafactorys_processors_and_converter_no_longer_print_rows(capfd):
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments

    withhold_dataset_text()
    withhold_dataset_text()  # idempotent: one filter, however often a worker calls it

    # The real converter on a row whose first turn is the assistant's: it warns, naming the row.
    converter = SharegptDatasetConverter(
        dataset_attr=DatasetAttr(load_from="file", dataset_name="rows", formatting="sharegpt"),
        data_args=DataArguments(),
    )
    converter({"conversations": [{"from": "gpt", "value": PRIVATE}]})
    # The processor's print, called as loader.py calls it (self is not used by the replacement).
    SupervisedDatasetProcessor.print_data_example(None, {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]})
    out, err = capfd.readouterr()
    assert PRIVATE not in out + err
    assert "Invalid role tag in a dataset row" in out + err, "the warning itself is kept"
    assert f"input_ids: 3 tokens, labels: 2 trained ({WITHHELD})" in out
