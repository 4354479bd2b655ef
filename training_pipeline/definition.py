"""The training pipeline's state machine, as Amazon States Language. Pure: settings in, a definition dict out.

    Receive request -> Validate request (Lambda: the one judge) -> Request valid?
      -> Invalid request (Fail: every problem), or
      -> Train (sagemaker:createTrainingJob.sync) -> Record adapter (Lambda: the manifest) -> Notify success
         \\-> a capacity failure with attempts left: Wait for capacity -> Next attempt -> Train
    any other failure -> Failure report -> Notify failure -> Failed

Deployment values are `${Name}` placeholders that the CDK construct fills (the partition with
`AWS::Partition`, the rest through DefinitionSubstitutions), so tests render the very definition that
deploys. The job runs through Step
Functions' optimized `.sync` integration: Step Functions waits for the job, and stopping the execution
stops the job (why its role may call sagemaker:StopTrainingJob).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from training_pipeline.request import CHECKPOINT_DIR, Deployment

# Placeholders filled by the construct (DefinitionSubstitutions).
PARTITION = "${Partition}"
DATA_BUCKET = "${DataBucket}"
TRAINING_IMAGE = "${TrainingImage}"
TRAINING_ROLE = "${TrainingRoleArn}"
KMS_KEY = "${KmsKeyArn}"
TOPIC = "${TopicArn}"
SECURITY_GROUP = "${SecurityGroupId}"
HF_TOKEN_SECRET = "${HfTokenSecretArn}"
VALIDATOR = "${ValidatorFunctionArn}"
RECORDER = "${RecorderFunctionArn}"

TRAIN = "Train"
FAILURE = "Failure report"
# A job SageMaker could not place on instances fails with one of these reasons (CapacityError,
# InsufficientCapacityError); it is retried as a new job that resumes from the same checkpoints.
CAPACITY_FAILURE = "*CapacityError*"

# Retry names, each one an error its call raises:
# - lambda:invoke: ServiceException and TooManyRequestsException are Invoke's modeled errors (botocore's
#   lambda model); AWSLambdaException, SdkClientException and ClientExecutionTimeoutException are the
#   transient errors Step Functions' Lambda best practice names (and aws-cdk-lib's LambdaInvoke retries).
LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.TooManyRequestsException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
]
# - sagemaker:createTrainingJob.sync: ResourceLimitExceeded is CreateTrainingJob's modeled error (botocore's
#   sagemaker model) for account quotas that clear as other jobs end; AmazonSageMakerException is how the
#   optimized integration reports the rest, throttling included (both named in the Step Functions guide's
#   "SageMaker AI Training Job Example" for this very integration).
SAGEMAKER_QUOTA = ["SageMaker.ResourceLimitExceededException"]
SAGEMAKER_THROTTLED = ["SageMaker.AmazonSageMakerException"]
# - sns:publish: States.TaskFailed matches every error a Task raises but States.Timeout (Step Functions
#   error handling); a notification is safe to send again.
ANY_TASK_FAILURE = ["States.TaskFailed"]


@dataclass(frozen=True)
class PipelineSettings:
    deployment: Deployment
    metric_definitions: Sequence[Mapping[str, str]]
    subnet_count: int
    with_hf_token_secret: bool = False
    capacity_wait_seconds: int = 600

    @property
    def timeout_seconds(self) -> int:
        """Long enough for every capacity attempt to run its full time (spot waits included)."""
        d = self.deployment
        per_job = (d.max_runtime_hours + d.spot_extra_wait_hours) * 3600 + self.capacity_wait_seconds
        return per_job * d.capacity_attempts + 3600


def subnet_placeholder(index: int) -> str:
    return f"${{Subnet{index}}}"


def integration(name: str) -> str:
    """An integration's Resource, in the stack's partition."""
    return f"arn:{PARTITION}:states:::{name}"


def _retry(errors: list[str], interval: int, attempts: int, max_delay: int = 900) -> dict:
    return {
        "ErrorEquals": errors,
        "IntervalSeconds": interval,
        "MaxAttempts": attempts,
        "BackoffRate": 2.0,
        "MaxDelaySeconds": max_delay,
    }


def _catch(next_state: str, result_path: str | None = "$.error") -> list[dict]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


def create_job_parameters(settings: PipelineSettings) -> dict:
    """CreateTrainingJob's request: the deployment's fixed parts and the validated plan's."""
    parameters = {
        "TrainingJobName.$": "$.attempt.job_name",
        "RoleArn": TRAINING_ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": TRAINING_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in settings.metric_definitions],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters.$": "$.plan.hyperparameters",
        "InputDataConfig.$": "$.plan.channels",
        "OutputDataConfig": {"S3OutputPath": f"s3://{DATA_BUCKET}/training/", "KmsKeyId": KMS_KEY},
        "ResourceConfig.$": "$.plan.resources",
        "StoppingCondition.$": "$.plan.stopping",
        "EnableManagedSpotTraining.$": "$.plan.use_spot",
        "CheckpointConfig": {"S3Uri.$": "$.plan.checkpoint_uri", "LocalPath": CHECKPOINT_DIR},
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
            {"Key": "llmft:adapter-name", "Value.$": "$.plan.adapter_name"},
        ],
    }
    if settings.with_hf_token_secret:
        parameters["Environment"] = {"HF_TOKEN_SECRET_ARN": HF_TOKEN_SECRET}
    return parameters


