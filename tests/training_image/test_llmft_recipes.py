"""Hyperparameter parsing and recipe merging: pure functions, no GPU, no LLaMA-Factory run."""

from __future__ import annotations

import re

import pytest
from llmft_train.hyperparams import ConfigError, as_text, parse_value
from llmft_train.recipes import (
    COMMON_KEYS,
    DEFAULT_RECIPE,
    RECIPES_DIR,
    RunInputs,
    export_config,
    load_recipes,
    parse_hyperparameters,
    parse_recipe,
    resolve_llamafactory_config,
)

RECIPES = load_recipes()


def inputs(**changes) -> RunInputs:
    values = dict(
        model_path="/opt/ml/input/data/model",
        dataset_dir="/opt/ml/work/data",
        has_validation=False,
        output_dir="/opt/ml/checkpoints",
        resume_from=None,
        world_size=1,
        has_gpu=True,
    )
    values.update(changes)
    return RunInputs(**values)


def test_shipped_recipes_include_the_required_ones_with_lora_default():
    assert {"lora", "qlora_4bit", "full_sft"} <= set(RECIPES), sorted(RECIPES)
    assert DEFAULT_RECIPE == "lora"
    assert parse_hyperparameters({"model_id": "m"}, RECIPES).recipe.name == "lora"


def test_recipe_methods_match_their_names():
    assert RECIPES["lora"].finetuning_type == "lora"
    assert RECIPES["qlora_4bit"].finetuning_type == "lora"
    assert RECIPES["qlora_4bit"].llamafactory["quantization_bit"] == 4
    assert RECIPES["full_sft"].finetuning_type == "full"


def test_every_recipe_key_is_a_llamafactory_argument():
    # A misspelt key in a recipe would only fail at job start, after the instance is paid for.
    import dataclasses

    from llamafactory.hparams import (
        DataArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )

    known = {
        f.name
        for cls in (
            ModelArguments,
            DataArguments,
            TrainingArguments,
            FinetuningArguments,
            GeneratingArguments,
        )
        for f in dataclasses.fields(cls)
    }
    for name, recipe in RECIPES.items():
        unknown = sorted(set(recipe.llamafactory) - known)
        assert not unknown, f"recipe {name} has keys LLaMA-Factory does not know: {unknown}"
    overridable = sorted(set(COMMON_KEYS) - known)
    assert not overridable, f"COMMON_KEYS not known to LLaMA-Factory: {overridable}"


def test_distributed_config_files_ship_with_the_recipes():
    assert (RECIPES_DIR / "deepspeed" / "ds_z3.json").is_file()
    assert (RECIPES_DIR / "deepspeed" / "ds_z2.json").is_file()
    assert (RECIPES_DIR / "fsdp" / "fsdp.json").is_file()


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("true", bool, True),
        ("False", bool, False),
        ("1", bool, True),
        ("no", bool, False),
        ("42", int, 42),
        ("2e-4", float, 2e-4),
        ("0.5", float, 0.5),
        ('"qwen3"', str, "qwen3"),
        (" lora ", str, "lora"),
        (7, int, 7),
        (True, bool, True),
    ],
)
def test_hyperparameter_strings_become_typed_values(raw, kind, expected):
    value = parse_value("key", raw, kind)
    assert value == expected and type(value) is kind


def test_sdk_json_quoted_strings_are_unwrapped():
    assert as_text('"meta-llama/Llama-3.1-8B"') == "meta-llama/Llama-3.1-8B"
    assert as_text('"not json') == '"not json'


def test_overrides_win_over_recipe_and_are_typed():
    settings = parse_hyperparameters(
        {
            "recipe": "lora",
            "model_id": "m",
            "learning_rate": "3e-5",
            "lora_rank": "8",
            "bf16": "false",
            "merge_adapter": "true",
            "template": "llama3",
        },
        RECIPES,
    )
    config = resolve_llamafactory_config(settings, inputs())
    assert config["learning_rate"] == 3e-5
    assert config["lora_rank"] == 8
    assert config["bf16"] is False
    assert config["template"] == "llama3"
    assert settings.merge_adapter is True
    assert "merge_adapter" not in config, "entrypoint keys must not reach LLaMA-Factory"


def test_recipe_values_are_kept_when_not_overridden():
    settings = parse_hyperparameters({"model_id": "m"}, RECIPES)
    config = resolve_llamafactory_config(settings, inputs())
    for key, value in RECIPES["lora"].llamafactory.items():
        assert config[key] == value, f"recipe value of {key} was changed without an override"


