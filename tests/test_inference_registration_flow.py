"""The registration state machine executed by moto's Step Functions interpreter.

S3 calls go to moto (getObject's Body returned as text, as Step Functions does and moto's SDK
integration does not yet). moto has no inference component API and cannot run Lambda without Docker,
so two calls are replaced in-process: the planner Lambda runs `inference.registration.handler` on the
payload the state machine built, and SageMaker calls go to a botocore Stubber that checks each request
against the SageMaker API model and the parameters we expect.
"""

import json
import time

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
)

from inference import register, registration
from tests.test_inference_stack import BASE_COMPONENT, BUCKET, ENDPOINT, TOPIC, rendered_definition

REGION = "us-east-1"
ADAPTER = "support-bot"
COMPONENT = "llmft-support-bot"
JOB = "job-1"
ARTIFACT = b"adapter weights"
RELEASED_KEY = f"adapters/{ADAPTER}/{JOB}/model.tar.gz"
ARTIFACT_URL = f"s3://{BUCKET}/{RELEASED_KEY}"
COMPONENT_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:inference-component/{COMPONENT}"
MANIFEST = {
    "adapter_name": ADAPTER,
    "model_artifact": f"s3://{BUCKET}/training/{JOB}/output/model.tar.gz",
    "training_job_name": JOB,
    "base_model": "models/base-model/",
    "recipe": "lora",
    "execution_arn": f"arn:aws:states:{REGION}:123456789012:execution:train:{JOB}",
    "final_metrics": {"loss": 0.42},
}


@pytest.fixture(scope="module")
def definition(full_app):
    rendered = rendered_definition(full_app.template(full_app.stacks.inference))
    # The 30 s polling interval would only slow the test down; the loop itself is unchanged.
    rendered["States"]["WaitForComponent"]["Seconds"] = 0
    return rendered


@pytest.fixture
def sagemaker_stub():
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub


