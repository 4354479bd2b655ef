"""The training request contract: one judge for the launcher, the state machine and the training image.

`request_problems` decides whether a request is valid and returns every problem, each starting with its field:
the JSON Schema in this folder, SageMaker's own limits (read from botocore's service model), S3 URIs,
names, payload size, and the hyperparameters by the image's own rules (`llmft_train.recipes`, the table
the entrypoint applies again as the last line). `online_problems` adds what only S3 can tell. The launcher
calls both in-process; the state machine's first Task calls them through `handlers.validate`, a Lambda
function bundled from this same folder. Everything here is pure except `online_problems`, which reads
through the S3 client it is given.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from llmft_train.hyperparams import ConfigError, parse_value
from llmft_train.models import model_problem
from llmft_train.progress import METRIC_DEFINITIONS
from llmft_train.recipes import Recipe, check_hyperparameters, load_recipes


@functools.cache
def _recipes() -> dict[str, Recipe]:
    """The image's recipes, read once per process (a warm Lambda keeps them): the files never change."""
    return load_recipes()


SCHEMA_PATH = Path(__file__).with_name("request.schema.json")
DATASET_PREFIX = "datasets/"
MODEL_PREFIX = "models/"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
# Keys the pipeline adds to a job's hyperparameters (SageMaker counts them against its limit).
PIPELINE_KEYS = ("recipe", "model_id")
# The channel that carries a continued adapter (the image's `adapter` channel).
ADAPTER_CHANNEL = "adapter"
# Where training jobs write their model.tar.gz: the only artifacts the training role may read back.
TRAINING_ARTIFACT = re.compile(r"^s3://(?P<bucket>[^/]+)/training/.+\.tar\.gz$")
# The hyperparameters travel through the execution's state several times (request, plan, the job's
# description in an error); at 32 KiB the largest state stays far below Step Functions' 256 KiB limit,
# which would otherwise end the execution with an uncatchable States.DataLimitExceeded.
MAX_HYPERPARAMETER_BYTES = 32 * 1024
HUB_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.*)$")
MANIFEST_KEY = "adapters/{}/manifest.json"


@dataclass(frozen=True)
class SageMakerLimits:
    """CreateTrainingJob's limits as botocore's service model states them (see `sagemaker_limits`)."""

    job_name_pattern: str
    job_name_max: int
    hyperparameters_max: int
    hyperparameter_key_max: int
    hyperparameter_value_max: int
    s3_uri_max: int
    instance_types: tuple[str, ...]


