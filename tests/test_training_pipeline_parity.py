"""One judge, two doors: the launcher and the state machine's Lambda function give the same verdict.

Each request of the corpus goes through the launcher (`--dry-run`: every check, S3 included, nothing started)
and through the Lambda handler (`handlers.validate`, with the deployment settings of the synthesized bundle
and its environment), against the same S3 bucket in moto. Both must agree on valid or not and name the same
problems; each case also says what it expects, so the corpus tests what it claims.
"""

import io
import json
import re

import boto3
import pytest
from moto import mock_aws

from tests.pipeline_moto import BUCKET, KMS_KEY, REGION, bundle_dir
from tests.test_training_pipeline_execution import VALID_INPUTS, VALID_REQUEST
from tests.test_training_request import REFUSED
from training_pipeline import handlers, launch

STATE_MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:llmft-training"
BASE = {k: v for k, v in VALID_REQUEST.items() if k != "instance_type"} | {"instance_type": "ml.g5.2xlarge"}
HUB = {**BASE, "base_model": "meta-llama/Llama-3.1-8B-Instruct"}
COUNTING_NAME = re.compile(r"hyperparameters\.n\d+")
ONLY_REQUIRED = {k: BASE[k] for k in ("recipe", "adapter_name", "train_data", "base_model", "instance_type")}
SFT_ARTIFACT = f"s3://{BUCKET}/training/support-sft-1/output/model.tar.gz"
# Manifests of adapters a request may continue (base_adapter), as the pipeline writes them.
MANIFESTS = {
    "support-sft": {"recipe": "lora", "base_model": BASE["base_model"], "model_artifact": SFT_ARTIFACT},
    "contracts-full": {
        "recipe": "full_sft",
        "base_model": BASE["base_model"],
        "model_artifact": SFT_ARTIFACT,
    },
    "other-base": {"recipe": "lora", "base_model": "meta-llama/Llama-3.2-1B", "model_artifact": SFT_ARTIFACT},
    "elsewhere": {
        "recipe": "lora",
        "base_model": BASE["base_model"],
        "model_artifact": "s3://x/training/a.tar.gz",
    },
}
DPO = {**BASE, "recipe": "dpo", "adapter_name": "support-dpo"}
# config.json of quantized checkpoints in the bucket: the judge reads it before a job starts.
QUANTIZED_MODELS = {
    "llama-awq": {"quant_method": "awq", "bits": 4},
    "llama-bnb-4bit": {"quant_method": "bitsandbytes", "load_in_4bit": True},
}


def _without(field: str) -> dict:
    return {k: v for k, v in BASE.items() if k != field}


