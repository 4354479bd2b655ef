"""Start a training run: validate a request file, start the state machine, and follow it with --wait.

    python -m training_pipeline.launch examples/training-requests/lora-s3-model.json --wait

The request is checked with the same schema the state machine's checks are generated from (plus what
only JSON Schema can say: unknown fields, integers, patterns) before anything is started or paid for.
The state machine ARN and the data bucket come from the TrainingPipeline stack's outputs unless given.
Exit status: 0 succeeded, 1 the execution failed (its error and cause are printed), 2 invalid input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from training_pipeline.request import ROOT, effective_schema, recipe_names, validation_errors

DONE = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


def repo_config():
    """The deployment's settings, read from cdk.json exactly as the CDK app reads them."""
    from project_config import CONTEXT_KEY, load_config

    return load_config(json.loads((ROOT / "cdk.json").read_text())["context"].get(CONTEXT_KEY))


def load_request(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


# State machine tasks whose parameters name the training job.
JOB_TASKS = ("createTrainingJob", "describeTrainingJob")


def job_name_from_history(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The newest training job the execution asked for (history read newest first).

    The polling loop's describeTrainingJob calls name the job too: a long job's createTrainingJob event
    lies far behind the newest page of history.
    """
    for event in events:
        details = event.get("taskScheduledEventDetails")
        if details and details.get("resource") in JOB_TASKS:
            return json.loads(details["parameters"])["TrainingJobName"]
    return None


def progress_line(elapsed: float, execution_status: str, job: Mapping[str, Any] | None) -> str:
    minutes, seconds = divmod(int(elapsed), 60)
    line = f"[{minutes:02d}:{seconds:02d}] execution {execution_status}"
    if job:
        line += (
            f" | job {job['TrainingJobName']} {job['TrainingJobStatus']}/{job.get('SecondaryStatus', '-')}"
        )
    return line


def follow(
    sfn: Any,
    sagemaker: Any,
    execution_arn: str,
    *,
    poll_seconds: float,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Print a line whenever the execution's or the job's state changes; return the final description."""
    start, last = clock(), None
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        events = sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=100)
        name = job_name_from_history(events["events"])
        job = _describe_job(sagemaker, name) if name else None
        line = progress_line(clock() - start, described["status"], job)
        if line.split("] ", 1)[1] != last:
            print(line, file=out, flush=True)
            last = line.split("] ", 1)[1]
        if described["status"] in DONE:
            return described
        sleep(poll_seconds)


def _describe_job(sagemaker: Any, name: str) -> dict:
    """The job's description; the history names a job a moment before SageMaker knows it."""
    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ValidationException":
            raise
        return {"TrainingJobName": name, "TrainingJobStatus": "NotCreatedYet"}


def parse_args(argv: list[str], default_stack: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training_pipeline.launch", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "request", type=Path, help="the request, a JSON file (see examples/training-requests/)"
    )
    parser.add_argument("--state-machine-arn", help="default: the TrainingPipeline stack's output")
    parser.add_argument(
        "--stack", default=default_stack, help=f"the TrainingPipeline stack (default {default_stack})"
    )
    parser.add_argument("--data-bucket", help="the data bucket (default: the stack's output)")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    parser.add_argument("--name", help="execution name (default: generated by Step Functions)")
    parser.add_argument("--wait", action="store_true", help="follow the execution until it ends")
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="with --wait (default 30)")
    parser.add_argument(
        "--validate-only", action="store_true", help="check the request offline, start nothing"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    config = repo_config()
    args = parse_args(sys.argv[1:] if argv is None else argv, f"{config.stack_prefix}-TrainingPipeline")
    try:
        request = load_request(args.request)
    except UsageError as error:
        print(f"error: {error}", file=err)
        return 2
    schema = effective_schema(config.training, recipe_names())
    if args.validate_only:
        # Offline: S3 URIs are checked against --data-bucket when given, else against any bucket.
        return _report(validation_errors(request, schema, args.data_bucket), args.request, out, err)

    import boto3

    session = boto3.session.Session(region_name=args.region)
    state_machine_arn, bucket = args.state_machine_arn, args.data_bucket
    if not state_machine_arn or not bucket:
        outputs = stack_outputs(session.client("cloudformation"), args.stack)
        state_machine_arn = state_machine_arn or outputs["StateMachineArn"]
        bucket = bucket or outputs.get("DataBucketName")
    problems = validation_errors(request, schema, bucket)
    if problems:
        return _report(problems, args.request, out, err)

    sfn = session.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=state_machine_arn,
        input=json.dumps(request),
        **({"name": args.name} if args.name else {}),
    )
    print(f"started {started['executionArn']}", file=out, flush=True)
    if not args.wait:
        return 0
    described = follow(
        sfn, session.client("sagemaker"), started["executionArn"], poll_seconds=args.poll_seconds, out=out
    )
    if described["status"] == "SUCCEEDED":
        print(f"succeeded: {described.get('output', '')}", file=out)
        return 0
    print(
        f"{described['status'].lower()}: {described.get('error', '')}: {described.get('cause', '')}",
        file=err,
    )
    return 1


def _report(problems: list[str], path: Path, out: TextIO, err: TextIO) -> int:
    if problems:
        print(f"{path}: invalid request, nothing was started:", file=err)
        for problem in problems:
            print(f"  {problem}", file=err)
        return 2
    print(f"{path}: valid", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
