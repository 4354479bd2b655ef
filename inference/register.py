"""Register an adapter again: `python -m inference.register NAME [--wait]`.

Starts the Inference stack's registration state machine for `adapters/NAME/manifest.json`, with the event
EventBridge sends when a manifest is written (a manifest is written once, so a registration that failed,
say on a throttled call, is retried from here). The manifest must exist. Exit status: 0 registered (or
started, without --wait), 1 the registration failed, 2 no such manifest or bad usage, 3 AWS access.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_STACK = "LlmFt-Inference"
MANIFEST_KEY = "adapters/{}/manifest.json"
OK, FAILED, INVALID, AWS_ACCESS = 0, 1, 2, 3


class RegisterError(RuntimeError):
    """Nothing to register; the message says what to do."""


def registration_event(bucket: str, adapter: str) -> dict[str, Any]:
    """The part of S3's "Object Created" event (through EventBridge) the state machine reads."""
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": MANIFEST_KEY.format(adapter)}},
    }


def execution_name(adapter: str, now: datetime) -> str:
    # Step Functions allows 80 characters; an adapter name has at most 63.
    return f"{adapter}-{now.strftime('%Y%m%d-%H%M%S')}"


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as error:
        if "does not exist" in error.response["Error"]["Message"]:
            raise RegisterError(f"stack {stack} does not exist: deploy it, or pass --stack") from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def require_manifest(s3: Any, bucket: str, adapter: str) -> None:
    key = MANIFEST_KEY.format(adapter)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise RegisterError(
                f"s3://{bucket}/{key} does not exist: train the adapter with the pipeline, or publish a "
                "folder with python -m inference.publish"
            ) from None
        raise


def wait_for(sfn: Any, execution_arn: str, *, poll_seconds: float = 10.0, sleep=time.sleep) -> Mapping:
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        sleep(poll_seconds)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference.register", description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="the adapter's name, as in adapters/<name>/manifest.json")
    parser.add_argument("--stack", default=DEFAULT_STACK, help=f"the Inference stack ({DEFAULT_STACK})")
    parser.add_argument("--state-machine-arn", help="default: the stack's RegistrationStateMachineArn")
    parser.add_argument("--data-bucket", help="default: the stack's DataBucketName")
    parser.add_argument("--region", help="AWS region (default: the environment's)")
    parser.add_argument("--wait", action="store_true", help="wait until the adapter is in service")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, session: Any = None, sleep=time.sleep) -> int:
    import boto3

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        session = session or boto3.Session(region_name=args.region)
        machine, bucket = args.state_machine_arn, args.data_bucket
        if not machine or not bucket:
            outputs = stack_outputs(session.client("cloudformation"), args.stack)
            machine = machine or outputs["RegistrationStateMachineArn"]
            bucket = bucket or outputs["DataBucketName"]
        require_manifest(session.client("s3"), bucket, args.adapter)
        sfn = session.client("stepfunctions")
        started = sfn.start_execution(
            stateMachineArn=machine,
            name=execution_name(args.adapter, datetime.now(UTC)),
            input=json.dumps(registration_event(bucket, args.adapter)),
        )
        print(f"registering {args.adapter}: {started['executionArn']}")
        if not args.wait:
            return OK
        described = wait_for(sfn, started["executionArn"], sleep=sleep)
    except RegisterError as error:
        print(f"error: {error}", file=sys.stderr)
        return INVALID
    except (ClientError, BotoCoreError) as error:
        print(f"AWS: {error}", file=sys.stderr)
        return AWS_ACCESS
    if described["status"] == "SUCCEEDED":
        print(f"{args.adapter} is in service")
        return OK
    print(
        f"{described['status'].lower()}: {described.get('error')}: {described.get('cause')}", file=sys.stderr
    )
    return FAILED


if __name__ == "__main__":
    sys.exit(main())