# (case, request, fields the judge names; [] means valid)
CORPUS = [
    ("valid, everything given", BASE, []),
    ("valid, only the required fields", ONLY_REQUIRED, []),
    ("valid, a Hub model", HUB, []),
    (
        "valid, a model folder without its slash",
        {**BASE, "base_model": f"s3://{BUCKET}/models/llama-3.1-8b-instruct"},
        [],
    ),
    ("valid, a dataset folder", {**BASE, "train_data": f"s3://{BUCKET}/datasets/support/"}, []),
    ("valid, full SFT", {**BASE, "recipe": "full_sft", "adapter_name": "contracts-sft"}, []),
    ("valid, QLoRA on spot", {**HUB, "recipe": "qlora_4bit", "use_spot": True}, []),
    (
        "valid, LLaMA-Factory keys",
        {**BASE, "hyperparameters": {"lora_rank": "32", "cutoff_len": "4096", "template": "llama3"}},
        [],
    ),
    (
        "valid, keys users bring from LLaMA-Factory's examples",
        {
            **_without("validation_data"),
            "hyperparameters": {
                "plot_loss": "true",
                "overwrite_cache": "true",
                "ddp_timeout": "180000000",
                "val_size": "0.1",
                "eval_strategy": "steps",
                "save_only_model": "false",
                "report_to": "none",
                "overwrite_output_dir": "true",
                "do_train": "true",
                "stage": "sft",
                "finetuning_type": "lora",
                "max_samples": "1000",
            },
        },
        [],
    ),
    (
        "valid, entrypoint keys",
        {**BASE, "hyperparameters": {"merge_adapter": "true", "distributed": "fsdp"}},
        [],
    ),
    ("valid, a 60-character job name", {**BASE, "job_name": "j" * 60}, []),
    ("valid, DPO from the base model", DPO, []),
    ("valid, DPO on an SFT adapter", {**DPO, "base_adapter": "support-sft"}, []),
    ("valid, more SFT on an SFT adapter", {**BASE, "base_adapter": "support-sft"}, []),
    ("valid, a 63-character adapter name", {**BASE, "adapter_name": "a" * 63}, []),
    # Counting cases: SageMaker's limit is judged on the count line (the made-up names are refused too).
    (
        "count, 98 hyperparameters on a Hub model",
        {**HUB, "hyperparameters": {f"n{i}": "1" for i in range(98)}},
        [],
    ),
    ("valid, a manifest.json.bak beside the name", {**BASE, "adapter_name": "lookalike"}, []),
    *[
        # A None in a case removes that field from the request.
        (f"refused, {name}", {k: v for k, v in {**BASE, **changes}.items() if v is not None}, expected)
        for name, changes, expected in REFUSED
        if name != "an instance type not allowed"
    ],
    ("refused, an instance type not allowed", {**BASE, "instance_type": "ml.m5.xlarge"}, ["instance_type"]),
    ("refused, no recipe", _without("recipe"), ["recipe"]),
    ("refused, no train_data", _without("train_data"), ["train_data"]),
    (
        "refused, an empty request",
        {},
        ["recipe", "adapter_name", "train_data", "base_model", "instance_type"],
    ),
    ("refused, an array", [BASE], ["(request)"]),
    ("refused, a string", "train please", ["(request)"]),
    ("refused, null", None, ["(request)"]),
    (
        "count, 99 and recipe and model_id",
        {**HUB, "hyperparameters": {f"n{i}": "1" for i in range(99)}},
        ["hyperparameters"],
    ),
    (
        "refused, a missing dataset",
        {**BASE, "train_data": f"s3://{BUCKET}/datasets/none.jsonl"},
        ["train_data"],
    ),
    (
        "refused, an empty dataset folder",
        {**BASE, "train_data": f"s3://{BUCKET}/datasets/empty/"},
        ["train_data"],
    ),
    (
        "refused, a folder without its slash",
        {**BASE, "train_data": f"s3://{BUCKET}/datasets/support"},
        ["train_data"],
    ),
    (
        "refused, a model without config.json",
        {**BASE, "base_model": f"s3://{BUCKET}/models/empty/"},
        ["base_model"],
    ),
    ("refused, an adapter name already published", {**BASE, "adapter_name": "published"}, ["adapter_name"]),
    (
        "valid, LoRA on a bitsandbytes 4-bit checkpoint",
        {**BASE, "base_model": f"s3://{BUCKET}/models/llama-bnb-4bit/"},
        [],
    ),
    (
        "refused, an AWQ checkpoint the image cannot train",
        {**BASE, "base_model": f"s3://{BUCKET}/models/llama-awq/"},
        ["base_model"],
    ),
    (
        "refused, full SFT of a quantized checkpoint",
        {**BASE, "recipe": "full_sft", "base_model": f"s3://{BUCKET}/models/llama-bnb-4bit/"},
        ["base_model"],
    ),
    ("refused, a base adapter never trained", {**DPO, "base_adapter": "nobody"}, ["base_adapter"]),
    ("refused, a full model as base adapter", {**DPO, "base_adapter": "contracts-full"}, ["base_adapter"]),
    ("refused, a base adapter of another model", {**DPO, "base_adapter": "other-base"}, ["base_adapter"]),
    ("refused, a base adapter outside training/", {**DPO, "base_adapter": "elsewhere"}, ["base_adapter"]),
    (
        "refused, a manifest that is not the pipeline's",
        {**DPO, "base_adapter": "published"},
        ["base_adapter"],
    ),
    (
        "refused, full SFT continuing an adapter",
        {**BASE, "recipe": "full_sft", "base_adapter": "support-sft"},
        ["base_adapter"],
    ),
    (
        "refused, a LoRA shape key with a base adapter",
        {**DPO, "base_adapter": "support-sft", "hyperparameters": {"lora_rank": "8"}},
        ["hyperparameters.lora_rank"],
    ),
    (
        "refused, many problems",
        {**BASE, "adapter_name": "A B", "hyperparameters": {"x": 1}, "size": 1},
        ["size", "adapter_name", "hyperparameters.x"],
    ),
]


