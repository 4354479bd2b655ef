"""Runs the synthesized training state machine in moto's Step Functions interpreter.

The definition is taken from the template (DefinitionString + DefinitionSubstitutions) with test values in
place of the deployment's references. Two things are substituted, in this file only:

- The `.sync` training Task. moto cannot run `sagemaker:createTrainingJob.sync` (it has no job poller for
  it), so `emulated_sync_task` puts in its place a Parallel state with one branch that does what Step
  Functions documents for `.sync`: CreateTrainingJob with the very same Parameters, then DescribeTrainingJob
  until the job ends; Completed returns the description, Failed or Stopped fail the Task with the
  description as the cause. (AWS names that error States.TaskFailed; a Fail state may not raise a States.*
  name, so the emulation raises JOB_FAILED. The pipeline catches every error, so the name changes no
  path.) The Task's Retry, Catch, ResultPath and Next are kept, and its ResultSelector reads the same
  fields of the description. Stopping an execution stops a `.sync` job in
  AWS; moto cannot show that, so the stop tests check the launcher's own StopTrainingJob instead.
- The Lambda functions. moto would run them in Docker; `run_functions_in_process` gives Step Functions'
  Lambda integration the real handlers (training_pipeline/handlers.py) in this process, with the
  deployment settings from the synthesized bundle, and answers as Lambda does (Payload, or FunctionError
  with errorType and errorMessage).

The Wait for capacity is shortened to 0 seconds and every Retry to 1-second intervals, and aws-sdk results
get their timestamps as JSON text, as Step Functions gives them (moto keeps Python datetimes, which its
own States.JsonToString cannot write); nothing else changes.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

from training_pipeline import handlers

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "llmft-pipeline-test-data"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
VALIDATOR = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:llmft-validator"
RECORDER = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:llmft-recorder"
TEST_VALUES = {
    "Partition": "aws",
    "DataBucket": BUCKET,
    "TrainingImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/llmft-training:{'a' * 64}",
    "TrainingRoleArn": f"arn:aws:iam::{ACCOUNT}:role/llmft-training",
    "KmsKeyArn": KMS_KEY,
    "SecurityGroupId": "sg-0123456789abcdef0",
    "Subnet0": "subnet-0aaaaaaaaaaaaaaa0",
    "Subnet1": "subnet-0bbbbbbbbbbbbbbb1",
    "HfTokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:llmft/hf-token-AbCdEf",
    "ValidatorFunctionArn": VALIDATOR,
    "RecorderFunctionArn": RECORDER,
    # TopicArn is the topic created in moto for each run.
}
TRAIN = "Train"
JOB_FAILED = "EmulatedTrainingJobFailed"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def state_machine_properties(template) -> dict:
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def definition_text(properties: dict, partition: str = "${Partition}") -> str:
    """The DefinitionString, with `AWS::Partition` (the only reference inside it) as `partition`."""
    text = properties["DefinitionString"]
    if isinstance(text, str):
        return text
    parts = text["Fn::Join"][1]
    assert {json.dumps(p) for p in parts if not isinstance(p, str)} == {'{"Ref": "AWS::Partition"}'}, parts
    return "".join(p if isinstance(p, str) else partition for p in parts)


def render(template, values: dict[str, str]) -> dict:
    """The deployed definition with test values in place of the deployment's references."""
    properties = state_machine_properties(template)
    text = definition_text(properties, values["Partition"])
    for name in properties["DefinitionSubstitutions"]:
        assert name in values, f"no test value for substitution {name}"
        text = text.replace(f"${{{name}}}", values[name])
    assert "${" not in text, "a placeholder was left unsubstituted"
    return json.loads(text)


def _under(path: str, prefix: str) -> str:
    return prefix + path[1:] if path.startswith("$") and not path.startswith("$$") else path


def emulated_sync_task(task: dict) -> dict:
    """The `.sync` Task as moto can run it (see the module docstring): the one test-only substitution."""
    assert task["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync"), task["Resource"]
    described = "$.described"
    branch = {
        "StartAt": "Create",
        "States": {
            "Create": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sagemaker:createTrainingJob",
                "Parameters": task["Parameters"],
                "ResultPath": None,
                "Next": "Describe",
            },
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob",
                "Parameters": {"TrainingJobName.$": task["Parameters"]["TrainingJobName.$"]},
                "ResultPath": described,
                "Next": "Ended?",
            },
            "Ended?": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": f"{described}.TrainingJobStatus",
                        "StringEquals": "Completed",
                        "Next": "Done",
                    },
                    {"Variable": f"{described}.TrainingJobStatus", "StringEquals": "Failed", "Next": "Cause"},
                    {
                        "Variable": f"{described}.TrainingJobStatus",
                        "StringEquals": "Stopped",
                        "Next": "Cause",
                    },
                ],
                "Default": "Poll",
            },
            "Poll": {"Type": "Wait", "Seconds": 1, "Next": "Describe"},
            "Done": {"Type": "Succeed"},
            "Cause": {
                "Type": "Pass",
                "Parameters": {"cause.$": f"States.JsonToString({described})"},
                "Next": "Job failed",
            },
            "Job failed": {"Type": "Fail", "Error": JOB_FAILED, "CausePath": "$.cause"},
        },
    }
    return {
        "Type": "Parallel",
        "Branches": [branch],
        "ResultSelector": {k: _under(v, "$[0].described") for k, v in task["ResultSelector"].items()},
        **{k: task[k] for k in ("ResultPath", "Retry", "Catch", "Next") if k in task},
    }