def _notify(subject: str, message_path: str, next_state: str) -> dict:
    return {
        "Type": "Task",
        "Resource": integration("sns:publish"),
        "Parameters": {
            "TopicArn": TOPIC,
            "Subject": subject,
            "Message.$": f"States.JsonToString({message_path})",
        },
        "ResultPath": None,
        "Retry": [_retry(ANY_TASK_FAILURE, 10, 3)],
        # A notification that cannot be sent never changes the outcome it reports.
        "Catch": _catch(next_state, None),
        "Next": next_state,
    }


def build_definition(settings: PipelineSettings) -> dict:
    attempts = settings.deployment.capacity_attempts
    states: dict[str, dict] = {
        # Whatever the console sends (an array, a string) becomes a field of an object, so that every later
        # state, a Catch's ResultPath included, has an object to work on.
        "Receive request": {"Type": "Pass", "Parameters": {"request.$": "$"}, "Next": "Validate request"},
        "Validate request": {
            "Type": "Task",
            "Comment": "The launcher's judge (training_pipeline/request.py): every problem, or the plan",
            "Resource": integration("lambda:invoke"),
            "Parameters": {
                "FunctionName": VALIDATOR,
                "Payload": {"request.$": "$.request", "start_time.$": "$$.Execution.StartTime"},
            },
            # Only what later states need: the request itself is not carried further.
            "ResultSelector": {
                "valid.$": "$.Payload.valid",
                "cause.$": "$.Payload.cause",
                "plan.$": "$.Payload.plan",
                "attempt.$": "$.Payload.attempt",
            },
            "ResultPath": "$",
            "Retry": [_retry(LAMBDA_TRANSIENT, 2, 4)],
            "Catch": _catch(FAILURE),
            "Next": "Request valid?",
        },
        "Request valid?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.valid", "BooleanEquals": True, "Next": TRAIN}],
            "Default": "Invalid request",
        },
        # Answered by the execution itself, before anything is paid for; nothing to notify.
        "Invalid request": {"Type": "Fail", "Error": "InvalidRequest", "CausePath": "$.cause"},
        TRAIN: {
            "Type": "Task",
            "Comment": "Step Functions waits for the job; stopping the execution stops the job",
            "Resource": integration("sagemaker:createTrainingJob.sync"),
            "Parameters": create_job_parameters(settings),
            "ResultSelector": {"training_job_name.$": "$.TrainingJobName"},
            "ResultPath": "$.trained",
            "Retry": [_retry(SAGEMAKER_THROTTLED, 5, 5), _retry(SAGEMAKER_QUOTA, 60, 6)],
            "Catch": _catch("Capacity to retry?"),
            "Next": "Record adapter",
        },
        "Capacity to retry?": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.error.Cause", "StringMatches": CAPACITY_FAILURE},
                        {"Variable": "$.attempt.number", "NumericLessThan": attempts},
                    ],
                    "Next": "Wait for capacity",
                }
            ],
            "Default": FAILURE,
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
                "job_name.$": "States.Format('{}-r{}', $.plan.job_name, States.MathAdd($.attempt.number, 1))",
            },
            "ResultPath": "$.attempt",
            "Next": TRAIN,
        },
        "Record adapter": {
            "Type": "Task",
            "Comment": "Writes adapters/<name>/manifest.json, never over another run's",
            "Resource": integration("lambda:invoke"),
            "Parameters": {
                "FunctionName": RECORDER,
                "Payload": {
                    "plan.$": "$.plan",
                    "training_job_name.$": "$.trained.training_job_name",
                    "execution_arn.$": "$$.Execution.Id",
                },
            },
            "ResultSelector": {"manifest.$": "$.Payload"},
            "ResultPath": "$.recorded",
            "Retry": [_retry(LAMBDA_TRANSIENT, 2, 4)],
            "Catch": _catch(FAILURE),
            "Next": "Notify success",
        },
        "Notify success": _notify("LLM fine-tuning: adapter ready", "$.recorded.manifest", "Adapter ready"),
        # The execution's output is the manifest.
        "Adapter ready": {"Type": "Pass", "OutputPath": "$.recorded.manifest", "End": True},
        FAILURE: {
            "Type": "Pass",
            "Comment": "Only the failure is kept: the request, the error and its cause",
            "Parameters": {
                "execution_arn.$": "$$.Execution.Id",
                "error.$": "$.error.Error",
                "cause.$": "$.error.Cause",
                "request.$": "$$.Execution.Input",
            },
            "ResultPath": "$",
            "Next": "Notify failure",
        },
        "Notify failure": _notify("LLM fine-tuning: training failed", "$", "Failed"),
        "Failed": {"Type": "Fail", "ErrorPath": "$.error", "CausePath": "$.cause"},
    }
    return {
        "Comment": "Validates a training request, runs a SageMaker training job, records the adapter",
        "StartAt": "Receive request",
        "TimeoutSeconds": settings.timeout_seconds,
        "States": states,
    }