@pytest.fixture
def s3_world(default_app, monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for key in (
            *VALID_INPUTS,
            "adapters/lookalike/manifest.json.bak",
            "adapters/published/manifest.json",
        ):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
        for name, quantization in QUANTIZED_MODELS.items():
            config = {"model_type": "llama", "quantization_config": quantization}
            s3.put_object(Bucket=BUCKET, Key=f"models/{name}/config.json", Body=json.dumps(config).encode())
        for name, document in MANIFESTS.items():
            s3.put_object(
                Bucket=BUCKET, Key=f"adapters/{name}/manifest.json", Body=json.dumps(document).encode()
            )
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("DATA_BUCKET", BUCKET)
        monkeypatch.setenv("VOLUME_KMS_KEY_ARN", KMS_KEY)
        monkeypatch.setattr(
            handlers,
            "DEPLOYMENT_FILE",
            bundle_dir(default_app, default_app.stacks.training_pipeline) / "deployment.json",
        )
        yield s3


def launcher_problems(request, tmp_path) -> list[str]:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    out, err = io.StringIO(), io.StringIO()
    argv = [
        str(path),
        "--dry-run",
        "--state-machine-arn",
        STATE_MACHINE,
        "--data-bucket",
        BUCKET,
        "--region",
        REGION,
    ]
    code = launch.main(argv, out=out, err=err)
    assert code in (launch.OK, launch.INVALID), err.getvalue()
    lines = err.getvalue().splitlines()[1:]
    assert (code == launch.OK) is (lines == []), (code, err.getvalue())
    return [line.removeprefix("  ") for line in lines]


def handler_problems(request) -> list[str]:
    verdict = handlers.validate({"request": request, "start_time": "2026-12-02T17:05:01.123Z"})
    assert verdict["valid"] is (verdict["cause"] == "") is (verdict["plan"] is not None)
    return verdict["cause"].split("\n") if verdict["cause"] else []


def test_the_corpus_is_large_and_covers_both_verdicts():
    assert len(CORPUS) >= 50
    assert sum(1 for *_, expected in CORPUS if expected == []) >= 10


@pytest.mark.parametrize(("request_body", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_the_launcher_and_the_state_machines_function_judge_alike(s3_world, tmp_path, request_body, expected):
    from_launcher = launcher_problems(request_body, tmp_path)
    from_function = handler_problems(request_body)
    assert from_launcher == from_function, "the two doors must name the same problems"
    # The counting cases' made-up names (n0, n1, ...) are refused one by one; the count is what they test.
    named = [
        name for name in (p.split(":", 1)[0] for p in from_function) if not COUNTING_NAME.fullmatch(name)
    ]
    assert named == expected, from_function


def test_a_continued_adapter_reaches_the_job_as_its_adapter_channel(s3_world):
    verdict = handlers.validate(
        {"request": {**DPO, "base_adapter": "support-sft"}, "start_time": "2026-12-02T17:05:01Z"}
    )
    assert verdict["valid"], verdict["cause"]
    plan = verdict["plan"]
    adapter = [c for c in plan["channels"] if c["ChannelName"] == "adapter"]
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in adapter] == [SFT_ARTIFACT]
    assert plan["base_adapter"] == "support-sft" and plan["recipe"] == "dpo"
    without = handlers.validate({"request": DPO, "start_time": "2026-12-02T17:05:01Z"})["plan"]
    assert "base_adapter" not in without and all(c["ChannelName"] != "adapter" for c in without["channels"])
