"""Resume selection, model folder contents, metrics, failure line and progress regexes."""

from __future__ import annotations

import pytest
from llmft_train.failure import MAX_LENGTH, failure_line, write_failure
from llmft_train.hyperparams import ConfigError
from llmft_train.outputs import (
    adapter_member_names,
    find_resume_checkpoint,
    model_file_names,
    newest_checkpoint,
    summarize_metrics,
)
from llmft_train.progress import (
    METRIC_DEFINITIONS,
    format_eval_line,
    format_final_line,
    format_train_line,
    parse_metrics,
)


def test_newest_complete_checkpoint_wins_by_step_number_not_by_name():
    found = newest_checkpoint(
        {"checkpoint-9": True, "checkpoint-100": True, "checkpoint-20": True, "runs": True}
    )
    assert found == "checkpoint-100"


def test_incomplete_checkpoint_is_skipped():
    # A job stopped while saving leaves a folder without trainer_state.json.
    assert newest_checkpoint({"checkpoint-10": True, "checkpoint-20": False}) == "checkpoint-10"
    assert newest_checkpoint({"checkpoint-20": False}) is None
    assert newest_checkpoint({}) is None


def test_find_resume_checkpoint_reads_the_folder(tmp_path):
    assert find_resume_checkpoint(tmp_path / "missing") is None
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert find_resume_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_model_files_leave_out_training_args_and_hidden_files():
    names = ["adapter_model.safetensors", "training_args.bin", ".sagemaker-uploading", "tokenizer.json"]
    assert model_file_names(names) == ["adapter_model.safetensors", "tokenizer.json"]


def test_only_the_top_of_a_model_tar_makes_the_adapter_to_continue():
    names = [
        "./adapter_config.json",
        "adapter_model.safetensors",
        "merged/model.safetensors",
        "./.hidden",
        "./",
    ]
    assert adapter_member_names(names) == ["./adapter_config.json", "adapter_model.safetensors"]


def test_metrics_summarize_the_trainer_state():
    state = {
        "global_step": 30,
        "epoch": 1.5,
        "num_input_tokens_seen": 9000,
        "log_history": [
            {"loss": 2.0, "learning_rate": 1e-4, "step": 10},
            {"eval_loss": 1.9, "step": 20},
            {"loss": 1.5, "learning_rate": 5e-5, "step": 30},
            {"train_loss": 1.75, "train_runtime": 12.5, "train_samples_per_second": 4.0, "step": 30},
        ],
    }
    metrics = summarize_metrics(state, resumed_from="checkpoint-20")
    assert metrics["global_step"] == 30
    assert metrics["loss"] == 1.5
    assert metrics["learning_rate"] == 5e-5
    assert metrics["eval_loss"] == 1.9
    assert metrics["train_loss"] == 1.75
    assert metrics["train_runtime"] == 12.5
    assert metrics["resumed_from"] == "checkpoint-20"


def test_failure_line_is_one_line_without_secrets():
    error = RuntimeError("could not load\nmodel with token hf_secret123\n  at line 3")
    line = failure_line(error, ["hf_secret123", None])
    assert line == "RuntimeError: could not load model with token *** at line 3"


def test_config_errors_read_as_their_message_and_long_lines_are_cut():
    assert failure_line(ConfigError("unknown recipe 'x'")) == "unknown recipe 'x'"
    assert len(failure_line(ValueError("x" * 5000))) == MAX_LENGTH


def test_first_failure_written_is_kept(tmp_path):
    path = tmp_path / "output" / "failure"
    write_failure(path, "rank 3: CUDA out of memory", keep_existing=True)
    write_failure(path, "rank 5: connection reset", keep_existing=True)
    assert path.read_text() == "rank 3: CUDA out of memory\n"
    write_failure(path, "launcher: bad input")
    assert path.read_text() == "launcher: bad input\n"


def test_metric_definitions_have_sagemaker_shape():
    for definition in METRIC_DEFINITIONS:
        assert set(definition) == {"Name", "Regex"}
        assert 0 < len(definition["Regex"]) <= 500 and 0 < len(definition["Name"]) <= 255


def test_progress_regexes_read_a_train_line():
    line = format_train_line(step=12, loss=1.23456, learning_rate=1e-4, epoch=0.5, tokens_per_second=1234.56)
    assert line == ("llmft step=12 loss=1.2346 learning_rate=1.000e-04 epoch=0.50 tokens_per_second=1234.6")
    assert parse_metrics(line) == {
        "train:loss": 1.2346,
        "train:learning_rate": 1e-4,
        "train:epoch": 0.5,
        "train:tokens_per_second": 1234.6,
    }


def test_progress_regexes_read_eval_and_final_lines_without_crosstalk():
    assert parse_metrics(format_eval_line(40, 0.98765)) == {"validation:loss": 0.9877}
    assert parse_metrics(format_final_line(40, 1.1, 12.0)) == {"train:final_loss": 1.1}
    assert parse_metrics("[INFO] loss=3.0 learning_rate=1e-4") == {}


def test_progress_module_imports_only_the_standard_library():
    import subprocess
    import sys

    from conftest import TRAINING_IMAGE

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
        "import llmft_train.progress; "
        "extra = sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] not in sys.stdlib_module_names and not m.startswith('llmft_train')); "
        "print(extra)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(TRAINING_IMAGE)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", f"progress.py pulled in: {result.stdout}"


def test_progress_line_glued_to_a_progress_bar_still_parses():
    # Logs merge stdout and stderr; a progress bar's carriage return leaves no newline before us.
    line = " 33%|###       | 1/3 [00:00<00:00,  4.84it/s]" + format_train_line(1, 3.9, 0.0, 0.2, 120.0)
    assert parse_metrics(line)["train:loss"] == 3.9


@pytest.mark.parametrize("value", [0.0, 1e-8, 123456.789])
def test_learning_rate_formats_stay_parseable(value):
    line = format_train_line(step=1, loss=1.0, learning_rate=value, epoch=0.0, tokens_per_second=0.0)
    assert parse_metrics(line)["train:learning_rate"] == pytest.approx(value, rel=1e-3)