def runnable_in_moto(definition: dict) -> dict:
    states = definition["States"]
    states[TRAIN] = emulated_sync_task(states[TRAIN])
    states["Wait for capacity"]["Seconds"] = 0
    for state in states.values():
        for retry in state.get("Retry", []):
            retry.update(IntervalSeconds=1, BackoffRate=1.0)
    return definition


def bundle_dir(app, stack) -> Path:
    """The synthesized Lambda bundle of the pipeline's functions (an asset folder in the cloud assembly)."""
    template = app.template(stack)
    (function,) = [
        f
        for name, f in template.find_resources("AWS::Lambda::Function").items()
        if name.startswith("PipelineValidator")
    ]
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    return app.out_dir / f"asset.{asset_hash}"


def run_functions_in_process(monkeypatch, bundle: Path) -> list[dict]:
    """Step Functions' Lambda integration calls the real handlers here; returns the invocations made."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("VOLUME_KMS_KEY_ARN", KMS_KEY)
    monkeypatch.setattr(handlers, "DEPLOYMENT_FILE", bundle / "deployment.json")
    functions = {VALIDATOR: handlers.validate, RECORDER: handlers.record}
    invocations: list[dict] = []

    def invoke(parameters: dict, region: str, state_credentials) -> dict:
        event = json.loads(parameters["Payload"])
        invocations.append({"function": parameters["FunctionName"], "event": event})
        try:
            result = functions[parameters["FunctionName"]](event, None)
        except Exception as error:  # noqa: BLE001 - Lambda reports any exception the same way
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {"errorType": type(error).__name__, "errorMessage": str(error)},
            }
        return {"StatusCode": 200, "Payload": json.loads(json.dumps(result)), "ExecutedVersion": "$LATEST"}

    monkeypatch.setattr(lambda_eval_utils, "_invoke_lambda_function", invoke)
    _json_timestamps(monkeypatch)
    return invocations


def _json_timestamps(monkeypatch) -> None:
    service = state_task_service_aws_sdk.StateTaskServiceAwsSdk
    original = service._eval_service_task

    def eval_service_task(self, env, *args, **kwargs):
        original(self, env, *args, **kwargs)
        env.stack[-1] = json.loads(json.dumps(env.stack[-1], default=lambda value: value.isoformat()))

    monkeypatch.setattr(service, "_eval_service_task", eval_service_task)


@dataclass
class Run:
    status: str
    error: str | None
    cause: str | None
    output: dict | None
    history: list[dict]
    jobs: list[dict]
    messages: list[dict] = field(default_factory=list)

    def created_jobs(self) -> list[dict]:
        """The CreateTrainingJob requests exactly as the state machine sent them."""
        return self.task_parameters("createTrainingJob")

    def task_parameters(self, resource: str) -> list[dict]:
        return [
            json.loads(event["taskScheduledEventDetails"]["parameters"])
            for event in self.history
            if event["type"] == "TaskScheduled" and event["taskScheduledEventDetails"]["resource"] == resource
        ]

    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]


class PipelineWorld:
    """A data bucket, a topic with an SQS subscriber, and the state machine; inside mock_aws."""

    def __init__(self, template) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        sns = boto3.client("sns", region_name=REGION)
        self.topic_arn = sns.create_topic(Name="llmft-notifications")["TopicArn"]
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = self.sqs.create_queue(QueueName="notifications")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.logs = boto3.client("logs", region_name=REGION)
        self.definition = render(template, {**TEST_VALUES, "TopicArn": self.topic_arn})
        self.state_machine_arn = self.sfn.create_state_machine(
            name="llmft-training",
            definition=json.dumps(runnable_in_moto(json.loads(json.dumps(self.definition)))),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/llmft-pipeline",
        )["stateMachineArn"]

    def put_inputs(self, *keys: str) -> None:
        """Objects the S3 checks look for (datasets, a model's config.json)."""
        for key in keys:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")

    def start(self, request, name: str = "run-1") -> str:
        return self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(request)
        )["executionArn"]

    def wait(self, execution_arn: str, timeout: float = 30) -> Run:
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        jobs = [
            self.sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            for summary in self.sagemaker.list_training_jobs()["TrainingJobSummaries"]
        ]
        output = described.get("output")
        return Run(
            status=described["status"],
            error=described.get("error"),
            cause=described.get("cause"),
            output=json.loads(output) if output else None,
            history=history,
            jobs=jobs,
            messages=self.notifications(),
        )

    def run(self, request, name: str = "run-1") -> Run:
        return self.wait(self.start(request, name))

    def notifications(self) -> list[dict]:
        """Messages published to the topic: {'Subject': ..., 'Message': ...} as SNS delivers them."""
        received = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in received.get("Messages", [])]
