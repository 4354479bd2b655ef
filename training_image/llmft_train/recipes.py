"""Recipes (LLaMA-Factory YAML presets) and their merge with the job's hyperparameters.

Everything here is pure except `load_recipes`, which reads the YAML files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmft_train.hyperparams import ConfigError, as_text, parse_value
from llmft_train.memory import BATCH_SIZING_CHOICES, TIERS, MemoryPlan, plan_memory, planned_keys

RECIPES_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = "lora"

DATASET_FORMATS = ("auto", "alpaca", "sharegpt")
DISTRIBUTED_STRATEGIES = ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
# LLaMA-Factory stages a recipe may run: supervised fine-tuning, and direct preference optimisation.
STAGES = ("sft", "dpo")

# Hyperparameters the entrypoint itself reads; they never reach LLaMA-Factory as they are.
ENTRYPOINT_KEYS: dict[str, type] = {
    "recipe": str,
    "model_id": str,
    "merge_adapter": bool,
    "dataset_format": str,
    "distributed": str,
    "batch_sizing": str,
}

# LLaMA-Factory keys every recipe accepts, with their types.
COMMON_KEYS: dict[str, type] = {
    "learning_rate": float,
    "num_train_epochs": float,
    "max_steps": int,
    "per_device_train_batch_size": int,
    "per_device_eval_batch_size": int,
    "gradient_accumulation_steps": int,
    "cutoff_len": int,
    "logging_steps": int,
    "save_steps": int,
    "save_total_limit": int,
    "eval_steps": int,
    "warmup_ratio": float,
    "warmup_steps": int,
    "lr_scheduler_type": str,
    "weight_decay": float,
    "max_grad_norm": float,
    "optim": str,
    "seed": int,
    "template": str,
    "default_system": str,
    "train_on_prompt": bool,
    "bf16": bool,
    "fp16": bool,
    "packing": bool,
    "neat_packing": bool,
    "enable_liger_kernel": bool,
    "flash_attn": str,
    "disable_gradient_checkpointing": bool,
    "max_samples": int,
    "preprocessing_num_workers": int,
    "dataloader_num_workers": int,
    "trust_remote_code": bool,
    "disable_tqdm": bool,
    # Harmless keys users bring from LLaMA-Factory's examples.
    "plot_loss": bool,
    "overwrite_cache": bool,
    "ddp_timeout": int,
    "val_size": float,
    "eval_strategy": str,
    "save_strategy": str,
    "save_only_model": bool,
    "mask_history": bool,
    "enable_thinking": bool,
    "neftune_noise_alpha": float,
    "run_name": str,
}
LORA_KEYS: dict[str, type] = {
    "lora_rank": int,
    "lora_alpha": int,
    "lora_dropout": float,
    "lora_target": str,
    "use_rslora": bool,
    "use_dora": bool,
}
# LLaMA-Factory's preference-loss keys, for dpo-stage recipes.
PREFERENCE_KEYS: dict[str, type] = {
    "pref_beta": float,
    "pref_loss": str,
    "pref_ftx": float,
    "dpo_label_smoothing": float,
    "simpo_gamma": float,
}
# Set by the adapter a job continues (its adapter_config.json); LLaMA-Factory ignores them then.
ADAPTER_SHAPE_KEYS = tuple(LORA_KEYS)
QUANTIZATION_KEYS: dict[str, type] = {
    "quantization_bit": int,
    "quantization_method": str,
    "quantization_type": str,
    "double_quantization": bool,
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "dataset_format": DATASET_FORMATS,
    "distributed": DISTRIBUTED_STRATEGIES,
    "batch_sizing": BATCH_SIZING_CHOICES,
    "flash_attn": ("auto", "disabled", "sdpa", "fa2", "fa3"),
    "quantization_bit": (4, 8),
    "quantization_type": ("nf4", "fp4"),
    "eval_strategy": ("no", "steps", "epoch"),
    "save_strategy": ("no", "steps", "epoch"),
    "pref_loss": ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"),
}
# Counts and sizes that only make sense from 1 up.
AT_LEAST_ONE = frozenset(
    {
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "cutoff_len",
        "logging_steps",
        "save_steps",
        "eval_steps",
        "lora_rank",
        "lora_alpha",
        # LLaMA-Factory fails on an empty dataset, after the job has started.
        "max_samples",
        "ddp_timeout",
    }
)
# Values from 0 up.
AT_LEAST_ZERO = frozenset({"val_size", "pref_beta", "pref_ftx", "dpo_label_smoothing", "neftune_noise_alpha"})

# Set by the entrypoint from the SageMaker contract; a hyperparameter may not change them.
MANAGED_KEYS = frozenset(
    {
        "model_name_or_path",
        "adapter_name_or_path",
        "dataset",
        "eval_dataset",
        "dataset_dir",
        "media_dir",
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "do_train",
        "do_eval",
        "stage",
        "finetuning_type",
        "deepspeed",
        "fsdp",
        "fsdp_config",
        "report_to",
        "logging_dir",
        "include_num_input_tokens_seen",
        "export_dir",
        "push_to_hub",
        "ref_model",
        "ref_model_adapters",
        "ref_model_quantization_bit",
    }
)
# Managed keys whose only value is the one the entrypoint sets: LLaMA-Factory's examples write them, so
# a hyperparameter with that value is accepted and changes nothing (stage, finetuning_type: the recipe's).
MANAGED_FIXED_VALUES: dict[str, Any] = {"report_to": "none", "overwrite_output_dir": True, "do_train": True}
# A credential in hyperparameters would be stored in the job description in clear text.
SECRET_KEYS = frozenset({"hf_token", "token", "hub_token", "hf_hub_token", "huggingface_token"})
# Names ending like a credential (`api_key`, `WANDB_API_KEY`, `aws_secret_access_key`, `password`),
# and values shaped like a Hugging Face token or an AWS access key id, whatever the case of the name.
_SECRET_NAME = re.compile(
    r"(^|_)(token|secret|password|passwd|credentials?|api_?key|access_?key|secret_?key|private_?key)$"
)
_SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|(AKIA|ASIA)[A-Z0-9]{16})\b")
# Added by the SageMaker SDK or by tuning jobs; they are not ours to read.
IGNORED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")

_RECIPE_FIELDS = {"description", "distributed", "memory_tiers", "llamafactory"}
_RECIPE_OWN_KEYS = {"stage", "finetuning_type"}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    distributed: str
    llamafactory: Mapping[str, Any]
    # Tier table of `memory.TIERS` that sizes batch and checkpointing from the GPU; None: the values above.
    memory_tiers: str | None = None

    @property
    def finetuning_type(self) -> str:
        return str(self.llamafactory["finetuning_type"])

    @property
    def stage(self) -> str:
        return str(self.llamafactory["stage"])

    @property
    def quantized(self) -> bool:
        return "quantization_bit" in self.llamafactory

    def override_types(self) -> dict[str, type]:
        """Every LLaMA-Factory key a hyperparameter may set for this recipe, with its type."""
        types = dict(COMMON_KEYS)
        if self.finetuning_type == "lora":
            types.update(LORA_KEYS)
        if self.quantized:
            types.update(QUANTIZATION_KEYS)
        if self.stage == "dpo":
            types.update(PREFERENCE_KEYS)
        for key, value in self.llamafactory.items():
            if key not in types and key not in MANAGED_KEYS:
                types[key] = type(value)
        return types

    def allowed_keys(self) -> list[str]:
        return sorted({*ENTRYPOINT_KEYS, *self.override_types()})


@dataclass(frozen=True)
class JobSettings:
    recipe: Recipe
    model_id: str | None = None
    merge_adapter: bool = False
    dataset_format: str = "auto"
    distributed: str = "ddp"
    batch_sizing: str = "auto"
    overrides: Mapping[str, Any] = field(default_factory=dict)


def _check_choice(key: str, value: Any) -> None:
    allowed = CHOICES.get(key)
    if allowed is not None and value not in allowed:
        listed = ", ".join(str(choice) for choice in allowed)
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {listed}")
    if key in AT_LEAST_ONE and value < 1:
        raise ConfigError(f"{key}={value!r} must be at least 1")
    if key in AT_LEAST_ZERO and value < 0:
        raise ConfigError(f"{key}={value!r} must be at least 0")
    if key == "val_size" and value >= 1 and value != int(value):
        raise ConfigError(f"val_size={value!r} must be a fraction below 1 or a whole number of rows")
    if key == "learning_rate" and value <= 0:
        raise ConfigError(f"learning_rate={value!r} must be greater than 0")


def parse_recipe(name: str, data: Any) -> Recipe:
    """Check one recipe file's content and coerce its values to the keys' types."""
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {name}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - _RECIPE_FIELDS)
    if unknown:
        raise ConfigError(f"recipe {name}: unknown fields {unknown}; allowed: {sorted(_RECIPE_FIELDS)}")
    settings = data.get("llamafactory")
    if not isinstance(settings, dict) or not _RECIPE_OWN_KEYS <= set(settings):
        raise ConfigError(f"recipe {name}: 'llamafactory' must be a mapping with stage and finetuning_type")
    if settings["stage"] not in STAGES:
        raise ConfigError(f"recipe {name}: stage {settings['stage']!r}; allowed: {', '.join(STAGES)}")
    managed = sorted(set(settings) & (MANAGED_KEYS - _RECIPE_OWN_KEYS))
    if managed:
        raise ConfigError(f"recipe {name}: keys {managed} are set by the entrypoint, remove them")
    not_scalar = sorted(k for k, v in settings.items() if not isinstance(v, (bool, int, float, str)))
    if not_scalar:
        raise ConfigError(
            f"recipe {name}: keys {not_scalar} must be a boolean, number or string "
            "(write lists as comma-separated strings, leave unset keys out)"
        )
    distributed = data.get("distributed", "ddp")
    _check_choice("distributed", distributed)
    memory_tiers = data.get("memory_tiers")
    if memory_tiers is not None and memory_tiers not in TIERS:
        raise ConfigError(
            f"recipe {name}: memory_tiers {memory_tiers!r}; allowed: {', '.join(sorted(TIERS))}"
        )
    typed = {**COMMON_KEYS, **LORA_KEYS, **QUANTIZATION_KEYS, **PREFERENCE_KEYS}
    values = {
        key: parse_value(key, value, typed[key]) if key in typed else value for key, value in settings.items()
    }
    return Recipe(name, str(data.get("description", "")), distributed, values, memory_tiers)


def load_recipes(directory: Path = RECIPES_DIR) -> dict[str, Recipe]:
    """Read every `<name>.yaml` in the recipes folder."""
    recipes = {}
    for path in sorted(directory.glob("*.yaml")):
        recipes[path.stem] = parse_recipe(path.stem, yaml.safe_load(path.read_text()))
    return recipes


def _unknown_key_message(key: str, recipe: Recipe) -> str:
    allowed = recipe.allowed_keys()
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown hyperparameter {key!r} for recipe {recipe.name!r}{hint}; allowed: {', '.join(allowed)}"


def looks_like_secret(key: str, value: Any) -> bool:
    """Whether a hyperparameter's name or value looks like a credential."""
    name = key.lower()
    return name in SECRET_KEYS or bool(_SECRET_NAME.search(name) or _SECRET_VALUE.search(as_text(value)))


