"""The request contract: the schema, its examples, and the state machine checks generated from it."""

import json
import sys

import jsonschema
import pytest

from project_config.instance_types import has_instance_storage
from project_config.training import TrainingConfig
from tests.conftest import ROOT
from tests.pipeline_moto import BUCKET
from tests.test_training_pipeline_execution import INVALID_REQUESTS, VALID_REQUEST
from training_pipeline.definition import (
    PipelineSettings,
    build_definition,
    validation_states,
)
from training_pipeline.request import (
    asl_rule_fails,
    defaults,
    effective_schema,
    load_schema,
    metric_definitions,
    recipe_names,
    validation_errors,
)

EXAMPLES = sorted((ROOT / "examples" / "training-requests").glob("*.json"))
EXAMPLE_BUCKET = "your-data-bucket"


@pytest.fixture(scope="module")
def schema():
    return effective_schema(TrainingConfig(), recipe_names())


def test_schema_is_valid_json_schema_2020_12():
    jsonschema.Draft202012Validator.check_schema(load_schema())


def test_recipes_are_the_ones_the_image_ships(schema):
    shipped = sorted(p.stem for p in (ROOT / "training_image" / "llmft_train" / "recipes").glob("*.yaml"))
    assert schema["properties"]["recipe"]["enum"] == shipped == ["full_sft", "lora", "qlora_4bit"]


def test_effective_schema_takes_bounds_from_cdk_json():
    config = TrainingConfig(
        allowed_instance_types=("ml.p5.48xlarge",),
        max_instance_count=8,
        max_runtime_hours=12,
        default_max_runtime_hours=6,
    )
    props = effective_schema(config, ["lora"])["properties"]
    assert props["instance_type"]["enum"] == ["ml.p5.48xlarge"]
    assert props["instance_count"]["maximum"] == 8
    assert (props["max_runtime_hours"]["maximum"], props["max_runtime_hours"]["default"]) == (12, 6)
    assert load_schema()["properties"]["instance_count"]["maximum"] == 4, "the file itself is not changed"


def test_defaults_fill_only_optional_fields(schema):
    assert defaults(schema) == {
        "instance_count": 1,
        "use_spot": False,
        "max_runtime_hours": 24,
        "hyperparameters": {},
    }
    assert not set(defaults(schema)) & set(schema["required"])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_request_is_valid(schema, path):
    request = json.loads(path.read_text())
    assert validation_errors(request, schema, EXAMPLE_BUCKET) == [], path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_hyperparameters_are_accepted_by_the_image(path):
    sys.path.insert(0, str(ROOT / "training_image"))
    try:
        from llmft_train.recipes import load_recipes, parse_hyperparameters
    finally:
        sys.path.remove(str(ROOT / "training_image"))
    request = json.loads(path.read_text())
    settings = parse_hyperparameters(
        {**request.get("hyperparameters", {}), "recipe": request["recipe"]}, load_recipes()
    )
    assert settings.recipe.name == request["recipe"]


def test_examples_exist_for_each_kind_of_run():
    assert {p.name for p in EXAMPLES} == {
        "lora-s3-model.json",
        "qlora-hub-model.json",
        "full-sft-multi-node.json",
    }


def test_the_valid_request_of_the_execution_tests_passes_the_cli_too(schema):
    assert validation_errors(VALID_REQUEST, schema, BUCKET) == []


@pytest.mark.parametrize(
    ("request_body", "error", "cause"), INVALID_REQUESTS, ids=[c[1] + c[2] for c in INVALID_REQUESTS]
)
def test_the_cli_rejects_what_the_state_machine_rejects(schema, request_body, error, cause):
    field = error.split(".", 1)[1]
    problems = validation_errors(request_body, schema, BUCKET)
    assert any(p.startswith(f"{field}: ") for p in problems), problems


def test_the_cli_also_checks_what_asl_cannot(schema):
    request = {
        **VALID_REQUEST,
        "instance_count": 1.5,
        "extra": 1,
        "hyperparameters": {"hf_token": "x", "lr": 1},
    }
    problems = "\n".join(validation_errors(request, schema, BUCKET))
    assert "instance_count: 1.5 is not of type 'integer'" in problems
    assert "'extra' was unexpected" in problems
    assert "hyperparameters: 'hf_token' should not be valid" in problems, "tokens never go in hyperparameters"
    assert "hyperparameters.lr: 1 is not of type 'string'" in problems


@pytest.mark.parametrize(
    ("rule", "value", "bucket", "fails"),
    [
        ({"matches": "s3://${DataBucket}/datasets/*"}, "s3://b/datasets/x", "b", False),
        ({"matches": "s3://${DataBucket}/datasets/*"}, "s3://other/datasets/x", "b", True),
        ({"matches": "s3://${DataBucket}/datasets/*"}, "s3://other/datasets/x", None, False),
        ({"matches": "s3://${DataBucket}/datasets/*"}, "s3://a/b/datasets/x", None, True),
        ({"not_matches": "*/*"}, "team/bot", None, True),
        ({"not_matches": "*/*"}, "team-bot", None, False),
        ({"when": "s3://*", "matches": "s3://${DataBucket}/models/*"}, "org/model", "b", False),
        ({"when": "s3://*", "matches": "s3://${DataBucket}/models/*"}, "s3://b/data/m", "b", True),
    ],
)
def test_glob_rules_behave_like_string_matches(rule, value, bucket, fails):
    assert asl_rule_fails(rule, value, bucket) is fails


@pytest.mark.parametrize(
    ("instance_type", "local"),
    [
        ("ml.g5.2xlarge", True),
        ("ml.g6e.12xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p4de.24xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.g4dn.xlarge", True),
        ("ml.m5d.large", True),
        ("ml.p3.2xlarge", False),
        ("ml.m5.xlarge", False),
        ("ml.c5.2xlarge", False),
        ("ml.trn1.32xlarge", True),
    ],
)
def test_instance_storage_decides_whether_a_volume_key_is_allowed(instance_type, local):
    assert has_instance_storage(instance_type) is local


def test_every_field_is_checked_and_every_failure_names_its_field(schema):
    first, states = validation_states(schema, "Next")
    assert first == "Check recipe"
    checked = {n.removeprefix("Check ") for n, s in states.items() if s["Type"] == "Choice"}
    integers = {name for name, prop in schema["properties"].items() if prop.get("type") == "integer"}
    assert checked == set(schema["properties"]) | {f"{name} is whole" for name in integers}
    assert integers == {"instance_count", "max_runtime_hours"}, integers
    for name, state in states.items():
        if state["Type"] == "Fail":
            field = state["Error"].removeprefix("InvalidRequest.")
            assert field in schema["properties"] and state["Cause"].startswith(f"{field}: "), (name, state)


def test_metric_definitions_come_from_the_image_progress_file():
    definitions = metric_definitions()
    assert [d["Name"] for d in definitions][:2] == ["train:loss", "train:learning_rate"]
    assert all(set(d) == {"Name", "Regex"} for d in definitions)


def test_state_names_avoid_characters_step_functions_reserves(schema):
    settings = PipelineSettings(
        schema=schema,
        metric_definitions=metric_definitions(),
        subnet_count=2,
        volume_size_gb=100,
        spot_extra_wait_hours=1,
        local_storage_instance_types=("ml.g5.2xlarge",),
    )
    names = list(build_definition(settings)["States"])
    for name in names:
        assert len(name) <= 80 and not set(name) & set('<>{}[]?*"#%\\^|~`$&,;:/'), name