def sagemaker_limits() -> SageMakerLimits:
    """Read the limits from botocore (imported here only: the Lambda function gets them as data)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape.members
    name = shape["TrainingJobName"].metadata
    hyperparameters = shape["HyperParameters"]
    channel = shape["InputDataConfig"].member.members["DataSource"].members["S3DataSource"]
    return SageMakerLimits(
        job_name_pattern=name["pattern"],
        job_name_max=name["max"],
        hyperparameters_max=hyperparameters.metadata["max"],
        hyperparameter_key_max=hyperparameters.key.metadata["max"],
        hyperparameter_value_max=hyperparameters.value.metadata["max"],
        s3_uri_max=channel.members["S3Uri"].metadata["max"],
        instance_types=tuple(shape["ResourceConfig"].members["InstanceType"].enum),
    )


@dataclass(frozen=True)
class Deployment:
    """What a request is judged against: one deployment's settings and SageMaker's limits."""

    allowed_instance_types: tuple[str, ...]
    max_instance_count: int
    max_runtime_hours: int
    default_max_runtime_hours: int
    spot_extra_wait_hours: int
    volume_size_gb: int
    # Instance types with local NVMe storage: SageMaker refuses a VolumeKmsKeyId for them.
    local_storage_instance_types: tuple[str, ...]
    capacity_attempts: int
    limits: SageMakerLimits
    recipes: tuple[str, ...] = field(default_factory=lambda: tuple(sorted(_recipes())))

    @property
    def job_name_max(self) -> int:
        """A given job name leaves room for the capacity retries' `-r<n>` suffix."""
        return self.limits.job_name_max - len(f"-r{self.capacity_attempts}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        data = json.loads(text)
        data["limits"] = SageMakerLimits(
            **{**data["limits"], "instance_types": tuple(data["limits"]["instance_types"])}
        )
        for name in ("allowed_instance_types", "local_storage_instance_types", "recipes"):
            data[name] = tuple(data[name])
        return cls(**data)


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker metric definitions: the regular expressions of the image's progress lines."""
    return [dict(definition) for definition in METRIC_DEFINITIONS]


def request_schema(deployment: Deployment) -> dict:
    """The repository's schema with this deployment's recipes, instance types and bounds."""
    schema = json.loads(SCHEMA_PATH.read_text())
    props = schema["properties"]
    props["recipe"]["enum"] = list(deployment.recipes)
    props["instance_type"]["enum"] = list(deployment.allowed_instance_types)
    props["instance_count"]["maximum"] = deployment.max_instance_count
    props["max_runtime_hours"]["maximum"] = deployment.max_runtime_hours
    props["max_runtime_hours"]["default"] = deployment.default_max_runtime_hours
    limits = deployment.limits
    props["hyperparameters"]["additionalProperties"]["maxLength"] = limits.hyperparameter_value_max
    # SageMaker's own name rule, less room for the capacity retries' `-r<n>` suffix.
    props["job_name"]["pattern"] = f"^{limits.job_name_pattern}$"
    props["job_name"]["maxLength"] = deployment.job_name_max
    return schema


def with_defaults(request: Mapping[str, Any], deployment: Deployment) -> dict[str, Any]:
    """The request with every optional field that has a default filled in."""
    schema = request_schema(deployment)
    filled = {name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop}
    return {**filled, **request}


# ---------------------------------------------------------------------------------------------------
# The judge


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def _schema_problem(error: jsonschema.ValidationError, fields: list[str]) -> list[str]:
    """One jsonschema error as problem lines, each starting with its field."""
    path = ".".join(str(part) for part in error.absolute_path)
    got = json.dumps(error.instance)[:80]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return [f"{missing}: is required"]
    if error.validator == "additionalProperties" and not path:
        return [
            f"{name}: unknown field{_did_you_mean(name, fields)}; allowed: {', '.join(fields)}"
            for name in sorted(set(error.instance) - set(fields))
        ]
    where = path or "(request)"
    if error.validator == "type":
        kind = error.validator_value
        if not path:
            return [f"(request): must be a JSON object with the fields {', '.join(fields)}; got {got}"]
        return [f"{where}: must be {_article(kind)} {kind}; got {got}"]
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return [f"{where}: must be one of: {allowed}; got {got}"]
    if error.validator in ("minimum", "maximum"):
        bound = "at least" if error.validator == "minimum" else "at most"
        return [f"{where}: must be {bound} {error.validator_value}; got {got}"]
    if error.validator == "maxLength":
        return [f"{where}: is {len(error.instance)} characters long; at most {error.validator_value} allowed"]
    if error.validator == "pattern":
        description = error.schema.get("description", "")
        return [f"{where}: {got} does not match {error.validator_value}. {description}".rstrip()]
    return [f"{where}: {error.message}"]


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def s3_uri_problems(
    name: str, uri: str, *, prefix: str, data_bucket: str | None, limits: SageMakerLimits
) -> list[str]:
    """Problems with an S3 URI the job will read: literal segments, the data bucket, the prefix."""
    match = S3_URI.match(uri)
    if not match:
        return [f"{name}: {uri!r} is not an S3 URI s3://<bucket>/<key>"]
    bucket, key = match["bucket"], match["key"]
    problems = []
    if len(uri) > limits.s3_uri_max:
        problems.append(
            f"{name}: is {len(uri)} characters long; SageMaker allows at most {limits.s3_uri_max}"
        )
    # S3 keys are literal: `datasets/../adapters/x` is an object name, not a path to adapters/x.
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments[:-1]) or segments[-1] in (".", ".."):
        problems.append(
            f"{name}: {uri} has an empty, '.' or '..' segment; write the object's own key "
            f"(S3 keys are literal, they are not resolved like paths)"
        )
    if data_bucket and bucket != data_bucket:
        problems.append(
            f"{name}: must be in the data bucket s3://{data_bucket}/{prefix}; got bucket {bucket}"
        )
    if not key.startswith(prefix):
        problems.append(f"{name}: must be under {prefix} in the data bucket; got {uri}")
    elif key == prefix:
        problems.append(f"{name}: names the whole {prefix} prefix; name one dataset or folder under it")
    return problems