def _check_managed(key: str, value: Any, recipe: Recipe) -> None:
    """A managed key may only be given the one value the entrypoint or the recipe sets anyway."""
    fixed = recipe.llamafactory[key] if key in _RECIPE_OWN_KEYS else MANAGED_FIXED_VALUES.get(key)
    if fixed is None:
        raise ConfigError(f"hyperparameter {key!r} is set by the entrypoint and cannot be changed")
    if parse_value(key, value, type(fixed)) != fixed:
        raise ConfigError(f"hyperparameter {key!r} is always {fixed!r} with recipe {recipe.name!r}")


def run_problems(
    recipe: Recipe, overrides: Mapping[str, Any], *, has_validation: bool, continues_adapter: bool
) -> list[tuple[str, str]]:
    """Rules that join hyperparameters with the job's inputs (a validation set, an adapter to continue)."""
    problems = []
    val_size = overrides.get("val_size", 0.0)
    if val_size and has_validation:
        problems.append(
            (
                "val_size",
                "val_size splits the training set for evaluation, but a validation set is given; use one",
            )
        )
    if overrides.get("eval_strategy", "no") != "no" and not (has_validation or val_size):
        problems.append(
            (
                "eval_strategy",
                f"eval_strategy={overrides['eval_strategy']!r} needs something to evaluate: "
                "a validation set, or val_size",
            )
        )
    pref_loss = overrides.get("pref_loss", recipe.llamafactory.get("pref_loss", "sigmoid"))
    if overrides.get("dpo_label_smoothing") and pref_loss != "sigmoid":
        problems.append(
            ("dpo_label_smoothing", f"dpo_label_smoothing needs pref_loss='sigmoid'; got {pref_loss!r}")
        )
    if continues_adapter:
        if recipe.finetuning_type != "lora":
            problems.append(
                (
                    "base_adapter",
                    f"recipe {recipe.name!r} trains {recipe.finetuning_type!r} weights; only a LoRA recipe "
                    "continues an adapter",
                )
            )
        problems += [
            (key, f"hyperparameter {key!r} comes from the adapter being continued (its adapter_config.json)")
            for key in ADAPTER_SHAPE_KEYS
            if key in overrides
        ]
    return problems


