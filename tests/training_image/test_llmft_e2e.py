"""The real `train` entrypoint on the CPU: a tiny random Llama, LLaMA-Factory LoRA SFT, resume."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from conftest import run_train_command, start_train_command, train_env
from jobtree import alpaca_rows, preference_rows, write_job
from llmft_train import cli
from llmft_train.paths import JobPaths
from llmft_train.progress import parse_metrics

TOKEN = "hf_e2eSecretTokenValue0123456789"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-token-Xy12Ab"

# Small and fast on two CPU cores; only keys every recipe accepts, so recipe tuning can't break it.
FAST = {
    "template": "default",
    "logging_steps": "1",
    "per_device_train_batch_size": "2",
    "gradient_accumulation_steps": "1",
    "cutoff_len": "64",
    "packing": "false",
    "neat_packing": "false",
    "preprocessing_num_workers": "1",
    "dataloader_num_workers": "0",
}


def progress(output: str) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) for each training progress line in a run's output."""
    lines = [line for line in output.splitlines() if line.startswith("llmft step=")]
    return [(int(line.split()[1].split("=")[1]), parse_metrics(line)) for line in lines]


def files_containing(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def stub_secret(monkeypatch) -> Stubber:
    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.add_response(
        "get_secret_value",
        {"ARN": SECRET_ARN, "Name": "hf-token", "SecretString": json.dumps({"HF_TOKEN": TOKEN})},
        {"SecretId": SECRET_ARN},
    )
    stubber.activate()
    monkeypatch.setattr(boto3, "client", lambda service, region_name: client)
    return stubber


def use_env(monkeypatch, env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_lora_run_writes_adapter_merged_model_and_metrics_without_leaking_the_token(
    tmp_path, tiny_model, monkeypatch, capfd
):
    root = write_job(
        tmp_path / "opt_ml",
        {
            **FAST,
            "recipe": "lora",
            "max_steps": "4",
            "save_steps": "4",
            "eval_steps": "2",
            "merge_adapter": "true",
        },
        alpaca_rows(20),
        tiny_model,
    )
    validation = root / "input" / "data" / "validation"
    validation.mkdir()
    (validation / "val.json").write_text(json.dumps(alpaca_rows(4)))
    use_env(monkeypatch, {**train_env(root, tmp_path), "HF_TOKEN_SECRET_ARN": SECRET_ARN})
    stubber = stub_secret(monkeypatch)

    code = cli.main()
    out, err = capfd.readouterr()

    assert code == 0, (
        f"train failed: {(root / 'output' / 'failure').read_text() if code else ''}\n{err[-3000:]}"
    )
    stubber.assert_no_pending_responses()
    model = root / "model"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "metrics.json"):
        assert (model / name).is_file(), f"{name} missing from the model folder"
    resolved = yaml.safe_load((model / "llamafactory_config.yaml").read_text())
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA"
    assert adapter["r"] == resolved["lora_rank"]
    assert adapter["base_model_name_or_path"] == str(root / "input" / "data" / "model")
    assert (model / "merged" / "config.json").is_file(), "merge_adapter=true left no merged model"
    assert (model / "training_loss.png").is_file(), "LLaMA-Factory's loss curve is kept with the adapter"
    assert list((model / "merged").glob("*.safetensors")), "merged model has no weights"

    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["train_loss"])
    assert math.isfinite(metrics["eval_loss"])
    assert metrics["resumed_from"] is None

    steps = progress(out)
    assert [step for step, _ in steps] == [1, 2, 3, 4], out[-3000:]
    for _, values in steps:
        assert set(values) == {"train:loss", "train:learning_rate", "train:epoch", "train:tokens_per_second"}
    assert steps[-1][1]["train:loss"] == pytest.approx(metrics["loss"], abs=1e-4)
    assert any("validation:loss" in parse_metrics(line) for line in out.splitlines())

    assert TOKEN not in out and TOKEN not in err, "the token was printed"
    assert files_containing(tmp_path, TOKEN) == [], "the token was written to disk"
    assert not (root / "output" / "failure").exists()
    # LLaMA-Factory prints its first tokenized example decoded; the job log gets token counts only.
    for row in alpaca_rows(20)[:10]:
        assert row["instruction"] not in out + err, f"dataset text reached the log: {row['instruction']!r}"
    assert "input_ids: " in out and "text withheld" in out


def set_max_steps(root: Path, max_steps: int) -> None:
    path = root / "input" / "config" / "hyperparameters.json"
    hyperparameters = json.loads(path.read_text())
    hyperparameters["max_steps"] = str(max_steps)
    path.write_text(json.dumps(hyperparameters))


