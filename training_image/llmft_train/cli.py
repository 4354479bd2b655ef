"""`train`: the container's entrypoint, for SageMaker training jobs and Slurm on HyperPod.

Planning is in pure functions (recipes, data, launch, outputs); this module reads the job's
files, runs the plan and writes the results.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmft_train.data import STAGE_DATA, Hints, prepare_channel
from llmft_train.failure import failure_line, write_failure
from llmft_train.gpu import detect_gpu_memory_gib
from llmft_train.hf_token import SECRET_ARN_ENV, fetch_hf_token
from llmft_train.hyperparams import ConfigError
from llmft_train.launch import (
    Cluster,
    LaunchPlan,
    cluster_from_sagemaker,
    cluster_from_slurm,
    plan_launch,
)
from llmft_train.models import model_problem
from llmft_train.outputs import (
    adapter_member_names,
    find_resume_checkpoint,
    model_file_names,
    summarize_metrics,
)
from llmft_train.paths import JobPaths
from llmft_train.recipes import (
    JobSettings,
    RunInputs,
    export_config,
    load_recipes,
    memory_plan,
    parse_hyperparameters,
    recipes_by_data,
    resolve_llamafactory_config,
)

CHANNELS = ("train", "validation", "model", "adapter")
INPUT_MODES = ("File", "FastFile")
GPUS_ENV = "LLMFT_GPUS_PER_NODE"
# Defaults for the training processes; the job's own environment wins.
RUN_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "WANDB_DISABLED": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class Job:
    settings: JobSettings
    config: dict[str, Any]
    config_path: Path
    plan: LaunchPlan
    resumed_from: str | None


def check_input_data_config(config: Mapping[str, Any]) -> None:
    """Only our channels, in a mode that gives files (Pipe mode streams, which we cannot read)."""
    unknown = sorted(set(config) - set(CHANNELS))
    if unknown:
        raise ConfigError(f"unknown channels {unknown}; allowed: {', '.join(CHANNELS)}")
    for name, channel in config.items():
        mode = channel.get("TrainingInputMode", "File")
        if mode not in INPUT_MODES:
            raise ConfigError(f"channel {name} uses input mode {mode}; allowed: {', '.join(INPUT_MODES)}")


def choose_model_path(model_id: str | None, model_channel: Path | None) -> str:
    """The base model: the model channel's files, or a Hugging Face Hub id."""
    if model_channel is not None and model_id:
        raise ConfigError(f"both a model channel and model_id={model_id!r} were given; give only one")
    if model_channel is not None:
        if not (model_channel / "config.json").is_file():
            found = sorted(p.name for p in model_channel.iterdir())[:10]
            raise ConfigError(f"model channel {model_channel} has no config.json at its top; found {found}")
        return str(model_channel)
    if not model_id:
        raise ConfigError("no base model: give a model channel or a model_id hyperparameter")
    return model_id


def unpack_adapter(channel: Path, target: Path) -> Path:
    """The LoRA adapter a job continues: the channel's own files, or the top of its model.tar.gz (an
    earlier job's output, as the pipeline passes it)."""
    if (channel / "adapter_config.json").is_file():
        return channel
    archives = sorted(channel.rglob("*.tar.gz"))
    if len(archives) != 1:
        found = sorted(p.name for p in channel.rglob("*") if p.is_file())[:10]
        raise ConfigError(
            f"adapter channel {channel}: expected adapter_config.json or one model.tar.gz; found {found}"
        )
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[0]) as archive:
        wanted = set(adapter_member_names(m.name for m in archive.getmembers() if m.isfile()))
        archive.extractall(
            target, members=[m for m in archive.getmembers() if m.name in wanted], filter="data"
        )
    if not (target / "adapter_config.json").is_file():
        raise ConfigError(
            f"adapter channel {channel}: {archives[0].name} holds no adapter_config.json, so it is not a "
            "LoRA adapter (a full model cannot be continued as an adapter)"
        )
    return target


