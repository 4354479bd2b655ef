"""Batch sizing from the GPU's memory: the tiers, override precedence, the fallback, the GPU reading."""

from __future__ import annotations

import pytest
import yaml
from jobtree import alpaca_rows, write_job
from llmft_train import cli, gpu
from llmft_train.gpu import detect_gpu_memory_gib, parse_nvidia_smi_memory
from llmft_train.hyperparams import ConfigError
from llmft_train.memory import PLANNED_KEYS, TIERS, plan_memory
from llmft_train.paths import JobPaths
from llmft_train.recipes import (
    RunInputs,
    load_recipes,
    memory_plan,
    parse_hyperparameters,
    parse_recipe,
    resolve_llamafactory_config,
)

RECIPES = load_recipes()
# What the driver reports as memory.total, in GiB: H200, H100 80GB, A100 80GB, L40S, A100 40GB, A10G, T4.
H200, H100, A100_80, L40S, A100_40, A10G, T4 = 140.4, 79.6, 80.0, 44.99, 39.4, 22.49, 14.6


def planned(config: dict) -> tuple:
    return tuple(config[key] for key in PLANNED_KEYS)


def inputs(gpu_memory_gib: float | None = H100, has_gpu: bool = True) -> RunInputs:
    return RunInputs(
        model_path="/opt/ml/input/data/model",
        dataset_dir="/opt/ml/work/data",
        has_validation=False,
        output_dir="/opt/ml/checkpoints",
        resume_from=None,
        world_size=1,
        has_gpu=has_gpu,
        gpu_memory_gib=gpu_memory_gib,
    )


def resolve(hyperparameters: dict, gpu_memory_gib: float | None = H100, has_gpu: bool = True) -> dict:
    settings = parse_hyperparameters(hyperparameters, RECIPES)
    return resolve_llamafactory_config(settings, inputs(gpu_memory_gib, has_gpu))


@pytest.mark.parametrize(
    ("gib", "expected"),
    [
        # (per_device_train_batch_size, gradient_accumulation_steps, disable_gradient_checkpointing)
        (H200, (4, 1, True)),
        (A100_80, (4, 1, True)),
        (H100, (4, 1, True)),
        (70.0, (4, 1, True)),
        (69.9, (4, 1, False)),
        (L40S, (4, 1, False)),
        (A100_40, (4, 1, False)),
        (36.0, (4, 1, False)),
        (35.9, (2, 2, False)),
        (A10G, (2, 2, False)),
        (20.0, (2, 2, False)),
        (T4, (1, 4, False)),
    ],
)
def test_lora_tiers(gib, expected):
    assert planned(plan_memory("lora", gib).keys) == expected


@pytest.mark.parametrize(
    ("gib", "expected"),
    [
        # Checkpointing off only where the measured 61.99 GiB peak fits: 80 GB and 141 GB cards.
        (H200, (4, 1, True)),
        (H100, (4, 1, True)),
        (70.0, (4, 1, True)),
        (69.9, (4, 1, False)),
        (A100_40, (4, 1, False)),
        (A10G, (4, 1, False)),
        (T4, (2, 2, False)),
    ],
)
def test_qlora_tiers_checkpoint_below_80gb(gib, expected):
    assert planned(plan_memory("qlora", gib).keys) == expected


def test_every_tier_holds_four_sequences_per_step():
    for table, tiers in TIERS.items():
        for tier in tiers:
            keys = plan_memory(table, tier.min_gib or 1.0).keys
            product = keys["per_device_train_batch_size"] * keys["gradient_accumulation_steps"]
            assert product == 4, (table, tier)


def test_lora_dropout_halves_the_batch_without_checkpointing():
    # bs 4 without checkpointing peaked 72.35 GiB with lora_dropout 0.05, 64.19 GiB without it.
    assert planned(plan_memory("lora", H100, lora_dropout=0.05).keys) == (2, 2, True)
    assert planned(plan_memory("lora", A100_40, lora_dropout=0.05).keys) == (4, 1, False)


@pytest.mark.parametrize(
    ("table", "gib", "message"),
    [
        ("lora_70b", H100, "unknown memory_tiers 'lora_70b'; allowed: lora, qlora"),
        ("lora", 0.0, "GPU memory 0.0 GiB must be greater than 0"),
        ("lora", -8.0, "GPU memory -8.0 GiB must be greater than 0"),
    ],
)
def test_plan_memory_rejects_bad_inputs(table, gib, message):
    with pytest.raises(ConfigError) as caught:
        plan_memory(table, gib)
    assert str(caught.value) == message


def test_default_recipe_is_auto_sized_and_keeps_dropout_off():
    assert RECIPES["lora"].memory_tiers == "lora"
    assert RECIPES["qlora_4bit"].memory_tiers == "qlora"
    assert RECIPES["full_sft"].memory_tiers is None
    assert RECIPES["lora"].llamafactory["lora_dropout"] == 0.0
    config = resolve({"model_id": "m"})
    assert planned(config) == (4, 1, True)
    assert config["lora_dropout"] == 0.0


def test_default_recipe_on_a_24gb_gpu_checkpoints():
    assert planned(resolve({}, A10G)) == (2, 2, False)
    assert planned(resolve({"recipe": "qlora_4bit"}, A10G)) == (4, 1, False)


def test_fallback_is_the_recipe_values_without_a_gpu_reading():
    recipe = RECIPES["lora"].llamafactory
    fallback = planned(recipe)
    assert fallback == (2, 2, False), "the fallback must be safe on a 24 GB GPU"
    assert planned(resolve({}, None, has_gpu=True)) == fallback
    assert planned(resolve({}, None, has_gpu=False)) == fallback
    assert planned(resolve({}, H100, has_gpu=False)) == fallback
    assert memory_plan(parse_hyperparameters({}, RECIPES), inputs(None)) is None