def job_hyperparameters(request: Mapping[str, Any]) -> dict[str, str]:
    """The hyperparameters the job receives: the request's, plus the recipe and a Hub model's id."""
    added = {"recipe": request["recipe"]}
    if not str(request["base_model"]).startswith("s3://"):
        added["model_id"] = request["base_model"]
    return {**request.get("hyperparameters", {}), **added}


def _hyperparameter_problems(request: Mapping[str, Any], deployment: Deployment) -> list[str]:
    given = request.get("hyperparameters", {})
    limits = deployment.limits
    source = {"recipe": "recipe", "model_id": "base_model", "base_adapter": "base_adapter"}
    problems = [
        f"hyperparameters.{key}: is set by the pipeline from the request's {source[key]}"
        for key in PIPELINE_KEYS
        if key in given
    ]
    hyperparameters = job_hyperparameters(request)
    if len(hyperparameters) > limits.hyperparameters_max:
        added = len(hyperparameters) - len(given)
        problems.append(
            f"hyperparameters: {len(given)} given and {added} added by the pipeline "
            f"({', '.join(k for k in PIPELINE_KEYS if k in hyperparameters)}) make {len(hyperparameters)}; "
            f"SageMaker allows at most {limits.hyperparameters_max}"
        )
    for key in given:
        if len(key) > limits.hyperparameter_key_max:
            problems.append(
                f"hyperparameters.{key[:40]}...: the name is {len(key)} characters long; "
                f"SageMaker allows at most {limits.hyperparameter_key_max}"
            )
    size = len(json.dumps(hyperparameters).encode())
    if size > MAX_HYPERPARAMETER_BYTES:
        problems.append(
            f"hyperparameters: {size} bytes in all; at most {MAX_HYPERPARAMETER_BYTES} so that the "
            "pipeline's state stays under Step Functions' 256 KiB payload limit"
        )
    _, image_problems = check_hyperparameters(
        hyperparameters,
        _recipes(),
        has_validation="validation_data" in request,
        continues_adapter="base_adapter" in request,
    )
    for key, message in image_problems:
        where = source.get(key, f"hyperparameters.{key}")
        problems.append(f"{where}: {message}")
    return problems


def request_problems(request: Any, deployment: Deployment, data_bucket: str | None = None) -> list[str]:
    """Every problem with a request, one line each, starting with its field; [] when it is valid.

    `data_bucket` None (offline) accepts S3 URIs in any bucket.
    """
    schema = request_schema(deployment)
    fields = list(schema["properties"])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(request), key=lambda e: [str(p) for p in e.absolute_path])
    found = [line for error in errors for line in _schema_problem(error, fields)]
    if not isinstance(request, dict):
        return found
    # Fields the schema refused are not judged again (one clear line each).
    where = [line.split(":", 1)[0] for line in found]
    refused = {name for name in where if "." not in name}
    refused_hyperparameters = {name.split(".", 1)[1] for name in where if name.startswith("hyperparameters.")}
    request = with_defaults(request, deployment)
    limits = deployment.limits
    for name in ("train_data", "validation_data"):
        if name in request and name not in refused:
            found += s3_uri_problems(
                name, request[name], prefix=DATASET_PREFIX, data_bucket=data_bucket, limits=limits
            )
    base_model = request.get("base_model")
    if "base_model" not in refused and isinstance(base_model, str):
        if base_model.startswith("s3://"):
            found += s3_uri_problems(
                "base_model", base_model, prefix=MODEL_PREFIX, data_bucket=data_bucket, limits=limits
            )
        elif not HUB_MODEL_ID.match(base_model):
            found.append(
                f"base_model: {base_model!r} is neither an S3 folder s3://<data bucket>/models/<name>/ nor a "
                "Hugging Face model id such as meta-llama/Llama-3.1-8B-Instruct"
            )
    if "instance_type" not in refused and request.get("instance_type") not in limits.instance_types:
        found.append(
            f"instance_type: {request.get('instance_type')!r} is not a SageMaker training instance type"
        )
    if not refused & {"hyperparameters", "recipe", "base_model"}:
        given = request.get("hyperparameters", {})
        judged = {
            **request,
            "hyperparameters": {k: v for k, v in given.items() if k not in refused_hyperparameters},
        }
        found += _hyperparameter_problems(judged, deployment)
    return found


# ---------------------------------------------------------------------------------------------------
# Online: what only S3 can tell