def read_model_config(model_path: str, token: str | None) -> Any:
    """The base model's config.json: the model channel's, or the Hub model's (one small file); None when
    the Hub cannot be reached, which LLaMA-Factory then reports itself."""
    local = Path(model_path) / "config.json"
    if local.is_file():
        return _read_json(local, None)
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model_path, "config.json", token=token)).read_text())
    except Exception as error:  # noqa: BLE001 - any failure here is LLaMA-Factory's to report
        print(f"llmft model config.json of {model_path} not read ahead ({type(error).__name__})", flush=True)
        return None


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path.name} is not valid JSON: {err.msg} at line {err.lineno}") from None


def detect_gpus(env: Mapping[str, str]) -> int:
    if env.get(GPUS_ENV):
        value = env[GPUS_ENV]
        if not value.isdigit():
            raise ConfigError(f"{GPUS_ENV}={value!r} must be a whole number of GPUs, 0 or more")
        return int(value)
    import torch

    return torch.cuda.device_count()


def count_efa_devices(sys_dir: Path = Path("/sys/class/infiniband")) -> int:
    return len(list(sys_dir.iterdir())) if sys_dir.is_dir() else 0


def discover_cluster(paths: JobPaths, env: Mapping[str, str], gpus: int) -> Cluster:
    """SageMaker's resourceconfig.json if present, else Slurm's variables, else this machine."""
    resource_config = _read_json(paths.resource_config, None)
    if resource_config is not None:
        return cluster_from_sagemaker(resource_config, gpus)
    if env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"):
        return cluster_from_slurm(env, gpus)
    return Cluster(hosts=("localhost",), node_rank=0, gpus_per_node=gpus)


def prepare_job(paths: JobPaths, env: Mapping[str, str], token: str | None = None) -> Job:
    """Read and check every input, write the data and config for LLaMA-Factory, plan the launch."""
    check_input_data_config(_read_json(paths.input_data_config, {}))
    has_validation = paths.channel("validation").exists()
    continues_adapter = paths.channel("adapter").exists()
    recipes = load_recipes()
    settings = parse_hyperparameters(
        _read_json(paths.hyperparameters, {}),
        recipes,
        has_validation=has_validation,
        continues_adapter=continues_adapter,
    )
    if not paths.channel("train").exists():
        raise ConfigError(
            f"channel 'train' is missing (looked in {paths.channel('train')}); "
            f"channels: train (required), validation, model"
        )
    model_channel = paths.channel("model") if paths.channel("model").is_dir() else None
    model_path = choose_model_path(settings.model_id, model_channel)

    gpus = detect_gpus(env)
    cluster = discover_cluster(paths, env, gpus)
    model_config = read_model_config(model_path, token)
    if model_config is not None:
        sharded = cluster.world_size > 1 and settings.distributed in ("deepspeed_zero3", "fsdp")
        problem = model_problem(
            model_config, finetuning_type=settings.recipe.finetuning_type, sharded=sharded
        )
        if problem:
            raise ConfigError(problem)

    # One folder per node: under Slurm the root may be a file system every node shares.
    work_dir = paths.work_dir / f"node-{cluster.node_rank}"
    data_dir = work_dir / "data"
    channels = ["train", "validation"] if has_validation else ["train"]
    hints = Hints(recipes_by_data(recipes, STAGE_DATA))
    prepared = {
        name: prepare_channel(
            paths.channel(name),
            data_dir,
            name=name,
            stage=settings.recipe.stage,
            dataset_format=settings.dataset_format,
            hints=hints,
        )
        for name in channels
    }
    info = {name: entry for channel in prepared.values() for name, entry in channel.datasets.items()}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2))
    for name, channel in prepared.items():
        print(f"llmft data {channel.describe(name)}", flush=True)

    adapter = unpack_adapter(paths.channel("adapter"), work_dir / "adapter") if continues_adapter else None
    resume = find_resume_checkpoint(paths.checkpoints)
    inputs = RunInputs(
        model_path=model_path,
        dataset_dir=str(data_dir),
        has_validation=has_validation,
        output_dir=str(paths.checkpoints),
        resume_from=str(resume) if resume else None,
        world_size=cluster.world_size,
        has_gpu=gpus > 0,
        gpu_memory_gib=detect_gpu_memory_gib(env, gpus),
        adapter_path=str(adapter) if adapter else None,
        train_datasets=tuple(prepared["train"].datasets),
        validation_datasets=tuple(prepared["validation"].datasets) if has_validation else (),
    )
    plan = memory_plan(settings, inputs)
    if plan is not None:
        kept = sorted(set(plan.keys) & set(settings.overrides))
        note = f"; hyperparameters kept: {', '.join(kept)}" if kept else ""
        print(f"llmft memory plan {plan.describe()} ({plan.tier.why}{note})", flush=True)
    config = resolve_llamafactory_config(settings, inputs)
    config_path = work_dir / "llamafactory_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=True))
    plan = plan_launch(cluster, env, ["train", str(config_path)], sys.executable, count_efa_devices())
    return Job(settings, config, config_path, plan, resume.name if resume else None)