def check_hyperparameters(
    raw: Mapping[str, Any],
    recipes: Mapping[str, Recipe],
    *,
    has_validation: bool = False,
    continues_adapter: bool = False,
) -> tuple[JobSettings | None, list[tuple[str, str]]]:
    """The job's settings and every problem with its hyperparameters, as (key, message) pairs.

    The one table of rules: the entrypoint applies it to a job's hyperparameters and inputs, and the
    training pipeline applies it to a request before any job starts. No problems means settings is not None.
    """
    values = {k: v for k, v in raw.items() if not k.startswith(IGNORED_PREFIXES)}
    recipe_name = as_text(values.pop("recipe", DEFAULT_RECIPE))
    if recipe_name not in recipes:
        return None, [("recipe", f"unknown recipe {recipe_name!r}; allowed: {', '.join(sorted(recipes))}")]
    recipe = recipes[recipe_name]
    override_types = recipe.override_types()
    own: dict[str, Any] = {"distributed": recipe.distributed}
    overrides: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key in sorted(values):
        try:
            if looks_like_secret(key, values[key]):
                raise ConfigError(
                    f"hyperparameter {key!r} looks like a token: never pass secrets as hyperparameters "
                    "(tokens, keys, passwords); keep the token in Secrets Manager, set HF_TOKEN_SECRET_ARN"
                )
            if key in MANAGED_KEYS:
                _check_managed(key, values[key], recipe)
                continue
            if key in ENTRYPOINT_KEYS:
                own[key] = parse_value(key, values[key], ENTRYPOINT_KEYS[key])
                _check_choice(key, own[key])
            elif key in override_types:
                overrides[key] = parse_value(key, values[key], override_types[key])
                _check_choice(key, overrides[key])
            else:
                raise ConfigError(_unknown_key_message(key, recipe))
        except ConfigError as error:
            problems.append((key, str(error)))
    if own.get("merge_adapter") and recipe.finetuning_type != "lora":
        problems.append(
            (
                "merge_adapter",
                f"merge_adapter=true needs a LoRA recipe; recipe {recipe.name!r} trains "
                f"{recipe.finetuning_type!r} weights",
            )
        )
    if not problems:
        problems = run_problems(
            recipe, overrides, has_validation=has_validation, continues_adapter=continues_adapter
        )
    if problems:
        return None, problems
    return JobSettings(recipe=recipe, overrides=overrides, **own), []


