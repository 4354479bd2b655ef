"""The training request contract: the JSON Schema in this folder, made concrete for one deployment.

Pure functions only (files are read, nothing is called): the CDK construct renders the state machine's
checks from `effective_schema`, and the launcher validates a request file with the same schema.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from project_config.training import TrainingConfig

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = Path(__file__).with_name("request.schema.json")
RECIPES_DIR = ROOT / "training_image" / "llmft_train" / "recipes"
# Standard library only by contract (see that file), so it loads without the image's dependencies.
PROGRESS_FILE = ROOT / "training_image" / "llmft_train" / "progress.py"
BUCKET_PLACEHOLDER = "${DataBucket}"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return json.loads(path.read_text())


def recipe_names(recipes_dir: Path = RECIPES_DIR) -> list[str]:
    """The recipes the training image ships (one YAML file each)."""
    names = sorted(path.stem for path in recipes_dir.glob("*.yaml"))
    if not names:
        raise FileNotFoundError(f"no recipes (*.yaml) in {recipes_dir}")
    return names


def metric_definitions(progress_file: Path = PROGRESS_FILE) -> list[dict[str, str]]:
    """SageMaker metric definitions from the image's progress module, loaded as a file, not a package."""
    spec = importlib.util.spec_from_file_location("llmft_train_progress", progress_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [dict(definition) for definition in module.METRIC_DEFINITIONS]


def effective_schema(config: TrainingConfig, recipes: Sequence[str]) -> dict:
    """The repository's schema with this deployment's recipes, instance types and bounds."""
    schema = copy.deepcopy(load_schema())
    props = schema["properties"]
    props["recipe"]["enum"] = list(recipes)
    props["instance_type"]["enum"] = list(config.allowed_instance_types)
    props["instance_count"]["maximum"] = config.max_instance_count
    props["max_runtime_hours"]["maximum"] = config.max_runtime_hours
    props["max_runtime_hours"]["default"] = config.default_max_runtime_hours
    return schema


def defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Values the state machine fills in for optional fields left out of a request."""
    return {name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop}


def glob_regex(glob: str, data_bucket: str | None) -> re.Pattern[str]:
    """A Step Functions StringMatches glob ('*' is any text) as a regex; unknown bucket = any bucket."""
    glob = glob.replace(BUCKET_PLACEHOLDER, data_bucket if data_bucket else "\0")
    parts = [re.escape(part).replace("\0", "[^/]+") for part in glob.split("*")]
    return re.compile(".*".join(parts), re.DOTALL)


def asl_rule_fails(rule: Mapping[str, str], value: str, data_bucket: str | None) -> bool:
    """Whether `value` breaks one `x-asl` rule, exactly as the state machine's Choice state decides."""
    if "when" in rule and not glob_regex(rule["when"], data_bucket).fullmatch(value):
        return False
    if "matches" in rule:
        return not glob_regex(rule["matches"], data_bucket).fullmatch(value)
    return bool(glob_regex(rule["not_matches"], data_bucket).fullmatch(value))


def _field(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        return error.message.split("'")[1]
    if error.validator == "additionalProperties" and not path:
        return "(request)"
    return path or "(request)"


def validation_errors(request: Any, schema: Mapping[str, Any], data_bucket: str | None = None) -> list[str]:
    """Every problem with a request, one line each, starting with the field it is about."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{_field(error)}: {error.message}"
        for error in sorted(validator.iter_errors(request), key=lambda e: list(e.absolute_path))
    ]
    if not isinstance(request, dict):
        return errors
    for name, prop in schema["properties"].items():
        value = request.get(name)
        if not isinstance(value, str):
            continue
        for rule in prop.get("x-asl", []):
            if asl_rule_fails(rule, value, data_bucket):
                errors.append(f"{name}: {rule['rule']} (got {value!r})")
    return errors
