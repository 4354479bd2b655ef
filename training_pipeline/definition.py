"""The training pipeline's state machine, as Amazon States Language, from the request schema and settings.

Pure: settings in, a definition dict out. Deployment values are `${Name}` placeholders that the CDK
construct fills through DefinitionSubstitutions, so tests can render the very same definition with their
own values and run it in moto's Step Functions interpreter.

Why aws-sdk calls and a polling loop rather than `createTrainingJob.sync`: the .sync integration cannot
be executed offline (moto has no job poller for it), and the loop lets the state machine see a job's
FailureReason to retry capacity errors with a new job that resumes from the same checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training_pipeline.request import BUCKET_PLACEHOLDER, defaults

REQUEST = "$.request"
# Errors worth retrying: API throttling and account limits (e.g. concurrent jobs) that clear with time.
SAGEMAKER_RETRYABLE = ["SageMaker.ThrottlingException", "SageMaker.ResourceLimitExceededException"]
S3_RETRYABLE = ["S3.SlowDownException"]
# A job that SageMaker could not place on instances: retried as a new job (same checkpoints).
CAPACITY_FAILURES = ["CapacityError*", "InsufficientCapacityError*"]
FAILED_JOB = "Training failed"
CHECKPOINT_DIR = "/opt/ml/checkpoints"

# Placeholders filled by the construct (DefinitionSubstitutions).
TRAINING_IMAGE = "${TrainingImage}"
TRAINING_ROLE = "${TrainingRoleArn}"
KMS_KEY = "${KmsKeyArn}"
TOPIC = "${TopicArn}"
SECURITY_GROUP = "${SecurityGroupId}"
HF_TOKEN_SECRET = "${HfTokenSecretArn}"


def subnet_placeholder(index: int) -> str:
    return f"${{Subnet{index}}}"


# Step Functions ends a Standard execution at 25,000 history events. One pass of the polling loop
# (Wait, describeTrainingJob, Choice) adds 9; every other state of the machine together stays far under 1,000.
HISTORY_EVENT_LIMIT = 25_000
EVENTS_PER_POLL = 9
EVENTS_OUTSIDE_POLLING = 1_000
MIN_POLL_SECONDS = 60


@dataclass(frozen=True)
class PipelineSettings:
    schema: Mapping[str, Any]
    metric_definitions: Sequence[Mapping[str, str]]
    subnet_count: int
    volume_size_gb: int
    spot_extra_wait_hours: int
    # Instance types with local NVMe storage: SageMaker refuses a VolumeKmsKeyId for them (their
    # volumes are encrypted by the instance's hardware).
    local_storage_instance_types: Sequence[str] = ()
    with_hf_token_secret: bool = False
    capacity_attempts: int = 3
    capacity_wait_seconds: int = 600

    @property
    def max_runtime_hours(self) -> int:
        return int(self.schema["properties"]["max_runtime_hours"]["maximum"])

    @property
    def timeout_seconds(self) -> int:
        """Long enough for every capacity attempt to run its full time (spot waits included)."""
        per_job = (self.max_runtime_hours + self.spot_extra_wait_hours) * 3600 + self.capacity_wait_seconds
        return per_job * self.capacity_attempts + 3600

    @property
    def poll_seconds(self) -> int:
        """The shortest whole-minute poll that keeps the longest allowed execution in the history limit."""
        polls_allowed = (HISTORY_EVENT_LIMIT - EVENTS_OUTSIDE_POLLING) // EVENTS_PER_POLL
        return max(MIN_POLL_SECONDS, math.ceil(self.timeout_seconds / polls_allowed / 60) * 60)


# ---------------------------------------------------------------------------------------------------
# Request validation: one Choice state per field, generated from the schema.


def _type_failure(var: str, kind: str) -> dict | None:
    """A condition that is true when the value is NOT of the JSON type (what ASL can test)."""
    if kind == "string":
        return {"Not": {"Variable": var, "IsString": True}}
    if kind in ("integer", "number"):
        return {"Not": {"Variable": var, "IsNumeric": True}}
    if kind == "boolean":
        return {"Not": {"Variable": var, "IsBoolean": True}}
    if kind == "object":
        # ASL has no IsObject: rule out every other JSON type it can name.
        return {
            "Or": [
                {"Variable": var, "IsString": True},
                {"Variable": var, "IsNumeric": True},
                {"Variable": var, "IsBoolean": True},
                {"Variable": var, "IsNull": True},
            ]
        }
    return None


def _any_of(conditions: list[dict]) -> dict:
    return conditions[0] if len(conditions) == 1 else {"Or": conditions}


def _glob_condition(var: str, rule: Mapping[str, str]) -> dict:
    """True when the value breaks the `x-asl` rule."""
    if "matches" in rule:
        broken = {"Not": {"Variable": var, "StringMatches": rule["matches"]}}
    else:
        broken = {"Variable": var, "StringMatches": rule["not_matches"]}
    if "when" in rule:
        return {"And": [{"Variable": var, "StringMatches": rule["when"]}, broken]}
    return broken


def field_checks(name: str, prop: Mapping[str, Any], required: bool) -> list[tuple[dict, str]]:
    """(condition that means 'invalid', rule text) for one field, in the order they are checked."""
    var = f"{REQUEST}.{name}"
    checks: list[tuple[dict, str]] = []
    if required:
        checks.append(({"Not": {"Variable": var, "IsPresent": True}}, "is required"))
    kind = prop.get("type")
    type_failure = _type_failure(var, kind)
    if type_failure:
        article = "an" if kind[0] in "aeiou" else "a"
        checks.append((type_failure, f"must be {article} {kind}"))
    if "enum" in prop:
        allowed = [{"Variable": var, "StringEquals": value} for value in prop["enum"]]
        checks.append(({"Not": _any_of(allowed)}, f"must be one of: {', '.join(prop['enum'])}"))
    if prop.get("minLength", 0) >= 1:
        checks.append(({"Variable": var, "StringEquals": ""}, "must not be empty"))
    if "minimum" in prop:
        checks.append(
            ({"Variable": var, "NumericLessThan": prop["minimum"]}, f"must be at least {prop['minimum']}")
        )
    if "maximum" in prop:
        checks.append(
            ({"Variable": var, "NumericGreaterThan": prop["maximum"]}, f"must be at most {prop['maximum']}")
        )
    for rule in prop.get("x-asl", []):
        checks.append((_glob_condition(var, rule), rule["rule"]))
    return checks


def validation_states(schema: Mapping[str, Any], next_state: str) -> tuple[str, dict[str, dict]]:
    """Choice and Fail states checking every field of the request; returns (first state, states)."""
    required = set(schema.get("required", []))
    names = list(schema["properties"])
    states: dict[str, dict] = {}
    for index, name in enumerate(names):
        after = f"Check {names[index + 1]}" if index + 1 < len(names) else next_state
        choices = []
        if name not in required:
            # An optional field left out (no default) has nothing to check.
            choices.append({"Not": {"Variable": f"{REQUEST}.{name}", "IsPresent": True}, "Next": after})
        for number, (condition, rule) in enumerate(
            field_checks(name, schema["properties"][name], name in required), 1
        ):
            fail = f"Invalid {name} {number}"
            states[fail] = {"Type": "Fail", "Error": f"InvalidRequest.{name}", "Cause": f"{name}: {rule}"}
            choices.append({**condition, "Next": fail})
        prop = schema["properties"][name]
        if prop.get("type") == "integer":
            # ASL compares numbers but cannot tell 1.5 from 1: test the number's text for a point.
            states[f"Check {name}"] = {"Type": "Choice", "Choices": choices, "Default": f"Text of {name}"}
            states[f"Text of {name}"] = {
                "Type": "Pass",
                "Parameters": {"text.$": f"States.Format('{{}}', {REQUEST}.{name})"},
                "ResultPath": f"$.checks.{name}",
                "Next": f"Check {name} is whole",
            }
            fail = f"Invalid {name} whole"
            states[fail] = {
                "Type": "Fail",
                "Error": f"InvalidRequest.{name}",
                "Cause": f"{name}: must be an integer",
            }
            states[f"Check {name} is whole"] = {
                "Type": "Choice",
                "Choices": [{"Variable": f"$.checks.{name}.text", "StringMatches": "*.*", "Next": fail}],
                "Default": after,
            }
        else:
            states[f"Check {name}"] = {"Type": "Choice", "Choices": choices, "Default": after}
    return f"Check {names[0]}", states


# ---------------------------------------------------------------------------------------------------
# The job: inputs, resources, stopping condition, then create / wait / describe.


def _channel(name: str, uri_path: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri.$": uri_path,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def _input_states(next_state: str) -> dict[str, dict]:
    """Hyperparameters and channels: the base model is a `model` channel (S3) or a `model_id` (Hub)."""
    base_model_in_s3 = {"Variable": f"{REQUEST}.base_model", "StringMatches": "s3://*"}
    has_validation = {"Variable": f"{REQUEST}.validation_data", "IsPresent": True}
    states: dict[str, dict] = {
        "Base model source": {
            "Type": "Choice",
            "Choices": [{**base_model_in_s3, "Next": "Base model from S3"}],
            "Default": "Base model from the Hub",
        },
        "Base model from S3": {
            "Type": "Pass",
            "Parameters": {"recipe.$": f"{REQUEST}.recipe"},
            "ResultPath": "$.fixed_hyperparameters",
            "Next": "Channels",
        },
        "Base model from the Hub": {
            "Type": "Pass",
            "Parameters": {"recipe.$": f"{REQUEST}.recipe", "model_id.$": f"{REQUEST}.base_model"},
            "ResultPath": "$.fixed_hyperparameters",
            "Next": "Channels",
        },
    }
    variants = {
        "Channels train validation model": (True, True),
        "Channels train model": (False, True),
        "Channels train validation": (True, False),
        "Channels train": (False, False),
    }
    choices = []
    for state_name, (validation, model) in variants.items():
        conditions = [has_validation if validation else {"Not": has_validation}]
        conditions.append(base_model_in_s3 if model else {"Not": base_model_in_s3})
        choices.append({"And": conditions, "Next": state_name})
        channels = [_channel("train", f"{REQUEST}.train_data")]
        if validation:
            channels.append(_channel("validation", f"{REQUEST}.validation_data"))
        if model:
            channels.append(_channel("model", f"{REQUEST}.base_model"))
        states[state_name] = {
            "Type": "Pass",
            "Parameters": {
                "channels": channels,
                # The request's own keys lose to recipe/model_id (the schema forbids them there anyway).
                "hyperparameters.$": (
                    f"States.JsonMerge({REQUEST}.hyperparameters, $.fixed_hyperparameters, false)"
                ),
            },
            "ResultPath": "$.inputs",
            "Next": next_state,
        }
    states["Channels"] = {"Type": "Choice", "Choices": choices, "Default": "Channels train"}
    return states


def _resource_states(settings: PipelineSettings, next_state: str) -> tuple[str, dict[str, dict]]:
    base = {
        "InstanceType.$": f"{REQUEST}.instance_type",
        "InstanceCount.$": f"{REQUEST}.instance_count",
        "VolumeSizeInGB": settings.volume_size_gb,
    }
    encrypted = {
        "Type": "Pass",
        "Parameters": {**base, "VolumeKmsKeyId": KMS_KEY},
        "ResultPath": "$.resources",
        "Next": next_state,
    }
    local = [
        t
        for t in settings.schema["properties"]["instance_type"]["enum"]
        if t in settings.local_storage_instance_types
    ]
    if not local:
        return "Resources on EBS with the project key", {"Resources on EBS with the project key": encrypted}
    conditions = [{"Variable": f"{REQUEST}.instance_type", "StringEquals": t} for t in local]
    states = {
        "Instance storage": {
            "Type": "Choice",
            "Choices": [{**_any_of(conditions), "Next": "Resources on local NVMe"}],
            "Default": "Resources on EBS with the project key",
        },
        "Resources on local NVMe": {
            "Type": "Pass",
            "Comment": "Local instance storage is encrypted by the instance; no VolumeKmsKeyId allowed",
            "Parameters": base,
            "ResultPath": "$.resources",
            "Next": next_state,
        },
        "Resources on EBS with the project key": encrypted,
    }
    return "Instance storage", states


def _stopping_states(settings: PipelineSettings, next_state: str) -> dict[str, dict]:
    # ASL has no multiplication: hours -> seconds by indexing a range of multiples of 3600.
    runtime = (
        f"States.ArrayGetItem(States.ArrayRange(0, {settings.max_runtime_hours * 3600}, 3600), "
        f"{REQUEST}.max_runtime_hours)"
    )
    return {
        "Spot or on demand": {
            "Type": "Choice",
            "Choices": [
                {"Variable": f"{REQUEST}.use_spot", "BooleanEquals": True, "Next": "Stop after spot"}
            ],
            "Default": "Stop after on demand",
        },
        "Stop after spot": {
            "Type": "Pass",
            "Parameters": {
                "MaxRuntimeInSeconds.$": runtime,
                # Spot jobs may wait for capacity on top of their runtime.
                "MaxWaitTimeInSeconds.$": (
                    f"States.MathAdd({runtime}, {settings.spot_extra_wait_hours * 3600})"
                ),
            },
            "ResultPath": "$.stopping",
            "Next": next_state,
        },
        "Stop after on demand": {
            "Type": "Pass",
            "Parameters": {"MaxRuntimeInSeconds.$": runtime},
            "ResultPath": "$.stopping",
            "Next": next_state,
        },
    }


def create_job_parameters(settings: PipelineSettings) -> dict:
    """CreateTrainingJob's request, from the planned inputs, resources and stopping condition."""
    bucket = BUCKET_PLACEHOLDER
    parameters: dict[str, Any] = {
        "TrainingJobName.$": "$.attempt.job_name",
        "RoleArn": TRAINING_ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": TRAINING_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in settings.metric_definitions],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters.$": "$.inputs.hyperparameters",
        "InputDataConfig.$": "$.inputs.channels",
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/training/", "KmsKeyId": KMS_KEY},
        "ResourceConfig.$": "$.resources",
        "StoppingCondition.$": "$.stopping",
        "EnableManagedSpotTraining.$": f"{REQUEST}.use_spot",
        # Named after the first attempt: a capacity retry resumes from the same checkpoints.
        "CheckpointConfig": {
            "S3Uri.$": f"States.Format('s3://{bucket}/checkpoints/{{}}/', $.naming.job_name)",
            "LocalPath": CHECKPOINT_DIR,
        },
        "VpcConfig": {
            "SecurityGroupIds": [SECURITY_GROUP],
            "Subnets": [subnet_placeholder(i) for i in range(settings.subnet_count)],
        },
        # Nodes of a multi-node job exchange gradients: encrypt that traffic too.
        "EnableInterContainerTrafficEncryption": True,
        # The image fetches Hub models and the Hugging Face token, so the job needs the network.
        "EnableNetworkIsolation": False,
        "Tags": [
            {"Key": "llmft:execution-arn", "Value.$": "$$.Execution.Id"},
            {"Key": "llmft:execution-name", "Value.$": "$$.Execution.Name"},
            {"Key": "llmft:adapter-name", "Value.$": f"{REQUEST}.adapter_name"},
        ],
    }
    if settings.with_hf_token_secret:
        parameters["Environment"] = {"HF_TOKEN_SECRET_ARN": HF_TOKEN_SECRET}
    return parameters