def test_managed_keys_come_from_the_contract():
    settings = parse_hyperparameters({"model_id": "m"}, RECIPES)
    config = resolve_llamafactory_config(
        settings, inputs(has_validation=True, resume_from="/opt/ml/checkpoints/checkpoint-40")
    )
    assert config["model_name_or_path"] == "/opt/ml/input/data/model"
    assert config["dataset"] == "train"
    assert config["eval_dataset"] == "validation"
    assert config["eval_strategy"] == "steps"
    assert config["dataset_dir"] == "/opt/ml/work/data"
    assert config["output_dir"] == "/opt/ml/checkpoints"
    assert config["resume_from_checkpoint"] == "/opt/ml/checkpoints/checkpoint-40"
    assert config["overwrite_output_dir"] is True
    assert config["report_to"] == "none"


# Keys users bring from LLaMA-Factory's examples (examples/train_lora/qwen3_lora_sft.yaml and its eval block).
EXAMPLE_KEYS = {
    "plot_loss": "true",
    "overwrite_cache": "true",
    "ddp_timeout": "180000000",
    "save_only_model": "false",
    "max_samples": "1000",
    "report_to": "none",
    "overwrite_output_dir": "true",
    "do_train": "true",
    "dataloader_num_workers": "4",
    "preprocessing_num_workers": "16",
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_harmless_keys_from_llamafactorys_examples_are_accepted_by_every_recipe(recipe):
    settings = parse_hyperparameters({"model_id": "m", "recipe": recipe, **EXAMPLE_KEYS}, RECIPES)
    config = resolve_llamafactory_config(settings, inputs())
    assert config["ddp_timeout"] == 180000000 and config["max_samples"] == 1000
    assert config["report_to"] == "none" and config["overwrite_output_dir"] is True
    assert "do_train" not in settings.overrides, "a managed key given its own value changes nothing"


def test_val_size_evaluates_on_a_split_of_the_training_set():
    settings = parse_hyperparameters({"model_id": "m", "val_size": "0.1"}, RECIPES)
    config = resolve_llamafactory_config(settings, inputs())
    assert config["val_size"] == 0.1 and config["eval_strategy"] == "steps"
    assert "eval_dataset" not in config
    with pytest.raises(ConfigError, match="val_size splits the training set .* a validation set is given"):
        parse_hyperparameters({"model_id": "m", "val_size": "0.1"}, RECIPES, has_validation=True)


def test_eval_strategy_may_be_chosen_when_there_is_something_to_evaluate():
    settings = parse_hyperparameters(
        {"model_id": "m", "eval_strategy": "epoch"}, RECIPES, has_validation=True
    )
    config = resolve_llamafactory_config(settings, inputs(has_validation=True))
    assert config["eval_strategy"] == "epoch"


def test_loss_curve_is_drawn_unless_switched_off():
    default = resolve_llamafactory_config(parse_hyperparameters({"model_id": "m"}, RECIPES), inputs())
    assert default["plot_loss"] is True
    off = parse_hyperparameters({"model_id": "m", "plot_loss": "false"}, RECIPES)
    assert resolve_llamafactory_config(off, inputs())["plot_loss"] is False


def test_progress_bars_are_off_unless_asked_for():
    default = resolve_llamafactory_config(parse_hyperparameters({"model_id": "m"}, RECIPES), inputs())
    assert default["disable_tqdm"] is True
    asked = parse_hyperparameters({"model_id": "m", "disable_tqdm": "false"}, RECIPES)
    assert resolve_llamafactory_config(asked, inputs())["disable_tqdm"] is False


def test_no_resume_key_without_a_checkpoint_and_no_eval_without_validation():
    config = resolve_llamafactory_config(parse_hyperparameters({"model_id": "m"}, RECIPES), inputs())
    assert "resume_from_checkpoint" not in config
    assert "eval_dataset" not in config


def test_deepspeed_config_only_when_several_processes():
    settings = parse_hyperparameters({"model_id": "m"}, RECIPES)
    single = resolve_llamafactory_config(settings, inputs(world_size=1))
    many = resolve_llamafactory_config(settings, inputs(world_size=16, recipes_dir="/r"))
    assert "deepspeed" not in single
    assert many["deepspeed"] == "/r/deepspeed/ds_z3.json"


def test_distributed_hyperparameter_picks_the_strategy():
    fsdp = parse_hyperparameters({"model_id": "m", "distributed": "fsdp"}, RECIPES)
    config = resolve_llamafactory_config(fsdp, inputs(world_size=8, recipes_dir="/r"))
    assert config["fsdp"] == "full_shard auto_wrap"
    assert config["fsdp_config"] == "/r/fsdp/fsdp.json"
    assert "deepspeed" not in config
    zero2 = parse_hyperparameters({"model_id": "m", "distributed": "deepspeed_zero2"}, RECIPES)
    config = resolve_llamafactory_config(zero2, inputs(world_size=8, recipes_dir="/r"))
    assert config["deepspeed"] == "/r/deepspeed/ds_z2.json"


def test_cpu_run_turns_gpu_only_features_off():
    settings = parse_hyperparameters(
        {"model_id": "m", "bf16": "true", "enable_liger_kernel": "true", "flash_attn": "fa2"},
        RECIPES,
    )
    config = resolve_llamafactory_config(settings, inputs(has_gpu=False))
    assert config["bf16"] is False and config["fp16"] is False
    assert config["enable_liger_kernel"] is False
    assert config["flash_attn"] == "auto"


def test_sagemaker_sdk_keys_are_ignored():
    settings = parse_hyperparameters(
        {"model_id": "m", "sagemaker_container_log_level": "20", "sagemaker_job_name": "j"},
        RECIPES,
    )
    assert settings.overrides == {}


def test_export_config_merges_the_adapter_into_the_base():
    train = {"model_name_or_path": "/base", "template": "llama3", "trust_remote_code": False}
    config = export_config(train, "/opt/ml/model", "/opt/ml/model/merged")
    assert config == {
        "model_name_or_path": "/base",
        "adapter_name_or_path": "/opt/ml/model",
        "finetuning_type": "lora",
        "export_dir": "/opt/ml/model/merged",
        "trust_remote_code": False,
        "template": "llama3",
    }


# Bad inputs: each is rejected before any GPU work, with a message naming value and choices.
@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"recipe": "lora_turbo"}, "unknown recipe 'lora_turbo'; allowed: dpo, full_sft, lora, qlora_4bit"),
        (
            {"lora_rnk": "8"},
            "unknown hyperparameter 'lora_rnk' for recipe 'lora' (did you mean lora_rank?); allowed: ",
        ),
        (
            {"recipe": "full_sft", "lora_rank": "8"},
            "unknown hyperparameter 'lora_rank' for recipe 'full_sft'",
        ),
        ({"output_dir": "/tmp/x"}, "hyperparameter 'output_dir' is set by the entrypoint"),
        ({"hf_token": "hf_abc"}, "looks like a token: never pass secrets as hyperparameters"),
        ({"HF_TOKEN": "hf_abc"}, "looks like a token"),
        ({"merge_adapter": "maybe"}, "merge_adapter='maybe' is not a boolean; allowed: true, false"),
        ({"max_steps": "ten"}, "max_steps='ten' is not an integer"),
        ({"max_steps": "2.5"}, "max_steps='2.5' is not an integer"),
        ({"learning_rate": "fast"}, "learning_rate='fast' is not a number"),
        ({"learning_rate": "nan"}, "learning_rate='nan' must be a finite number"),
        ({"learning_rate": "0"}, "learning_rate=0.0 must be greater than 0"),
        ({"per_device_train_batch_size": "0"}, "per_device_train_batch_size=0 must be at least 1"),
        ({"template": ""}, "hyperparameter template is empty"),
        # Measured: LLaMA-Factory failed on the empty dataset after the job had started.
        ({"max_samples": "0"}, "max_samples=0 must be at least 1"),
        ({"val_size": "-0.1"}, "val_size=-0.1 must be at least 0"),
        ({"val_size": "1.5"}, "val_size=1.5 must be a fraction below 1 or a whole number of rows"),
        ({"eval_strategy": "always"}, "eval_strategy='always' is not allowed; allowed: no, steps, epoch"),
        ({"eval_strategy": "steps"}, "eval_strategy='steps' needs something to evaluate"),
        ({"report_to": "wandb"}, "hyperparameter 'report_to' is always 'none' with recipe 'lora'"),
        ({"stage": "dpo"}, "hyperparameter 'stage' is always 'sft' with recipe 'lora'"),
        ({"do_train": "false"}, "hyperparameter 'do_train' is always True"),
        ({"ref_model": "/x"}, "hyperparameter 'ref_model' is set by the entrypoint"),
        ({"dataset_format": "csv"}, "dataset_format='csv' is not allowed; allowed: auto, alpaca, sharegpt"),
        ({"distributed": "horovod"}, "distributed='horovod' is not allowed; allowed: ddp, deepspeed_zero2"),
        ({"flash_attn": "fa4"}, "flash_attn='fa4' is not allowed; allowed: auto, disabled, sdpa, fa2, fa3"),
        (
            {"recipe": "qlora_4bit", "quantization_bit": "3"},
            "quantization_bit=3 is not allowed; allowed: 4, 8",
        ),
        (
            {"recipe": "full_sft", "merge_adapter": "true"},
            "merge_adapter=true needs a LoRA recipe; recipe 'full_sft'",
        ),
    ],
)
def test_bad_hyperparameters_are_rejected_with_a_clear_message(hyperparameters, message):
    with pytest.raises(ConfigError) as caught:
        parse_hyperparameters({"model_id": "m", **hyperparameters}, RECIPES)
    assert message in str(caught.value)


