"""Runs the synthesized training state machine in moto's Step Functions interpreter.

The definition is taken from the template (DefinitionString + DefinitionSubstitutions), the
substitutions get test values, and the two Wait states are shortened to 0 seconds; nothing else changes.
"""

import json
import time
from dataclasses import dataclass, field

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "llmft-pipeline-test-data"
TEST_VALUES = {
    "DataBucket": BUCKET,
    "TrainingImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/llmft-training:{'a' * 64}",
    "TrainingRoleArn": f"arn:aws:iam::{ACCOUNT}:role/llmft-training",
    "KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555",
    "SecurityGroupId": "sg-0123456789abcdef0",
    "Subnet0": "subnet-0aaaaaaaaaaaaaaa0",
    "Subnet1": "subnet-0bbbbbbbbbbbbbbb1",
    "HfTokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:llmft/hf-token",
    # TopicArn is the topic created in moto for each run.
}
WAIT_STATES = ("Wait for job", "Wait for capacity")


def state_machine_properties(template) -> dict:
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def render(template, values: dict[str, str], *, fast_waits: bool = True) -> dict:
    """The deployed definition with test values in place of the deployment's references."""
    properties = state_machine_properties(template)
    text = properties["DefinitionString"]
    for name in properties["DefinitionSubstitutions"]:
        assert name in values, f"no test value for substitution {name}"
        text = text.replace(f"${{{name}}}", values[name])
    assert "${" not in text, "a placeholder was left unsubstituted"
    definition = json.loads(text)
    if fast_waits:
        for state in WAIT_STATES:
            definition["States"][state]["Seconds"] = 0
    return definition


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
        return [
            json.loads(event["taskScheduledEventDetails"]["parameters"])
            for event in self.history
            if event["type"] == "TaskScheduled"
            and event["taskScheduledEventDetails"]["resource"] == "createTrainingJob"
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
        definition = render(template, {**TEST_VALUES, "TopicArn": self.topic_arn})
        self.state_machine_arn = self.sfn.create_state_machine(
            name="llmft-training",
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/llmft-pipeline",
        )["stateMachineArn"]

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