def test_batch_sizing_recipe_keeps_the_recipe_values():
    assert planned(resolve({"batch_sizing": "recipe"}, H100)) == planned(RECIPES["lora"].llamafactory)
    assert planned(resolve({"batch_sizing": '"auto"'}, H100)) == (4, 1, True)


def test_batch_sizing_rejects_other_values():
    with pytest.raises(ConfigError) as caught:
        parse_hyperparameters({"batch_sizing": "max"}, RECIPES)
    assert str(caught.value) == "batch_sizing='max' is not allowed; allowed: auto, recipe"


def test_full_sft_has_no_tiers():
    config = resolve({"recipe": "full_sft"}, H100)
    assert (
        config["per_device_train_batch_size"]
        == RECIPES["full_sft"].llamafactory["per_device_train_batch_size"]
    )


def test_an_explicit_hyperparameter_wins_key_by_key():
    config = resolve({"disable_gradient_checkpointing": "false"}, H100)
    assert planned(config) == (4, 1, False)
    config = resolve({"per_device_train_batch_size": "1"}, H100)
    # Accumulation follows the batch size in use, unless it is set too.
    assert planned(config) == (1, 4, True)
    config = resolve({"per_device_train_batch_size": "8"}, A10G)
    assert planned(config) == (8, 1, False)
    config = resolve({"per_device_train_batch_size": "1", "gradient_accumulation_steps": "16"}, H100)
    assert planned(config) == (1, 16, True)
    config = resolve({"gradient_accumulation_steps": "3"}, H100)
    assert planned(config) == (4, 3, True)


def test_dropout_hyperparameter_reaches_the_plan():
    assert planned(resolve({"lora_dropout": "0.05"}, H100)) == (2, 2, True)
    assert planned(resolve({"lora_dropout": "0.05", "per_device_train_batch_size": "4"}, H100)) == (
        4,
        1,
        True,
    )


def test_recipe_with_unknown_memory_tiers_is_rejected():
    data = {"memory_tiers": "huge", "llamafactory": {"stage": "sft", "finetuning_type": "lora"}}
    with pytest.raises(ConfigError) as caught:
        parse_recipe("custom", data)
    assert str(caught.value) == "recipe custom: memory_tiers 'huge'; allowed: lora, qlora"


def test_parse_nvidia_smi_memory_takes_the_smallest_gpu():
    assert parse_nvidia_smi_memory("81559\n81559\n") == pytest.approx(79.647, abs=1e-3)
    assert parse_nvidia_smi_memory("23028\n46068\n") == pytest.approx(22.488, abs=1e-3)
    assert parse_nvidia_smi_memory("") is None
    assert parse_nvidia_smi_memory("[N/A]\n") is None


def test_detect_gpu_memory_env_wins_and_no_gpu_reads_nothing(monkeypatch):
    def fail():
        raise AssertionError("must not read the GPU")

    monkeypatch.setattr(gpu, "_nvidia_smi_gib", fail)
    monkeypatch.setattr(gpu, "_torch_gib", fail)
    assert detect_gpu_memory_gib({"LLMFT_GPU_MEMORY_GIB": "40"}, 8) == 40.0
    assert detect_gpu_memory_gib({}, 0) is None


def test_detect_gpu_memory_prefers_nvidia_smi_then_torch(monkeypatch):
    monkeypatch.setattr(gpu, "_nvidia_smi_gib", lambda: 79.6)
    monkeypatch.setattr(gpu, "_torch_gib", lambda: 1.0)
    assert detect_gpu_memory_gib({}, 1) == 79.6
    monkeypatch.setattr(gpu, "_nvidia_smi_gib", lambda: None)
    assert detect_gpu_memory_gib({}, 1) == 1.0


@pytest.mark.parametrize("value", ["lots", "0", "-1", "nan", "inf"])
def test_detect_gpu_memory_rejects_a_bad_env_value(value):
    with pytest.raises(ConfigError) as caught:
        detect_gpu_memory_gib({"LLMFT_GPU_MEMORY_GIB": value}, 1)
    assert str(caught.value) == f"LLMFT_GPU_MEMORY_GIB={value!r} must be a number of GiB greater than 0"


def test_prepare_job_sizes_the_batch_from_the_gpu(tmp_path, tiny_model, capsys):
    root = write_job(tmp_path / "opt_ml", {"recipe": "lora"}, alpaca_rows(4), tiny_model)
    env = {"LLMFT_OPT_ML": str(root), "LLMFT_GPUS_PER_NODE": "1", "LLMFT_GPU_MEMORY_GIB": str(A100_40)}
    job = cli.prepare_job(JobPaths.from_env(env), env)
    assert planned(job.config) == (4, 1, False)
    assert planned(yaml.safe_load(job.config_path.read_text())) == (4, 1, False)
    out = capsys.readouterr().out
    assert "llmft memory plan table=lora gpu_memory_gib=39.4 tier>=36 per_device_train_batch_size=4" in out


def test_prepare_job_names_the_hyperparameters_that_win(tmp_path, tiny_model, capsys):
    hyperparameters = {"recipe": "lora", "per_device_train_batch_size": "1"}
    root = write_job(tmp_path / "opt_ml", hyperparameters, alpaca_rows(4), tiny_model)
    env = {"LLMFT_OPT_ML": str(root), "LLMFT_GPUS_PER_NODE": "1", "LLMFT_GPU_MEMORY_GIB": "80"}
    job = cli.prepare_job(JobPaths.from_env(env), env)
    assert planned(job.config) == (1, 4, True)
    assert "hyperparameters kept: per_device_train_batch_size" in capsys.readouterr().out