def test_unknown_key_message_lists_every_allowed_key():
    with pytest.raises(ConfigError) as caught:
        parse_hyperparameters({"nonsense": "1"}, RECIPES)
    for key in ("recipe", "model_id", "merge_adapter", "learning_rate", "lora_rank", "max_steps"):
        assert key in str(caught.value), f"{key} missing from the allowed list"


def test_qlora_without_gpu_is_refused():
    settings = parse_hyperparameters({"model_id": "m", "recipe": "qlora_4bit"}, RECIPES)
    with pytest.raises(ConfigError, match="quantizes the model with bitsandbytes, which needs a GPU"):
        resolve_llamafactory_config(settings, inputs(has_gpu=False))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], "recipe bad: expected a mapping, got list"),
        (
            {"llamafactory": {"stage": "sft", "finetuning_type": "lora"}, "extra": 1},
            "recipe bad: unknown fields ['extra']",
        ),
        ({"llamafactory": {"stage": "sft"}}, "must be a mapping with stage and finetuning_type"),
        (
            {"llamafactory": {"stage": "sft", "finetuning_type": "lora", "output_dir": "x"}},
            "keys ['output_dir'] are set by the entrypoint",
        ),
        (
            {"llamafactory": {"stage": "sft", "finetuning_type": "lora", "max_samples": None}},
            "keys ['max_samples'] must be a boolean, number or string",
        ),
        (
            {"distributed": "mpi", "llamafactory": {"stage": "sft", "finetuning_type": "lora"}},
            "distributed='mpi' is not allowed",
        ),
        ({"llamafactory": {"stage": "ppo", "finetuning_type": "lora"}}, "stage 'ppo'; allowed: sft, dpo"),
    ],
)
def test_bad_recipe_files_are_rejected(content, message):
    with pytest.raises(ConfigError) as caught:
        parse_recipe("bad", content)
    assert message in str(caught.value)


