"""The Hugging Face token for gated models, read from AWS Secrets Manager at start."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from llmft_train.hyperparams import ConfigError

SECRET_ARN_ENV = "HF_TOKEN_SECRET_ARN"
_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$")
_JSON_KEYS = ("HF_TOKEN", "hf_token", "token")


def secret_region(arn: str) -> str:
    """The region of a Secrets Manager secret ARN."""
    match = _ARN.match(arn)
    if not match:
        raise ConfigError(
            f"{SECRET_ARN_ENV}={arn!r} is not a Secrets Manager secret ARN "
            "(arn:<partition>:secretsmanager:<region>:<account>:secret:<name>)"
        )
    return match.group(1)


def token_from_secret_string(secret_string: str, arn: str) -> str:
    """The secret holds the token itself, or a JSON object with an HF_TOKEN (or token) key."""
    text = secret_string.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"secret {arn} looks like JSON but does not parse") from None
        for key in _JSON_KEYS:
            if isinstance(data.get(key), str) and data[key].strip():
                return data[key].strip()
        raise ConfigError(f"secret {arn} is a JSON object without a key {' or '.join(_JSON_KEYS)}")
    if not text:
        raise ConfigError(f"secret {arn} is empty")
    return text


def fetch_hf_token(arn: str, client_factory: Callable[..., Any] | None = None) -> str:
    """Read the token; boto3 is imported here so planning code never needs it."""
    if client_factory is None:
        import boto3

        client_factory = boto3.client
    client = client_factory("secretsmanager", region_name=secret_region(arn))
    try:
        response = client.get_secret_value(SecretId=arn)
    except Exception as error:
        # Access denied, missing secret or no network: name the secret, never its value.
        raise ConfigError(f"cannot read the secret {arn} named by {SECRET_ARN_ENV}: {error}") from None
    return token_from_secret_string(response.get("SecretString", ""), arn)