# What S3 answers for a key that does not exist (HeadObject: 404; GetObject: NoSuchKey).
NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in NOT_FOUND_CODES:
            return False
        raise
    return True


NOT_JSON = "not JSON"


def _read_json_object(s3: Any, bucket: str, key: str) -> Any:
    """A small JSON object's content, None when the key does not exist, NOT_JSON when it is not JSON."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response["Error"]["Code"] in NOT_FOUND_CODES:
            return None
        raise
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return NOT_JSON


def read_manifest(s3: Any, bucket: str, adapter_name: str) -> Any:
    """adapters/<name>/manifest.json as written by the pipeline, or None when there is none."""
    return _read_json_object(s3, bucket, MANIFEST_KEY.format(adapter_name))


def _same_model(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def base_adapter_problems(request: Mapping[str, Any], document: Any, data_bucket: str) -> list[str]:
    """Whether the adapter a request continues exists, is a LoRA adapter and fits its base model."""
    name = request["base_adapter"]
    where = f"s3://{data_bucket}/{MANIFEST_KEY.format(name)}"
    if document is None:
        return [f"base_adapter: {where} does not exist; name an adapter this pipeline trained"]
    if not isinstance(document, dict) or not all(
        isinstance(document.get(k), str) for k in ("model_artifact", "base_model")
    ):
        return [f"base_adapter: {where} is not a manifest of this pipeline (model_artifact, base_model)"]
    known, recipe = _recipes(), document.get("recipe")
    if recipe in known and known[recipe].finetuning_type != "lora":
        return [f"base_adapter: {name} was trained by recipe {recipe!r}: a full model, not a LoRA adapter"]
    if not _same_model(document["base_model"], request["base_model"]):
        return [
            f"base_adapter: {name} was trained on base_model {document['base_model']}; "
            f"an adapter only fits that model, and this request's base_model is {request['base_model']}"
        ]
    artifact = TRAINING_ARTIFACT.match(document["model_artifact"])
    if not artifact or artifact["bucket"] != data_bucket:
        return [
            f"base_adapter: {where} names model_artifact {document['model_artifact']}; training jobs read "
            f"adapters from s3://{data_bucket}/training/ only"
        ]
    return []


def _folder_has_objects(s3: Any, bucket: str, prefix: str) -> bool:
    return s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0


def online_problems(
    request: Mapping[str, Any], s3: Any, data_bucket: str, *, base_manifest: Any = None
) -> list[str]:
    """Datasets and an S3 base model exist; a base adapter exists and fits; adapters/<adapter_name>/
    manifest.json (that key) does not.

    Only for a request `request_problems` found valid. `base_manifest`: what `read_manifest` returned for
    the request's base_adapter (read once by the caller, which plans the job from it). Access errors are
    raised: they are the deployment's problem, not the request's.
    """
    found = []
    for name in ("train_data", "validation_data"):
        if name not in request:
            continue
        key = S3_URI.match(request[name])["key"]
        if key.endswith("/"):
            if not _folder_has_objects(s3, data_bucket, key):
                found.append(f"{name}: no objects under {request[name]}")
        elif not _object_exists(s3, data_bucket, key):
            if _folder_has_objects(s3, data_bucket, key + "/"):
                found.append(f"{name}: {request[name]} is a folder; end the URI with '/' to train on it")
            else:
                found.append(f"{name}: {request[name]} does not exist")
    if request["base_model"].startswith("s3://"):
        folder = model_folder(request["base_model"])
        config = _read_json_object(s3, data_bucket, S3_URI.match(folder)["key"] + "config.json")
        if config is None:
            found.append(
                f"base_model: {folder}config.json does not exist; the folder must hold a Hugging Face model"
            )
        else:
            # Quantized checkpoints the image cannot train are refused here, before a job starts.
            recipe = _recipes()[request["recipe"]]
            problem = model_problem(config, finetuning_type=recipe.finetuning_type)
            if problem:
                found.append(f"base_model: {folder}config.json: {problem}")
    if "base_adapter" in request:
        found += base_adapter_problems(request, base_manifest, data_bucket)
    manifest = MANIFEST_KEY.format(request["adapter_name"])
    if _object_exists(s3, data_bucket, manifest):
        found.append(
            f"adapter_name: s3://{data_bucket}/{manifest} exists already; adapters are never overwritten, "
            "choose a new adapter_name"
        )
    return found


# ---------------------------------------------------------------------------------------------------
# The plan: what the state machine's training Task takes from a valid request


def model_folder(uri: str) -> str:
    """An S3 base model is a folder: the channel must not also match `models/<name>-other/`."""
    return uri if uri.endswith("/") else uri + "/"


def default_job_name(adapter_name: str, started: datetime, max_length: int) -> str:
    """`<adapter>-<yyyymmddHHMMSS>`: readable in the console, the same for every retry of one execution."""
    stamp = started.strftime("%Y%m%d%H%M%S")
    head = adapter_name[: max_length - len(stamp) - 1].rstrip("-")
    return f"{head}-{stamp}"


def weights_kind(request: Mapping[str, Any]) -> str:
    """What the job's model archive holds: `adapter`, `adapter_and_merged` (merge_adapter) or `full`."""
    recipe = _recipes()[request["recipe"]]
    if recipe.finetuning_type != "lora":
        return "full"
    try:
        merged = parse_value(
            "merge_adapter", request.get("hyperparameters", {}).get("merge_adapter", "false"), bool
        )
    except ConfigError:
        merged = False
    return "adapter_and_merged" if merged else "adapter"


