"""The invoke command against botocore's Stubber: request shape, answer, unknown endpoint or adapter."""

import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from inference import invoke

ENDPOINT = "LmiEndpoint-abc"
ARN_PREFIX = "arn:aws:sagemaker:eu-west-1:123456789012"
ANSWER = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}}]}


class FakeSession:
    """Hands out the stubbed clients the command asks for."""

    def __init__(self, clients):
        self.clients = clients

    def client(self, name):
        return self.clients[name]


@pytest.fixture
def clients():
    sagemaker = boto3.client(
        "sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    runtime = boto3.client(
        "sagemaker-runtime", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(sagemaker) as sm_stub, Stubber(runtime) as rt_stub:
        yield {"sagemaker": sagemaker, "sagemaker-runtime": runtime, "sm": sm_stub, "rt": rt_stub}
        sm_stub.assert_no_pending_responses()
        rt_stub.assert_no_pending_responses()


def stub_endpoint(sm_stub, components):
    sm_stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": ENDPOINT,
            "EndpointArn": f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{ENDPOINT.lower()}",
            "EndpointStatus": "InService",
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
        },
        {"EndpointName": ENDPOINT},
    )
    sm_stub.add_response(
        "list_inference_components",
        {
            "InferenceComponents": [
                {
                    "InferenceComponentName": name,
                    "InferenceComponentArn": f"{ARN_PREFIX}:inference-component/{name}",
                    "EndpointName": ENDPOINT,
                    "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/e",
                    "VariantName": "AllTraffic",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "LastModifiedTime": "2026-01-01T00:00:00Z",
                }
                for name in components
            ]
        },
        {"EndpointNameEquals": ENDPOINT},
    )


def run(clients, *args):
    return invoke.main(["--endpoint", ENDPOINT, *args], session=FakeSession(clients))


def test_sends_a_chat_request_to_the_adapter_component_and_prints_the_answer(clients, capsys):
    stub_endpoint(clients["sm"], ["BaseComponent-xyz", "llmft-support-bot"])
    body = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    clients["rt"].add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(json.dumps(ANSWER).encode()), len(json.dumps(ANSWER)))},
        {
            "EndpointName": ENDPOINT,
            "InferenceComponentName": "llmft-support-bot",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps(body).encode(),
        },
    )
    code = run(
        clients,
        "--adapter",
        "support-bot",
        "--system",
        "Be brief.",
        "--max-tokens",
        "64",
        "--temperature",
        "0.2",
        "Hi",
    )
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "Hello there.", "the answer should be printed as is"


def test_unknown_adapter_names_it_and_lists_the_endpoints_components(clients, capsys):
    stub_endpoint(clients["sm"], ["BaseComponent-xyz", "llmft-support-bot"])
    assert run(clients, "--adapter", "sales-bot", "Hi") == 2
    err = capsys.readouterr().err
    assert "adapter 'sales-bot'" in err and "llmft-sales-bot" in err, err
    assert "BaseComponent-xyz, llmft-support-bot" in err, "available components should be listed"


def test_unknown_endpoint_names_it(clients, capsys):
    clients["sm"].add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        service_message="Could not find endpoint",
        expected_params={"EndpointName": ENDPOINT},
    )
    assert run(clients, "--adapter", "support-bot", "Hi") == 2
    err = capsys.readouterr().err
    assert f"endpoint '{ENDPOINT}' not found in eu-west-1" in err, err


def test_other_aws_errors_are_not_disguised_as_unknown_endpoints(clients):
    clients["sm"].add_client_error("describe_endpoint", service_error_code="AccessDeniedException")
    with pytest.raises(invoke.ClientError):
        run(clients, "--adapter", "support-bot", "Hi")


def test_listing_follows_pagination(clients):
    clients["sm"].add_response(
        "describe_endpoint",
        {
            "EndpointName": ENDPOINT,
            "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/e",
            "EndpointStatus": "InService",
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
        },
    )
    clients["sm"].add_response("list_inference_components", {"InferenceComponents": [], "NextToken": "t1"})
    clients["sm"].add_response(
        "list_inference_components",
        {"InferenceComponents": []},
        {"EndpointNameEquals": ENDPOINT, "NextToken": "t1"},
    )
    assert invoke.endpoint_components(clients["sagemaker"], ENDPOINT) == []


def test_chat_request_and_unexpected_response():
    assert invoke.chat_request("Hi") == {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 256,
        "temperature": 0.7,
    }
    with pytest.raises(invoke.InvokeError, match="unexpected response"):
        invoke.answer_text({"generated_text": "old schema"})
