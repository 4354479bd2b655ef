"""Adapter name -> component name, and the registration planner the state machine runs."""

import pytest

from inference import registration
from inference.names import COMPONENT_NAME_MAX, COMPONENT_NAME_PATTERN, component_name
from inference.registration import ManifestError, plan_registration


@pytest.mark.parametrize(
    "adapter",
    ["support-bot", "my_adapter", "My.Adapter", "Bot", "___", "x" * 200, "日本語", "a--b", "42"],
)
def test_component_names_always_fit_sagemakers_pattern(adapter):
    name = component_name("LlmFt", adapter)
    assert COMPONENT_NAME_PATTERN.fullmatch(name), name
    assert len(name) <= COMPONENT_NAME_MAX, name


def test_clean_names_stay_readable():
    assert component_name("LlmFt", "support-bot") == "llmft-support-bot"
    assert component_name("LlmFt", "v2") == "llmft-v2"


@pytest.mark.parametrize(
    ("first", "second"),
    [("my_adapter", "my.adapter"), ("Bot", "bot"), ("x" * 100 + "a", "x" * 100 + "b"), ("a_b", "a-b")],
)
def test_distinct_adapters_never_share_a_component(first, second):
    assert component_name("LlmFt", first) != component_name("LlmFt", second), (first, second)


def test_same_adapter_always_gets_the_same_component():
    assert component_name("LlmFt", "my_adapter") == component_name("LlmFt", "my_adapter")


BUCKET = "llmft-data-bucket"
KEY = "adapters/support-bot/manifest.json"
MANIFEST = {
    "adapter_name": "support-bot",
    "model_artifact": f"s3://{BUCKET}/training/job-1/output/model.tar.gz",
    "training_job_name": "job-1",
    "base_model": "models/llama-3.1-8b/",
    "recipe": "lora",
    "execution_arn": "arn:aws:states:eu-west-1:123456789012:execution:train:run-1",
    "final_metrics": {"loss": 0.5},
}
SERVED = f"s3://{BUCKET}/models/llama-3.1-8b/"


def plan(manifest=None, key=KEY, served=SERVED):
    return plan_registration(
        manifest=MANIFEST if manifest is None else manifest,
        bucket=BUCKET,
        key=key,
        component_prefix="LlmFt",
        served_model=served,
    )


def test_plan_releases_the_artifact_under_adapters_and_names_the_component():
    assert plan() == {
        "adapter_name": "support-bot",
        "component_name": "llmft-support-bot",
        "base_model": "models/llama-3.1-8b/",
        "training_job_name": "job-1",
        "copy_source": f"{BUCKET}/training/job-1/output/model.tar.gz",
        "artifact_key": "adapters/support-bot/job-1/model.tar.gz",
        "artifact_url": f"s3://{BUCKET}/adapters/support-bot/job-1/model.tar.gz",
    }


@pytest.mark.parametrize(
    "artifact",
    ["training/job-1/output/model.tar.gz", "training/a/b/c.tar.gz", "training/x.tar.gz"],
)
def test_what_the_plan_copies_is_what_the_workflows_role_may_copy(artifact):
    """IAM's `*` spans `/`, as fnmatch's does: every copy the planner accepts is inside the role's grant."""
    import fnmatch
    import urllib.parse

    from constructs.llmft_adapter_registration import RELEASED_ARCHIVE_PATTERN, TRAINED_ARCHIVE_PATTERN

    planned = plan({**MANIFEST, "model_artifact": f"s3://{BUCKET}/{artifact}"})
    source_key = urllib.parse.unquote(planned["copy_source"]).removeprefix(f"{BUCKET}/")
    assert fnmatch.fnmatchcase(source_key, TRAINED_ARCHIVE_PATTERN), source_key
    assert fnmatch.fnmatchcase(planned["artifact_key"], RELEASED_ARCHIVE_PATTERN), planned["artifact_key"]
    # and what it refuses lies outside: an archive elsewhere, or not an archive
    for outside in ("models/base/model.tar.gz", "training/job-1/output/output.json"):
        with pytest.raises(ManifestError, match="must be a .tar.gz"):
            plan({**MANIFEST, "model_artifact": f"s3://{BUCKET}/{outside}"})
        assert not fnmatch.fnmatchcase(outside, TRAINED_ARCHIVE_PATTERN), outside


def test_base_model_may_be_named_as_an_s3_url_or_model_id():
    assert plan({**MANIFEST, "base_model": f"s3://{BUCKET}/models/llama-3.1-8b"})["component_name"]
    hub = {**MANIFEST, "base_model": "meta-llama/Llama-3.1-8B"}
    assert plan(hub, served="meta-llama/Llama-3.1-8B")["base_model"] == "meta-llama/Llama-3.1-8B"


@pytest.mark.parametrize(
    ("manifest", "key", "message"),
    [
        (MANIFEST, "adapters/support-bot/v1/manifest.json", "is not adapters/<adapter_name>/manifest.json"),
        ([1, 2], KEY, "is not a JSON object"),
        ({k: v for k, v in MANIFEST.items() if k != "model_artifact"}, KEY, "'model_artifact' is missing"),
        ({**MANIFEST, "adapter_name": "other"}, KEY, "differs from its folder 'support-bot'"),
        ({**MANIFEST, "training_job_name": "bad job"}, KEY, "is not a training job name"),
        ({**MANIFEST, "model_artifact": "s3://elsewhere/training/j/model.tar.gz"}, KEY, "must be a .tar.gz"),
        (
            {**MANIFEST, "model_artifact": f"s3://{BUCKET}/datasets/x.tar.gz"},
            KEY,
            f"under s3://{BUCKET}/training/",
        ),
        ({**MANIFEST, "base_model": "models/mistral-7b/"}, KEY, "trained on base_model 'models/mistral-7b/'"),
        (
            {**MANIFEST, "recipe": "full_sft"},
            KEY,
            "recipe 'full_sft' trains a full model, not a LoRA adapter",
        ),
    ],
)
def test_bad_manifests_fail_with_the_field_at_fault(manifest, key, message):
    with pytest.raises(ManifestError) as raised:
        plan(manifest, key=key)
    assert message in str(raised.value), str(raised.value)


def test_lambda_handler_plans_from_the_state_machine_payload():
    event = {
        "manifest": MANIFEST,
        "bucket": BUCKET,
        "key": KEY,
        "component_prefix": "LlmFt",
        "served_model": SERVED,
    }
    assert registration.handler(event, None)["component_name"] == "llmft-support-bot"


def test_copy_source_is_url_encoded_for_copy_object():
    manifest = {**MANIFEST, "model_artifact": f"s3://{BUCKET}/training/run 1/output/model.tar.gz"}
    assert plan(manifest)["copy_source"] == f"{BUCKET}/training/run%201/output/model.tar.gz"