class S3AsStepFunctions:
    """moto's S3 client, with getObject's Body as text like the Step Functions SDK integration."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get_object(self, **kwargs):
        response = self.client.get_object(**kwargs)
        response["Body"] = response["Body"].read().decode()
        return response


@pytest.fixture
def aws(monkeypatch, sagemaker_stub):
    client, _ = sagemaker_stub
    original = state_task_service_aws_sdk.boto_client_for

    def client_for(service, region, state_credentials=None):
        if service == "sagemaker":
            return client
        if service == "s3":
            return S3AsStepFunctions(original(region, service, state_credentials))
        return original(region, service, state_credentials)

    def run_planner(parameters, region, state_credentials):
        try:
            payload = registration.handler(json.loads(parameters["Payload"]), None)
        except registration.ManifestError as error:
            # What Lambda returns for an unhandled Python exception.
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {"errorType": "ManifestError", "errorMessage": str(error)},
            }
        return {"StatusCode": 200, "Payload": payload}

    monkeypatch.setattr(state_task_service_aws_sdk, "boto_client_for", client_for)
    monkeypatch.setattr(lambda_eval_utils, "_invoke_lambda_function", run_planner)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=f"training/{JOB}/output/model.tar.gz", Body=ARTIFACT)
        # The project's topic, with a queue subscribed to read what a failure publishes.
        sns = boto3.client("sns", region_name=REGION)
        assert sns.create_topic(Name=TOPIC.rsplit(":", 1)[1])["TopicArn"] == TOPIC
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="failures")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=TOPIC, Protocol="sqs", Endpoint=queue_arn)
        yield s3


def run(definition, manifest) -> tuple[dict, list[str]]:
    """Write the manifest, start the machine with the S3 event EventBridge sends, wait for the end."""
    s3 = boto3.client("s3", region_name=REGION)
    key = f"adapters/{ADAPTER}/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="registration",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/registration",
    )["stateMachineArn"]
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key}},
    }
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(event))["executionArn"]
    for _ in range(300):
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.1)
    history = sfn.get_execution_history(executionArn=execution)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return described, entered


def notifications() -> list[dict]:
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.get_queue_url(QueueName="failures")["QueueUrl"]
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in received]


def expect_describe(stub, status=None, missing=False):
    if missing:
        stub.add_client_error(
            "describe_inference_component",
            service_error_code="ValidationException",
            service_message=f"Could not find inference component {COMPONENT}",
            expected_params={"InferenceComponentName": COMPONENT},
            response_meta={"RequestId": "request-1"},
        )
        return
    stub.add_response(
        "describe_inference_component",
        {
            "InferenceComponentName": COMPONENT,
            "InferenceComponentArn": COMPONENT_ARN,
            "EndpointName": ENDPOINT,
            "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}",
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
            "InferenceComponentStatus": status,
            **({"FailureReason": "adapter rank 128 exceeds max_lora_rank 64"} if status == "Failed" else {}),
        },
        {"InferenceComponentName": COMPONENT},
    )


ADAPTER_SPEC = {"BaseInferenceComponentName": BASE_COMPONENT, "Container": {"ArtifactUrl": ARTIFACT_URL}}


def test_new_adapter_is_released_and_created_on_the_base_component(definition, aws, sagemaker_stub):
    _, stub = sagemaker_stub
    expect_describe(stub, missing=True)
    stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": COMPONENT_ARN},
        {"InferenceComponentName": COMPONENT, "EndpointName": ENDPOINT, "Specification": ADAPTER_SPEC},
    )
    expect_describe(stub, status="InService")
    described, entered = run(definition, MANIFEST)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"), entered)
    assert entered == [
        "ReadManifest",
        "PlanRegistration",
        "ReleaseAdapter",
        "FindComponent",
        "ComponentExists",
        "CreateAdapterComponent",
        "WaitForComponent",
        "CheckComponent",
        "ComponentStatus",
        "AdapterInService",
    ], entered
    released = aws.get_object(Bucket=BUCKET, Key=RELEASED_KEY)["Body"].read()
    assert released == ARTIFACT, "the training output should be copied under adapters/"
    stub.assert_no_pending_responses()


def test_retrained_adapter_updates_its_component(definition, aws, sagemaker_stub):
    _, stub = sagemaker_stub
    expect_describe(stub, status="InService")
    stub.add_response(
        "update_inference_component",
        {"InferenceComponentArn": COMPONENT_ARN},
        {"InferenceComponentName": COMPONENT, "Specification": ADAPTER_SPEC},
    )
    expect_describe(stub, status="InService")
    described, entered = run(definition, MANIFEST)
    assert described["status"] == "SUCCEEDED", described
    assert "UpdateAdapterComponent" in entered and "CreateAdapterComponent" not in entered, entered
    stub.assert_no_pending_responses()


def test_failed_component_fails_the_execution_with_sagemakers_reason_and_notifies(
    definition, aws, sagemaker_stub
):
    _, stub = sagemaker_stub
    expect_describe(stub, missing=True)
    stub.add_response("create_inference_component", {"InferenceComponentArn": COMPONENT_ARN})
    expect_describe(stub, status="Failed")
    described, entered = run(definition, MANIFEST)
    assert described["status"] == "FAILED", described
    assert entered[-4:] == ["ComponentFailed", "FailureReport", "NotifyFailure", "RegistrationFailed"], (
        entered
    )
    assert "CreateAdapterComponent" in entered, entered
    assert described["error"] == "AdapterComponentFailed"
    assert "exceeds max_lora_rank" in described["cause"], described["cause"]
    (message,) = notifications()
    assert message["Subject"] == "LLM fine-tuning: adapter not registered"
    report = json.loads(message["Message"])
    assert report["manifest"] == f"s3://{BUCKET}/adapters/{ADAPTER}/manifest.json"
    assert report["register_again"] == "python -m inference.register <adapter_name>"
    assert report["error"] == "AdapterComponentFailed" and "exceeds max_lora_rank" in report["cause"]


def test_invalid_manifest_stops_before_touching_s3_or_sagemaker_and_is_notified(
    definition, aws, sagemaker_stub
):
    _, stub = sagemaker_stub
    described, entered = run(definition, {**MANIFEST, "base_model": "models/other-model/"})
    assert described["status"] == "FAILED", described
    assert entered == [
        "ReadManifest",
        "PlanRegistration",
        "FailureReport",
        "NotifyFailure",
        "RegistrationFailed",
    ]
    assert described["error"] == "ManifestError"
    assert "trained on base_model 'models/other-model/'" in described["cause"], described["cause"]
    listed = aws.list_objects_v2(Bucket=BUCKET, Prefix=f"adapters/{ADAPTER}/{JOB}/")
    assert listed.get("KeyCount", 0) == 0, "nothing should be released for a bad manifest"
    assert json.loads(notifications()[0]["Message"])["error"] == "ManifestError"
    stub.assert_no_pending_responses()


def test_a_lookup_that_fails_for_another_reason_is_reported_not_created(definition, aws, sagemaker_stub):
    _, stub = sagemaker_stub
    # moto names this error sagemaker.sagemakerException, not AWS's SageMaker.SageMakerException, so its
    # interpreter does not retry it: one answer is enough here.
    stub.add_client_error(
        "describe_inference_component",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: sagemaker:DescribeInferenceComponent",
        expected_params={"InferenceComponentName": COMPONENT},
        response_meta={"RequestId": "request-2"},
    )
    described, entered = run(definition, MANIFEST)
    assert described["status"] == "FAILED", described
    assert "CreateAdapterComponent" not in entered and entered[-3:] == [
        "FailureReport",
        "NotifyFailure",
        "RegistrationFailed",
    ], entered
    assert "not authorized" in described["cause"]
    stub.assert_no_pending_responses()


def _machine(definition) -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return sfn.create_state_machine(
        name="registration-again",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]


def test_register_runs_the_registration_again_for_an_existing_manifest(
    definition, aws, sagemaker_stub, capsys
):
    _, stub = sagemaker_stub
    expect_describe(stub, status="InService")
    stub.add_response(
        "update_inference_component",
        {"InferenceComponentArn": COMPONENT_ARN},
        {"InferenceComponentName": COMPONENT, "Specification": ADAPTER_SPEC},
    )
    expect_describe(stub, status="InService")
    aws.put_object(Bucket=BUCKET, Key=f"adapters/{ADAPTER}/manifest.json", Body=json.dumps(MANIFEST).encode())
    argv = [ADAPTER, "--state-machine-arn", _machine(definition), "--data-bucket", BUCKET, "--region", REGION]
    code = register.main([*argv, "--wait"], sleep=lambda _: time.sleep(0.1))
    out = capsys.readouterr()
    assert code == register.OK, out.err
    assert f"registering {ADAPTER}: arn:aws:states:" in out.out and f"{ADAPTER} is in service" in out.out
    stub.assert_no_pending_responses()


def test_register_refuses_an_adapter_without_a_manifest(definition, aws, sagemaker_stub, capsys):
    machine = _machine(definition)
    code = register.main(
        ["never-trained", "--state-machine-arn", machine, "--data-bucket", BUCKET, "--region", REGION]
    )
    assert code == register.INVALID
    assert "adapters/never-trained/manifest.json does not exist" in capsys.readouterr().err
    sfn = boto3.client("stepfunctions", region_name=REGION)
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == [], "nothing may start"


def test_register_reads_the_inference_stacks_outputs(monkeypatch):
    cloudformation = boto3.client(
        "cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    stubber = Stubber(cloudformation)
    stubber.add_client_error(
        "describe_stacks",
        "ValidationError",
        "Stack with id LlmFt-Inference does not exist",
        expected_params={"StackName": "LlmFt-Inference"},
    )
    with stubber:
        with pytest.raises(register.RegisterError, match="stack LlmFt-Inference does not exist"):
            register.stack_outputs(cloudformation, "LlmFt-Inference")