def _failure(error: str, reason_path: str) -> dict:
    """What a failure notification says (and the Fail state's error and cause)."""
    return {
        "error": error,
        "failure_reason.$": reason_path,
        "execution_arn.$": "$$.Execution.Id",
        "adapter_name.$": f"{REQUEST}.adapter_name",
        "training_job_name.$": "$.attempt.job_name",
    }


def _retry(errors: list[str]) -> list[dict]:
    return [{"ErrorEquals": errors, "IntervalSeconds": 30, "MaxAttempts": 6, "BackoffRate": 2.0}]


def _job_states(settings: PipelineSettings) -> dict[str, dict]:
    bucket = BUCKET_PLACEHOLDER
    manifest_key = f"States.Format('adapters/{{}}/manifest.json', {REQUEST}.adapter_name)"
    job = "$.job"
    return {
        "Create training job": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:sagemaker:createTrainingJob",
            "Parameters": create_job_parameters(settings),
            "ResultSelector": {"arn.$": "$.TrainingJobArn"},
            "ResultPath": "$.created",
            "Retry": _retry(SAGEMAKER_RETRYABLE),
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Job not created"}],
            "Next": "Wait for job",
        },
        "Job not created": {
            "Type": "Pass",
            "Parameters": _failure("TrainingJobNotCreated", "$.error.Cause"),
            "ResultPath": "$.failure",
            "Next": "Notify failure",
        },
        "Wait for job": {"Type": "Wait", "Seconds": settings.poll_seconds, "Next": "Describe job"},
        "Describe job": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob",
            "Parameters": {"TrainingJobName.$": "$.attempt.job_name"},
            "ResultSelector": {
                "TrainingJobName.$": "$.TrainingJobName",
                "TrainingJobStatus.$": "$.TrainingJobStatus",
                "SecondaryStatus.$": "$.SecondaryStatus",
                "Description.$": "$",
            },
            "ResultPath": job,
            "Retry": _retry(SAGEMAKER_RETRYABLE),
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Job not described"}],
            "Next": "Job status",
        },
        "Job not described": {
            "Type": "Pass",
            "Parameters": _failure("TrainingJobUnknown", "$.error.Cause"),
            "ResultPath": "$.failure",
            "Next": "Notify failure",
        },
        "Job status": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{job}.TrainingJobStatus",
                    "StringEquals": "Completed",
                    "Next": "Final metrics present",
                },
                {
                    "Variable": f"{job}.TrainingJobStatus",
                    "StringEquals": "Failed",
                    "Next": "Failure reason known",
                },
                {
                    "Variable": f"{job}.TrainingJobStatus",
                    "StringEquals": "Stopped",
                    "Next": "Failure reason known",
                },
            ],
            "Default": "Wait for job",
        },
        "Failure reason known": {
            "Type": "Choice",
            "Choices": [
                {
                    "Not": {"Variable": f"{job}.Description.FailureReason", "IsPresent": True},
                    "Next": "Job ended without a reason",
                }
            ],
            "Default": "Capacity error",
        },
        "Capacity error": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        _any_of(
                            [
                                {"Variable": f"{job}.Description.FailureReason", "StringMatches": pattern}
                                for pattern in CAPACITY_FAILURES
                            ]
                        ),
                        {"Variable": "$.attempt.number", "NumericLessThan": settings.capacity_attempts},
                    ],
                    "Next": "Wait for capacity",
                }
            ],
            "Default": "Job ended",
        },
        "Wait for capacity": {
            "Type": "Wait",
            "Seconds": settings.capacity_wait_seconds,
            "Next": "Next attempt",
        },
        "Next attempt": {
            "Type": "Pass",
            "Parameters": {
                "number.$": "States.MathAdd($.attempt.number, 1)",
                "job_name.$": (
                    "States.Format('{}-r{}', $.naming.job_name, States.MathAdd($.attempt.number, 1))"
                ),
            },
            "ResultPath": "$.attempt",
            "Next": "Create training job",
        },
        "Job ended": {
            "Type": "Pass",
            "Parameters": {
                **_failure("TrainingJobFailed", f"{job}.Description.FailureReason"),
                "status.$": f"{job}.TrainingJobStatus",
                "secondary_status.$": f"{job}.SecondaryStatus",
            },
            "ResultPath": "$.failure",
            "Next": "Notify failure",
        },
        "Job ended without a reason": {
            "Type": "Pass",
            "Parameters": {
                **_failure(
                    "TrainingJobFailed",
                    f"States.Format('training job {{}} ended {{}} ({{}})', $.attempt.job_name, "
                    f"{job}.TrainingJobStatus, {job}.SecondaryStatus)",
                ),
                "status.$": f"{job}.TrainingJobStatus",
                "secondary_status.$": f"{job}.SecondaryStatus",
            },
            "ResultPath": "$.failure",
            "Next": "Notify failure",
        },
        "Notify failure": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish",
            "Parameters": {
                "TopicArn": TOPIC,
                "Subject": "LLM fine-tuning: training failed",
                "Message.$": "States.JsonToString($.failure)",
            },
            "ResultPath": None,
            # The execution fails with the job's reason even when the notification cannot be sent.
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": FAILED_JOB}],
            "Next": FAILED_JOB,
        },
        FAILED_JOB: {"Type": "Fail", "ErrorPath": "$.failure.error", "CausePath": "$.failure.failure_reason"},
        "Final metrics present": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{job}.Description.FinalMetricDataList",
                    "IsPresent": True,
                    "Next": "Final metrics",
                }
            ],
            "Default": "No final metrics",
        },
        "Final metrics": {
            "Type": "Map",
            "Comment": "Name and value of each metric (its timestamp is of no use to a reader)",
            "ItemsPath": f"{job}.Description.FinalMetricDataList",
            "ItemSelector": {"name.$": "$$.Map.Item.Value.MetricName", "value.$": "$$.Map.Item.Value.Value"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Metric",
                "States": {"Metric": {"Type": "Pass", "End": True}},
            },
            "ResultPath": "$.metrics.list",
            "Next": "Adapter manifest",
        },
        "No final metrics": {
            "Type": "Pass",
            "Parameters": {"list": []},
            "ResultPath": "$.metrics",
            "Next": "Adapter manifest",
        },
        "Adapter manifest": {
            "Type": "Pass",
            "Comment": "The contract read by the inference stack (EventBridge: adapters/*/manifest.json)",
            "Parameters": {
                "adapter_name.$": f"{REQUEST}.adapter_name",
                "model_artifact.$": f"{job}.Description.ModelArtifacts.S3ModelArtifacts",
                "training_job_name.$": f"{job}.TrainingJobName",
                "base_model.$": f"{REQUEST}.base_model",
                "recipe.$": f"{REQUEST}.recipe",
                "execution_arn.$": "$$.Execution.Id",
                "final_metrics.$": "$.metrics.list",
            },
            "ResultPath": "$.manifest",
            "Next": "Write manifest",
        },
        "Write manifest": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
            "Parameters": {
                "Bucket": bucket,
                "Key.$": manifest_key,
                "Body.$": "States.JsonToString($.manifest)",
                "ContentType": "application/json",
                # Never overwrite: a manifest written meanwhile by another execution wins, loudly.
                "IfNoneMatch": "*",
            },
            "ResultPath": None,
            "Retry": _retry(S3_RETRYABLE),
            "Catch": [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Manifest not written"}
            ],
            "Next": "Notify success",
        },
        "Manifest not written": {
            "Type": "Pass",
            "Parameters": _failure("ManifestNotWritten", "$.error.Cause"),
            "ResultPath": "$.failure",
            "Next": "Notify failure",
        },
        "Notify success": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish",
            "Parameters": {
                "TopicArn": TOPIC,
                "Subject": "LLM fine-tuning: adapter ready",
                "Message.$": "States.JsonToString($.manifest)",
            },
            "ResultPath": None,
            # The execution's output is the manifest.
            "OutputPath": "$.manifest",
            "Next": "Adapter ready",
        },
        "Adapter ready": {"Type": "Succeed"},
    }


