"""The Hugging Face token: read from Secrets Manager (stubbed), never accepted any other way."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from llmft_train.hf_token import fetch_hf_token, secret_region, token_from_secret_string
from llmft_train.hyperparams import ConfigError

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hf-token-AbCdEf"


def stubbed_factory(secret_string: str):
    """A client factory whose Secrets Manager client answers one GetSecretValue call."""
    client = boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.add_response(
        "get_secret_value",
        {"ARN": ARN, "Name": "hf-token", "SecretString": secret_string},
        {"SecretId": ARN},
    )
    stubber.activate()
    calls = []

    def factory(service, region_name):
        calls.append((service, region_name))
        return client

    return factory, stubber, calls


def test_token_is_read_from_the_secret_in_its_region():
    factory, stubber, calls = stubbed_factory("hf_plain_token")
    assert fetch_hf_token(ARN, factory) == "hf_plain_token"
    assert calls == [("secretsmanager", "eu-west-1")]
    stubber.assert_no_pending_responses()


def test_token_can_be_a_json_key():
    factory, _, _ = stubbed_factory('{"HF_TOKEN": "hf_from_json"}')
    assert fetch_hf_token(ARN, factory) == "hf_from_json"
    assert token_from_secret_string('{"token": " hf_x "}', ARN) == "hf_x"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "is empty"),
        ('{"password": "x"}', "is a JSON object without a key HF_TOKEN or hf_token or token"),
        ("{not json", "looks like JSON but does not parse"),
    ],
)
def test_unusable_secret_values_are_rejected(secret, message):
    with pytest.raises(ConfigError, match=message):
        token_from_secret_string(secret, ARN)


@pytest.mark.parametrize(
    "arn",
    ["hf-token", "arn:aws:s3:::bucket", "arn:aws:secretsmanager:eu-west-1:12345:secret:x"],
)
def test_bad_secret_arn_is_named(arn):
    with pytest.raises(ConfigError) as caught:
        secret_region(arn)
    assert f"HF_TOKEN_SECRET_ARN={arn!r} is not a Secrets Manager secret ARN" in str(caught.value)


def test_unreadable_secret_names_the_secret_and_the_cause():
    client = boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.add_client_error("get_secret_value", "AccessDeniedException", "not authorized")
    stubber.activate()
    with pytest.raises(ConfigError) as caught:
        fetch_hf_token(ARN, lambda service, region_name: client)
    message = str(caught.value)
    assert message.startswith(f"cannot read the secret {ARN} named by HF_TOKEN_SECRET_ARN: ")
    assert "AccessDeniedException" in message