def test_restarted_job_resumes_from_the_newest_checkpoint(tmp_path, tiny_model):
    root = write_job(
        tmp_path / "opt_ml",
        {**FAST, "recipe": "lora", "max_steps": "2", "save_steps": "2"},
        alpaca_rows(20),
        tiny_model,
    )
    env = train_env(root, tmp_path)

    first = run_train_command(env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (root / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert [step for step, _ in progress(first.stdout)] == [1, 2]

    set_max_steps(root, 4)
    second = run_train_command(env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resume_from=checkpoint-2" in second.stdout
    assert [step for step, _ in progress(second.stdout)] == [3, 4], "did not continue from step 2"
    state = json.loads((root / "checkpoints" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == [1, 2, 3, 4], "the first run's history was not carried over"
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["resumed_from"] == "checkpoint-2"
    assert metrics["global_step"] == 4


def test_bad_input_fails_fast_with_one_line_in_the_failure_file(tmp_path, tiny_model):
    root = write_job(tmp_path / "opt_ml", {"recipe": "lora_turbo"}, alpaca_rows(2), tiny_model)
    result = run_train_command(train_env(root, tmp_path), timeout=60)
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert failure.count("\n") == 1
    assert failure.startswith("unknown recipe 'lora_turbo'; allowed: dpo, full_sft, lora, qlora_4bit")


@pytest.mark.parametrize(
    ("hyperparameters", "rows", "channels", "message"),
    [
        (
            {},
            [{"instruction": "q", "output": 3}],
            None,
            "train/data.jsonl line 1: field 'output' must be a string",
        ),
        ({"model_id": "org/model"}, alpaca_rows(2), None, "both a model channel and model_id='org/model'"),
        ({}, None, None, "channel 'train' is missing"),
        ({}, alpaca_rows(2), {"train": {"TrainingInputMode": "Pipe"}}, "channel train uses input mode Pipe"),
        ({}, alpaca_rows(2), {"train": {}, "extra": {}}, "unknown channels ['extra']; allowed: train"),
    ],
)
def test_bad_job_inputs_are_reported_before_training(
    tmp_path, tiny_model, monkeypatch, hyperparameters, rows, channels, message
):
    root = write_job(tmp_path / "opt_ml", {**FAST, **hyperparameters}, rows, tiny_model)
    if channels is not None:
        (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(channels))
    use_env(monkeypatch, train_env(root, tmp_path))
    assert cli.main() == 1
    assert message in (root / "output" / "failure").read_text()
    assert not (root / "model").exists(), "nothing may be written to the model folder on failure"


def test_bad_gpu_count_override_is_reported(tmp_path, tiny_model, monkeypatch):
    root = write_job(tmp_path / "opt_ml", FAST, alpaca_rows(2), tiny_model)
    use_env(monkeypatch, {**train_env(root, tmp_path), "LLMFT_GPUS_PER_NODE": "two"})
    assert cli.main() == 1
    failure = (root / "output" / "failure").read_text()
    assert failure == "LLMFT_GPUS_PER_NODE='two' must be a whole number of GPUs, 0 or more\n"


def test_missing_model_is_reported(tmp_path, monkeypatch):
    root = write_job(tmp_path / "opt_ml", {}, alpaca_rows(2))
    use_env(monkeypatch, train_env(root, tmp_path))
    assert cli.main() == 1
    failure = (root / "output" / "failure").read_text()
    assert "no base model: give a model channel or a model_id hyperparameter" in failure


def test_failure_inside_llamafactory_is_reported_by_the_worker(tmp_path, tiny_model):
    root = write_job(
        tmp_path / "opt_ml",
        {**FAST, "template": "no_such_template", "max_steps": "1"},
        alpaca_rows(4),
        tiny_model,
    )
    result = run_train_command(train_env(root, tmp_path))
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert failure == "ValueError: Template no_such_template does not exist.\n", failure


def test_sagemaker_multi_node_job_is_planned_from_its_config_files(tmp_path, tiny_model):
    root = write_job(
        tmp_path / "opt_ml",
        {"recipe": "lora"},
        alpaca_rows(4),
        tiny_model,
        resource_config={
            "current_host": "algo-2",
            "hosts": ["algo-1", "algo-2"],
            "network_interface_name": "eth0",
        },
    )
    env = {"LLMFT_OPT_ML": str(root), "LLMFT_GPUS_PER_NODE": "8"}
    job = cli.prepare_job(JobPaths.from_env(env), env)
    assert job.plan.world_size == 16 and not job.plan.is_primary
    assert "--node_rank=1" in job.plan.command and "--master_addr=algo-1" in job.plan.command
    assert job.plan.env["NCCL_SOCKET_IFNAME"] == "eth0"
    assert Path(job.config["deepspeed"]).is_file(), "the ZeRO-3 config the recipe names is not shipped"
    assert job.config["bf16"] is True, "a GPU run keeps the recipe's precision"
    written = yaml.safe_load(job.config_path.read_text())
    assert written == job.config
    assert job.plan.command[-1] == str(job.config_path)
    assert job.config_path.parent.name == "node-1", "nodes sharing a root would overwrite each other"
    assert job.config["dataset_dir"] == str(job.config_path.parent / "data")


def test_slurm_job_is_planned_from_slurm_variables(tmp_path, tiny_model):
    root = write_job(tmp_path / "opt_ml", {"recipe": "full_sft"}, alpaca_rows(4), tiny_model)
    (root / "input" / "config" / "resourceconfig.json").unlink()
    env = {
        "LLMFT_OPT_ML": str(root),
        "SLURM_JOB_NODELIST": "p5-st1-[001-004]",
        "SLURM_NNODES": "4",
        "SLURM_NODEID": "0",
        "SLURM_GPUS_ON_NODE": "8",
    }
    job = cli.prepare_job(JobPaths.from_env(env), env)
    assert job.plan.world_size == 32 and job.plan.is_primary
    assert "--master_addr=p5-st1-001" in job.plan.command
    assert "--nnodes=4" in job.plan.command
    assert job.config["finetuning_type"] == "full"


def test_full_sft_run_leaves_the_full_model(tmp_path, tiny_model):
    root = write_job(
        tmp_path / "opt_ml",
        {**FAST, "recipe": "full_sft", "max_steps": "1", "save_steps": "100"},
        alpaca_rows(20),
        tiny_model,
    )
    result = run_train_command(train_env(root, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    model = root / "model"
    assert (model / "config.json").is_file(), "full fine-tuning must leave a loadable model config"
    assert list(model.glob("model*.safetensors")), "full fine-tuning left no weights"
    assert not (model / "adapter_config.json").exists()
    assert json.loads((model / "metrics.json").read_text())["global_step"] == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_node_job_trains_through_torchrun_on_loopback(tmp_path, tiny_model):
    # Two "hosts" on this machine, each with its own /opt/ml, as two SageMaker instances have.
    hosts = ["127.0.0.1", "localhost"]
    port = str(free_port())
    processes = []
    try:
        for rank, host in enumerate(hosts):
            root = write_job(
                tmp_path / f"node{rank}",
                {**FAST, "max_steps": "2", "save_steps": "2", "distributed": "ddp"},
                alpaca_rows(20),
                tiny_model,
                resource_config={"current_host": host, "hosts": hosts, "network_interface_name": "lo"},
            )
            env = {**train_env(root, tmp_path / f"home{rank}"), "MASTER_PORT": port}
            processes.append(start_train_command(env))
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for rank, process in enumerate(processes):
        assert process.returncode == 0, f"node {rank} failed:\n{outputs[rank][1][-3000:]}"
    primary, secondary = outputs[0][0], outputs[1][0]
    assert "--nnodes=2 --node_rank=0" in primary and "--nnodes=2 --node_rank=1" in secondary
    assert f"--master_addr=127.0.0.1 --master_port={port}" in secondary
    assert [step for step, _ in progress(primary)] == [1, 2]
    assert progress(secondary) == [], "only global rank 0 prints progress"
    assert (tmp_path / "node0" / "model" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "node0" / "model" / "metrics.json").read_text())["global_step"] == 2
    assert not (tmp_path / "node1" / "model").exists(), "a non-primary node wrote model files"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import sys; sys.exit(3)", "training process exited with code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "training process was killed by SIGKILL"),
    ],
)
def test_child_process_failures_are_named(code, message):
    with pytest.raises(cli.ProcessFailed) as caught:
        cli.run_process([sys.executable, "-c", code], dict(os.environ), "training")
    assert str(caught.value) == message


def test_a_channel_with_its_own_dataset_info_and_parquet_trains(tmp_path, tiny_model):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = write_job(tmp_path / "opt_ml", {**FAST, "max_steps": "2", "save_steps": "2"}, None, tiny_model)
    train = root / "input" / "data" / "train"
    train.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(alpaca_rows(8)), train / "rows.parquet")
    qa = [{"question": row["instruction"], "answer": row["output"]} for row in alpaca_rows(8)]
    (train / "qa.json").write_text(json.dumps(qa))
    info = {
        "rows": {"file_name": "rows.parquet"},
        "qa": {"file_name": "qa.json", "columns": {"prompt": "question", "response": "answer"}},
    }
    (train / "dataset_info.json").write_text(json.dumps(info))
    result = run_train_command(train_env(root, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "llmft data train: 16 rows" in result.stdout
    resolved = yaml.safe_load((root / "model" / "llamafactory_config.yaml").read_text())
    assert resolved["dataset"] == "train_0,train_1"
    assert [step for step, _ in progress(result.stdout)] == [1, 2]


def test_dpo_run_trains_a_new_adapter_on_preference_pairs(tmp_path, tiny_model):
    root = write_job(
        tmp_path / "opt_ml",
        {**FAST, "recipe": "dpo", "max_steps": "2", "save_steps": "2", "per_device_train_batch_size": "2"},
        preference_rows(8),
        tiny_model,
    )
    result = run_train_command(train_env(root, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    model = root / "model"
    resolved = yaml.safe_load((model / "llamafactory_config.yaml").read_text())
    assert (
        resolved["stage"] == "dpo" and "adapter_name_or_path" not in resolved and "ref_model" not in resolved
    )
    assert json.loads((model / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert math.isfinite(json.loads((model / "metrics.json").read_text())["loss"])
    assert [step for step, _ in progress(result.stdout)] == [1, 2]
    assert "llmft data train: 8 rows (train/data.jsonl: alpaca)" in result.stdout


def pack_model_tar(model_dir: Path, archive: Path) -> Path:
    """The model folder as SageMaker uploads it: model.tar.gz of its contents."""
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return archive


def test_dpo_continues_an_sft_adapter_with_it_as_the_reference(tmp_path, tiny_model):
    sft = write_job(
        tmp_path / "sft",
        {
            **FAST,
            "recipe": "lora",
            "lora_rank": "4",
            "max_steps": "2",
            "save_steps": "2",
            "merge_adapter": "true",
        },
        alpaca_rows(8),
        tiny_model,
    )
    first = run_train_command(train_env(sft, tmp_path / "home-sft"))
    assert first.returncode == 0, first.stderr[-3000:]

    root = write_job(
        tmp_path / "dpo",
        {**FAST, "recipe": "dpo", "max_steps": "2", "save_steps": "2", "per_device_train_batch_size": "2"},
        preference_rows(8),
        tiny_model,
    )
    pack_model_tar(sft / "model", root / "input" / "data" / "adapter" / "model.tar.gz")
    channels = json.loads((root / "input" / "config" / "inputdataconfig.json").read_text())
    channels["adapter"] = {"TrainingInputMode": "File"}
    (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(channels))
    result = run_train_command(train_env(root, tmp_path / "home-dpo"))
    assert result.returncode == 0, result.stderr[-3000:]

    unpacked = root / "work" / "node-0" / "adapter"
    assert (unpacked / "adapter_config.json").is_file() and not (unpacked / "merged").exists()
    resolved = yaml.safe_load((root / "model" / "llamafactory_config.yaml").read_text())
    assert resolved["adapter_name_or_path"] == str(unpacked)
    assert resolved["ref_model"] == resolved["model_name_or_path"]
    assert resolved["ref_model_adapters"] == str(unpacked), (
        "DPO's reference is the SFT model, not the bare base"
    )
    continued = json.loads((root / "model" / "adapter_config.json").read_text())
    assert continued["r"] == 4, "the SFT adapter was continued (rank 4), not a new rank-16 adapter created"
    from safetensors.numpy import load_file

    before = load_file(str(sft / "model" / "adapter_model.safetensors"))
    after = load_file(str(root / "model" / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not (before[name] == after[name]).all() for name in before), "DPO left the adapter unchanged"


def test_a_lora_shape_key_with_a_continued_adapter_is_refused(tmp_path, tiny_model, monkeypatch):
    root = write_job(
        tmp_path / "opt_ml", {**FAST, "recipe": "dpo", "lora_rank": "8"}, preference_rows(2), tiny_model
    )
    (root / "input" / "data" / "adapter").mkdir()
    (root / "input" / "data" / "adapter" / "adapter_config.json").write_text("{}")
    use_env(monkeypatch, train_env(root, tmp_path))
    assert cli.main() == 1
    failure = (root / "output" / "failure").read_text()
    assert "hyperparameter 'lora_rank' comes from the adapter being continued" in failure, failure
