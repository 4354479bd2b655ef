"""Ask a LoRA adapter on the endpoint a question: `python -m inference.invoke --endpoint E --adapter A "..."`.

Sends an OpenAI-style chat completion request (LMI's chat schema) to the adapter's inference component
and prints the answer. An unknown endpoint or adapter fails with a message naming it and, for an
adapter, the components the endpoint does serve.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError

from inference.names import component_name

DEFAULT_PREFIX = "LlmFt"


class InvokeError(RuntimeError):
    """A request that cannot be served; the message says what to fix."""


def chat_request(
    prompt: str, *, system: str | None = None, max_tokens: int = 256, temperature: float = 0.7
) -> dict[str, Any]:
    """The chat completions body LMI accepts: messages plus sampling parameters."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}


def answer_text(response: Mapping[str, Any]) -> str:
    """The assistant's text from a chat completions response."""
    try:
        return response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise InvokeError(f"unexpected response from the endpoint: {json.dumps(response)[:500]}") from None


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def endpoint_components(sagemaker: Any, endpoint: str) -> list[str]:
    """Names of the inference components on the endpoint; InvokeError if the endpoint does not exist."""
    try:
        sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as error:
        if _error_code(error) == "ValidationException":
            raise InvokeError(
                f"endpoint {endpoint!r} not found in {sagemaker.meta.region_name}: deploy the Inference "
                "stack and pass its EndpointName output"
            ) from None
        raise
    names: list[str] = []
    request: dict[str, Any] = {"EndpointNameEquals": endpoint}
    while True:
        page = sagemaker.list_inference_components(**request)
        names += [item["InferenceComponentName"] for item in page.get("InferenceComponents", [])]
        if not page.get("NextToken"):
            return sorted(names)
        request["NextToken"] = page["NextToken"]


def resolve_component(sagemaker: Any, *, endpoint: str, adapter: str, prefix: str) -> str:
    """The adapter's inference component on the endpoint, or InvokeError listing what is there."""
    component = component_name(prefix, adapter)
    available = endpoint_components(sagemaker, endpoint)
    if component not in available:
        listed = ", ".join(available) or "none"
        raise InvokeError(
            f"adapter {adapter!r} (inference component {component!r}) is not registered on endpoint "
            f"{endpoint!r}; its inference components: {listed}"
        )
    return component


def invoke(runtime: Any, *, endpoint: str, component: str, body: Mapping[str, Any]) -> str:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint,
        InferenceComponentName=component,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(body).encode(),
    )
    return answer_text(json.loads(response["Body"].read()))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference.invoke", description=__doc__.splitlines()[0])
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--endpoint", required=True, help="the Inference stack's EndpointName output")
    parser.add_argument("--adapter", required=True, help="adapter name, as in adapters/<name>/ of the bucket")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="stack_prefix of the deployment (LlmFt)")
    parser.add_argument("--system", help="optional system message")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--region", help="AWS region (default: the environment's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, session: Any = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    session = session or boto3.Session(region_name=args.region)
    body = chat_request(
        args.prompt, system=args.system, max_tokens=args.max_tokens, temperature=args.temperature
    )
    try:
        component = resolve_component(
            session.client("sagemaker"), endpoint=args.endpoint, adapter=args.adapter, prefix=args.prefix
        )
        runtime = session.client("sagemaker-runtime")
        print(invoke(runtime, endpoint=args.endpoint, component=component, body=body))
    except InvokeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