def test_recipe_values_are_coerced_to_their_key_types():
    recipe = parse_recipe(
        "r",
        {
            "llamafactory": {
                "stage": "sft",
                "finetuning_type": "lora",
                "learning_rate": "1e-4",
                "resize_vocab": True,
            }
        },
    )
    assert recipe.llamafactory["learning_rate"] == 1e-4
    # A key only the recipe knows is overridable with the type of its default.
    assert recipe.override_types()["resize_vocab"] is bool


def test_a_continued_adapter_is_trained_further_and_is_dpos_reference():
    sft = parse_hyperparameters({"model_id": "m"}, RECIPES, continues_adapter=True)
    config = resolve_llamafactory_config(sft, inputs(adapter_path="/w/adapter"))
    assert config["adapter_name_or_path"] == "/w/adapter" and "ref_model" not in config
    dpo = parse_hyperparameters({"model_id": "m", "recipe": "dpo"}, RECIPES, continues_adapter=True)
    config = resolve_llamafactory_config(dpo, inputs(adapter_path="/w/adapter"))
    assert config["ref_model"] == "/opt/ml/input/data/model" and config["ref_model_adapters"] == "/w/adapter"
    orpo = parse_hyperparameters(
        {"model_id": "m", "recipe": "dpo", "pref_loss": "orpo"}, RECIPES, continues_adapter=True
    )
    assert "ref_model" not in resolve_llamafactory_config(orpo, inputs(adapter_path="/w/adapter"))


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        (
            {"recipe": "full_sft"},
            "recipe 'full_sft' trains 'full' weights; only a LoRA recipe continues an adapter",
        ),
        ({"lora_target": "q_proj"}, "hyperparameter 'lora_target' comes from the adapter being continued"),
    ],
)
def test_what_a_continued_adapter_cannot_take_is_refused(hyperparameters, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_hyperparameters({"model_id": "m", **hyperparameters}, RECIPES, continues_adapter=True)


def test_dpo_recipe_takes_the_preference_keys_and_sft_recipes_do_not():
    settings = parse_hyperparameters({"model_id": "m", "recipe": "dpo", "pref_beta": "0.2"}, RECIPES)
    assert resolve_llamafactory_config(settings, inputs())["pref_beta"] == 0.2
    with pytest.raises(ConfigError, match="unknown hyperparameter 'pref_beta' for recipe 'lora'"):
        parse_hyperparameters({"model_id": "m", "pref_beta": "0.2"}, RECIPES)
    with pytest.raises(ConfigError, match="dpo_label_smoothing needs pref_loss='sigmoid'"):
        parse_hyperparameters(
            {"model_id": "m", "recipe": "dpo", "pref_loss": "ipo", "dpo_label_smoothing": "0.1"}, RECIPES
        )