def build_definition(settings: PipelineSettings) -> dict:
    """The whole state machine: defaults, validation, adapter check, planning, the job loop, outcome."""
    bucket = BUCKET_PLACEHOLDER
    first_check, checks = validation_states(settings.schema, "Look up adapter")
    resources_start, resource_states = _resource_states(settings, "Spot or on demand")
    states: dict[str, dict] = {
        "Apply defaults": {
            "Type": "Pass",
            "Parameters": {"defaults": defaults(settings.schema), "request.$": "$"},
            "Next": "Merge defaults",
        },
        "Merge defaults": {
            "Type": "Pass",
            "Parameters": {"request.$": "States.JsonMerge($.defaults, $.request, false)"},
            "Next": first_check,
        },
        **checks,
        "Look up adapter": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:listObjectsV2",
            "Parameters": {
                "Bucket": bucket,
                "Prefix.$": f"States.Format('adapters/{{}}/manifest.json', {REQUEST}.adapter_name)",
                "MaxKeys": 1,
            },
            "ResultSelector": {"count.$": "$.KeyCount"},
            "ResultPath": "$.existing",
            "Retry": _retry(S3_RETRYABLE),
            # Nothing has started yet: end with S3's reason, as a refused request does.
            "Catch": [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Adapter lookup failed"}
            ],
            "Next": "Adapter is new",
        },
        "Adapter lookup failed": {
            "Type": "Fail",
            "Error": "AdapterLookupFailed",
            "CausePath": "$.error.Cause",
        },
        "Adapter is new": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.existing.count", "NumericGreaterThan": 0, "Next": "Adapter name taken"}
            ],
            "Default": "Job name given",
        },
        "Adapter name taken": {
            "Type": "Pass",
            "Parameters": {
                "cause.$": (
                    "States.Format('adapter_name: adapters/{}/manifest.json exists already; adapters are "
                    f"never overwritten, choose a new adapter_name', {REQUEST}.adapter_name)"
                )
            },
            "Next": "Adapter exists",
        },
        "Adapter exists": {"Type": "Fail", "Error": "InvalidRequest.adapter_name", "CausePath": "$.cause"},
        "Job name given": {
            "Type": "Choice",
            "Choices": [
                {"Variable": f"{REQUEST}.job_name", "IsPresent": True, "Next": "Use the given job name"}
            ],
            "Default": "Generate a job name",
        },
        "Use the given job name": {
            "Type": "Pass",
            "Parameters": {"job_name.$": f"{REQUEST}.job_name"},
            "ResultPath": "$.naming",
            "Next": "First attempt",
        },
        "Generate a job name": {
            "Type": "Pass",
            "Parameters": {"job_name.$": "States.Format('llmft-{}', States.UUID())"},
            "ResultPath": "$.naming",
            "Next": "First attempt",
        },
        "First attempt": {
            "Type": "Pass",
            "Parameters": {"number": 1, "job_name.$": "$.naming.job_name"},
            "ResultPath": "$.attempt",
            "Next": "Base model source",
        },
        **_input_states(resources_start),
        **resource_states,
        **_stopping_states(settings, "Create training job"),
        **_job_states(settings),
    }
    return {
        "Comment": "Validates a training request, runs a training job, records the adapter, notifies",
        "StartAt": "Apply defaults",
        "TimeoutSeconds": settings.timeout_seconds,
        "States": states,
    }