def parse_hyperparameters(
    raw: Mapping[str, Any],
    recipes: Mapping[str, Recipe],
    *,
    has_validation: bool = False,
    continues_adapter: bool = False,
) -> JobSettings:
    """Turn the job's string hyperparameters into typed settings, rejecting what is not allowed."""
    settings, problems = check_hyperparameters(
        raw, recipes, has_validation=has_validation, continues_adapter=continues_adapter
    )
    if problems:
        raise ConfigError("; ".join(message for _, message in problems))
    return settings


@dataclass(frozen=True)
class RunInputs:
    """What the entrypoint found on disk and in the cluster, for `resolve_llamafactory_config`."""

    model_path: str
    dataset_dir: str
    has_validation: bool
    output_dir: str
    resume_from: str | None
    world_size: int
    has_gpu: bool
    # Total memory of one GPU in GiB as the launcher read it; None when unknown (no GPU).
    gpu_memory_gib: float | None = None
    recipes_dir: str = str(RECIPES_DIR)
    # A trained LoRA adapter to continue (e.g. an SFT adapter under the dpo recipe); None: a new one.
    adapter_path: str | None = None
    # The LLaMA-Factory datasets (dataset_info.json names) of the train and validation channels.
    train_datasets: tuple[str, ...] = ("train",)
    validation_datasets: tuple[str, ...] = ("validation",)


def _distributed_keys(strategy: str, recipes_dir: str) -> dict[str, Any]:
    if strategy == "deepspeed_zero3":
        return {"deepspeed": f"{recipes_dir}/deepspeed/ds_z3.json"}
    if strategy == "deepspeed_zero2":
        return {"deepspeed": f"{recipes_dir}/deepspeed/ds_z2.json"}
    if strategy == "fsdp":
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": f"{recipes_dir}/fsdp/fsdp.json"}
    return {}