def _channel(name: str, uri: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def plan_job(
    request: Mapping[str, Any],
    deployment: Deployment,
    *,
    data_bucket: str,
    volume_kms_key: str,
    started: datetime,
    base_adapter_artifact: str | None = None,
) -> dict[str, Any]:
    """The per-request parts of CreateTrainingJob (the state machine adds role, image, network, output).

    `base_adapter_artifact`: the model.tar.gz of the request's base_adapter (from its manifest)."""
    request = with_defaults(request, deployment)
    job_name = request.get("job_name") or default_job_name(
        request["adapter_name"], started, deployment.job_name_max
    )
    channels = [_channel("train", request["train_data"])]
    if "validation_data" in request:
        channels.append(_channel("validation", request["validation_data"]))
    if request["base_model"].startswith("s3://"):
        channels.append(_channel("model", model_folder(request["base_model"])))
    if base_adapter_artifact:
        channels.append(_channel(ADAPTER_CHANNEL, base_adapter_artifact))
    resources = {
        "InstanceType": request["instance_type"],
        "InstanceCount": int(request["instance_count"]),
        "VolumeSizeInGB": deployment.volume_size_gb,
    }
    if request["instance_type"] not in deployment.local_storage_instance_types:
        resources["VolumeKmsKeyId"] = volume_kms_key
    runtime = int(request["max_runtime_hours"]) * 3600
    stopping = {"MaxRuntimeInSeconds": runtime}
    if request["use_spot"]:
        # Spot jobs may wait for capacity on top of their runtime.
        stopping["MaxWaitTimeInSeconds"] = runtime + deployment.spot_extra_wait_hours * 3600
    plan = {
        "adapter_name": request["adapter_name"],
        "recipe": request["recipe"],
        "weights": weights_kind(request),
        "base_model": request["base_model"],
        "job_name": job_name,
        "hyperparameters": job_hyperparameters(request),
        "channels": channels,
        "resources": resources,
        "stopping": stopping,
        "use_spot": request["use_spot"],
        # Named after the first attempt: a capacity retry resumes from the same checkpoints.
        "checkpoint_uri": f"s3://{data_bucket}/checkpoints/{job_name}/",
    }
    if "base_adapter" in request:
        plan["base_adapter"] = request["base_adapter"]
    return plan


def manifest(plan: Mapping[str, Any], description: Mapping[str, Any], execution_arn: str) -> dict:
    """The adapter manifest (the contract read by the inference stack) from the plan and the job."""
    document = {
        "adapter_name": plan["adapter_name"],
        "model_artifact": description["ModelArtifacts"]["S3ModelArtifacts"],
        "training_job_name": description["TrainingJobName"],
        "base_model": plan["base_model"],
        "recipe": plan["recipe"],
        "weights": plan["weights"],
        "execution_arn": execution_arn,
        "final_metrics": [
            {"name": metric["MetricName"], "value": metric["Value"]}
            for metric in description.get("FinalMetricDataList", [])
        ],
    }
    if plan.get("base_adapter"):
        # Lineage: the adapter this one continued (e.g. the SFT adapter under a DPO run).
        document["base_adapter"] = plan["base_adapter"]
    return document