class ProcessFailed(RuntimeError):
    """A training or merge process exited non-zero."""


def run_process(command: list[str], env: Mapping[str, str], what: str) -> None:
    print(f"llmft {what}: {' '.join(command)}", flush=True)
    code = subprocess.run(command, env=dict(env), check=False).returncode
    if code < 0:
        # SIGKILL with no error line of its own is most often the kernel's out-of-memory killer.
        raise ProcessFailed(f"{what} process was killed by {signal.Signals(-code).name}")
    if code != 0:
        raise ProcessFailed(f"{what} process exited with code {code}")


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link saves a second copy of the weights when both folders share a disk.
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_model(paths: JobPaths, job: Job, run_env: Mapping[str, str]) -> None:
    """Adapter or weights, tokenizer, resolved config and metrics into the model folder."""
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in paths.checkpoints.iterdir() if p.is_file()]
    for name in model_file_names(names):
        _link_or_copy(paths.checkpoints / name, paths.model_dir / name)
    shutil.copy2(job.config_path, paths.model_dir / "llamafactory_config.yaml")
    state = _read_json(paths.checkpoints / "trainer_state.json", {})
    metrics = summarize_metrics(state, job.resumed_from)
    (paths.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if job.settings.merge_adapter:
        merge = export_config(job.config, str(paths.model_dir), str(paths.model_dir / "merged"))
        merge_path = job.config_path.with_name("llamafactory_export.yaml")
        merge_path.write_text(yaml.safe_dump(merge, sort_keys=True))
        command = [sys.executable, "-m", "llmft_train.worker", "export", str(merge_path)]
        run_process(command, run_env, "merge")


def run(paths: JobPaths, env: Mapping[str, str], token: str | None) -> None:
    job = prepare_job(paths, env, token)
    print(
        f"llmft recipe={job.settings.recipe.name} world_size={job.plan.world_size} "
        f"resume_from={job.resumed_from}",
        flush=True,
    )
    run_env = {**RUN_ENV, **env, **job.plan.env}
    if token:
        run_env["HF_TOKEN"] = token
    run_process(job.plan.command, run_env, "training")
    if job.plan.is_primary:
        write_model(paths, job, run_env)


def main() -> int:
    env = dict(os.environ)
    paths = JobPaths.from_env(env)
    paths.failure_file.unlink(missing_ok=True)
    token = None
    try:
        arn = env.get(SECRET_ARN_ENV)
        token = fetch_hf_token(arn) if arn else None
        run(paths, env, token)
    except Exception as error:
        line = failure_line(error, [token])
        # A failed child process already wrote its cause; keep that line.
        write_failure(paths.failure_file, line, keep_existing=isinstance(error, ProcessFailed))
        print(f"llmft failed: {line}", file=sys.stderr, flush=True)
        return 1
    return 0