def _adapter_keys(settings: JobSettings, config: Mapping[str, Any], inputs: RunInputs) -> dict[str, Any]:
    """Continue a trained adapter: LLaMA-Factory trains it further (one adapter on the base model, served
    like any other); DPO's reference model is then the base with that adapter, not the bare base."""
    keys: dict[str, Any] = {"adapter_name_or_path": inputs.adapter_path}
    if settings.recipe.stage == "dpo" and config.get("pref_loss", "sigmoid") not in ("orpo", "simpo"):
        keys.update(ref_model=inputs.model_path, ref_model_adapters=inputs.adapter_path)
        if "quantization_bit" in config:
            keys["ref_model_quantization_bit"] = config["quantization_bit"]
    return keys


def _cpu_keys(settings: JobSettings, config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn off GPU-only features so the same recipe runs on a CPU (tests, smoke runs)."""
    if "quantization_bit" in config:
        raise ConfigError(
            f"recipe {settings.recipe.name!r} quantizes the model with bitsandbytes, "
            "which needs a GPU; none was found"
        )
    flash_attn = config.get("flash_attn", "auto")
    return {
        "bf16": False,
        "fp16": False,
        "enable_liger_kernel": False,
        "flash_attn": "auto" if flash_attn in ("fa2", "fa3") else flash_attn,
    }


def memory_plan(settings: JobSettings, inputs: RunInputs) -> MemoryPlan | None:
    """The recipe's memory tiers applied to this GPU, or None (no tiers, `batch_sizing=recipe`, no GPU)."""
    table = settings.recipe.memory_tiers
    if table is None or settings.batch_sizing != "auto" or not inputs.has_gpu or not inputs.gpu_memory_gib:
        return None
    dropout = settings.overrides.get("lora_dropout", settings.recipe.llamafactory.get("lora_dropout", 0.0))
    return plan_memory(table, inputs.gpu_memory_gib, float(dropout))


def resolve_llamafactory_config(settings: JobSettings, inputs: RunInputs) -> dict[str, Any]:
    """The complete LLaMA-Factory config: recipe, then the memory plan, then overrides, then managed keys."""
    plan = memory_plan(settings, inputs)
    planned = planned_keys(plan, dict(settings.overrides)) if plan else {}
    config: dict[str, Any] = {**settings.recipe.llamafactory, **planned, **settings.overrides}
    config.update(
        model_name_or_path=inputs.model_path,
        dataset=",".join(inputs.train_datasets),
        dataset_dir=inputs.dataset_dir,
        output_dir=inputs.output_dir,
        overwrite_output_dir=True,
        do_train=True,
        report_to="none",
        include_num_input_tokens_seen=True,
    )
    # Progress bars redraw with carriage returns, which glue them to other lines in job logs.
    config.setdefault("disable_tqdm", True)
    # LLaMA-Factory draws the loss curve (training_loss.png) beside the adapter, where the model folder
    # keeps it; its default is off.
    config.setdefault("plot_loss", True)
    if inputs.resume_from:
        config["resume_from_checkpoint"] = inputs.resume_from
    if inputs.has_validation:
        config["eval_dataset"] = ",".join(inputs.validation_datasets)
    if inputs.has_validation or config.get("val_size"):
        config.setdefault("eval_strategy", "steps")
        config.setdefault("eval_steps", config.get("save_steps", 500))
    if inputs.adapter_path:
        config.update(_adapter_keys(settings, config, inputs))
    if inputs.world_size > 1:
        config.update(_distributed_keys(settings.distributed, inputs.recipes_dir))
    if not inputs.has_gpu:
        config.update(_cpu_keys(settings, config))
    return config


def recipes_by_data(
    recipes: Mapping[str, Recipe], stage_data: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    """Recipe names by the kind of data their stage trains on (for dataset messages)."""
    kinds: dict[str, list[str]] = {}
    for name in sorted(recipes):
        kinds.setdefault(stage_data[recipes[name].stage], []).append(name)
    return {kind: tuple(names) for kind, names in kinds.items()}


def export_config(train_config: Mapping[str, Any], adapter_dir: str, export_dir: str) -> dict:
    """LLaMA-Factory export settings that merge the trained adapter into its base model."""
    config = {
        "model_name_or_path": train_config["model_name_or_path"],
        "adapter_name_or_path": adapter_dir,
        "finetuning_type": "lora",
        "export_dir": export_dir,
        "trust_remote_code": train_config.get("trust_remote_code", False),
    }
    if "template" in train_config:
        config["template"] = train_config["template"]
    return config
