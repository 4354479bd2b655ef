"""Start, follow, stop and list training runs: the Step Functions console's companion on the command line.

    python -m training_pipeline.launch REQUEST.json [--wait]       judge, start, follow (logs and loss)
    python -m training_pipeline.launch REQUEST.json --dry-run      judge with the S3 checks too, start nothing
    python -m training_pipeline.launch REQUEST.json --validate-only   judge offline, no AWS call
    python -m training_pipeline.launch stop NAME-or-ARN            stop an execution, and so its training job
    python -m training_pipeline.launch status [--limit N]          the state machine's recent executions

A request is judged by the same function as the state machine's first step (training_pipeline/request.py,
through `handlers.verdict`), so the launcher refuses exactly what the console would, before anything starts.
The state machine ARN and the data bucket come from the TrainingPipeline stack's outputs unless given.

Exit status: 0 succeeded (or nothing to do); 1 the execution failed, timed out or was stopped;
2 invalid request or usage; 3 AWS access, credentials or a missing stack.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from llmft_train.progress import parse_metrics

from training_pipeline.handlers import verdict
from training_pipeline.request import Deployment, request_problems

ROOT = Path(__file__).resolve().parent.parent
OK, FAILED, INVALID, AWS_ACCESS = 0, 1, 2, 3
DONE = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CONSOLE_DOMAINS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}
COMMANDS = ("stop", "status")


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


class AwsAccessError(Exception):
    """AWS could not be reached as this user: printed without a traceback, exit status 3."""


def repo_deployment() -> tuple[Deployment, str]:
    """The deployment's request settings and stack prefix, read from cdk.json as the CDK app reads them."""
    from project_config import CONTEXT_KEY, load_config
    from training_pipeline.deployment import deployment_for

    config = load_config(json.loads((ROOT / "cdk.json").read_text())["context"].get(CONTEXT_KEY))
    return deployment_for(config.training), config.stack_prefix


def load_request(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None


# ---------------------------------------------------------------------------------------------------
# Pure helpers


def execution_arn_for(state_machine_arn: str, name_or_arn: str) -> str:
    """An execution's ARN from its name (executions live beside their state machine)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    head, _, machine = state_machine_arn.rpartition(":stateMachine:")
    if not machine:
        raise UsageError(f"{state_machine_arn!r} is not a state machine ARN")
    return f"{head}:execution:{machine}:{name_or_arn}"


def default_execution_name(adapter_name: str, now: datetime) -> str:
    """Readable in the console and unique per adapter and second (Step Functions allows 80 characters)."""
    return f"{adapter_name}-{now.strftime('%Y%m%d-%H%M%S')}"


def console_links(execution_arn: str, job_name: str | None = None) -> dict[str, str]:
    """Console pages of an execution, its training job and the job's logs, in the ARN's partition."""
    _, partition, _, region, *_ = execution_arn.split(":")
    base = f"https://{region}.{CONSOLE_DOMAINS.get(partition, CONSOLE_DOMAINS['aws'])}"
    links = {"execution": f"{base}/states/home?region={region}#/v2/executions/details/{execution_arn}"}
    if job_name:
        group = urllib.parse.quote(TRAINING_LOG_GROUP, safe="").replace("%", "$25")
        streams = urllib.parse.quote(f"?logStreamNameFilter={job_name}", safe="").replace("%", "$")
        links["job"] = f"{base}/sagemaker/home?region={region}#/jobs/{job_name}"
        links["logs"] = f"{base}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{group}{streams}"
    return links


def job_name_from_history(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The newest training job the execution asked for (history read newest first)."""
    for event in events:
        details = event.get("taskScheduledEventDetails")
        if details and details.get("resource", "").startswith("createTrainingJob"):
            return json.loads(details["parameters"])["TrainingJobName"]
    return None


def failure_summary(error: str | None, cause: str | None) -> str:
    """The failure in a line or two: a `.sync` job's cause is its whole description, of which the reason
    and status matter; other causes are shown as they are."""
    try:
        described = json.loads(cause or "")
    except json.JSONDecodeError:
        described = None
    if isinstance(described, dict) and "TrainingJobStatus" in described:
        reason = described.get("FailureReason", "no reason given")
        job = described.get("TrainingJobName")
        return f"{error}: training job {job} {described['TrainingJobStatus']}: {reason}"
    return f"{error}: {cause}"


def log_line(event: Mapping[str, Any]) -> str:
    """`[algo-1] message`: the host from the stream name `<job>/algo-1-<timestamp>`."""
    host = event.get("logStreamName", "").split("/", 1)[-1].rsplit("-", 1)[0]
    return f"[{host}] {event['message'].rstrip()}"


def metrics_line(message: str) -> str | None:
    """The metrics a log line carries (the image's progress lines, read by SageMaker's own regexes)."""
    found = parse_metrics(message)
    return "  ".join(f"{name}={value:g}" for name, value in found.items()) or None


# ---------------------------------------------------------------------------------------------------
# Following an execution


class Follower:
    """Prints an execution's progress: job status changes, the job's log lines (or only its metrics)."""

    def __init__(
        self, sfn: Any, sagemaker: Any, logs: Any, out: TextIO, *, metrics_only: bool = False
    ) -> None:
        self.sfn, self.sagemaker, self.logs, self.out = sfn, sagemaker, logs, out
        self.metrics_only = metrics_only
        self.job_name: str | None = None
        self.job_state: tuple[str, str] | None = None
        self.seen_events: set[str] = set()
        self.log_start = 0

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def poll(self, execution_arn: str) -> dict:
        described = self.sfn.describe_execution(executionArn=execution_arn)
        history = self.sfn.get_execution_history(
            executionArn=execution_arn, reverseOrder=True, maxResults=100
        )
        name = job_name_from_history(history["events"])
        if name and name != self.job_name:
            self.job_name, self.job_state = name, None
            links = console_links(execution_arn, name)
            self.print(f"training job {name}\n  job:  {links['job']}\n  logs: {links['logs']}")
        if self.job_name:
            self._job_status()
            self._job_logs()
        return described

    def _job_status(self) -> None:
        from botocore.exceptions import ClientError

        try:
            job = self.sagemaker.describe_training_job(TrainingJobName=self.job_name)
        except ClientError as error:
            # The history names a job a moment before SageMaker knows it.
            if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return
            raise
        state = (job["TrainingJobStatus"], job.get("SecondaryStatus", ""))
        if state != self.job_state:
            self.job_state = state
            transitions = job.get("SecondaryStatusTransitions") or [{}]
            message = transitions[-1].get("StatusMessage", "")
            self.print(f"job {self.job_name}: {state[0]}/{state[1]} {message}".rstrip())

    def _job_logs(self) -> None:
        from botocore.exceptions import ClientError

        token = None
        while True:
            kwargs = {"nextToken": token} if token else {}
            try:
                page = self.logs.filter_log_events(
                    logGroupName=TRAINING_LOG_GROUP,
                    logStreamNamePrefix=f"{self.job_name}/",
                    startTime=self.log_start,
                    **kwargs,
                )
            except ClientError as error:
                # No log group or stream until the job's first instance starts.
                if error.response["Error"]["Code"] == "ResourceNotFoundException":
                    return
                raise
            for event in sorted(page.get("events", []), key=lambda e: (e["timestamp"], e["eventId"])):
                if event["eventId"] in self.seen_events:
                    continue
                self.seen_events.add(event["eventId"])
                self.log_start = max(self.log_start, event["timestamp"])
                if self.metrics_only:
                    metrics = metrics_line(event["message"])
                    if metrics:
                        self.print(metrics)
                else:
                    self.print(log_line(event))
            token = page.get("nextToken")
            if not token:
                return


def follow(
    follower: Follower,
    execution_arn: str,
    *,
    poll_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll until the execution ends; return its final description."""
    while True:
        described = follower.poll(execution_arn)
        if described["status"] in DONE:
            return described
        sleep(poll_seconds)


# ---------------------------------------------------------------------------------------------------
# Commands


def parse_args(argv: list[str], default_stack: str) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--stack", default=default_stack, help=f"the TrainingPipeline stack ({default_stack})"
    )
    common.add_argument("--state-machine-arn", help="default: the stack's output")
    common.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    prog = "python -m training_pipeline.launch"
    if argv and argv[0] == "stop":
        parser = argparse.ArgumentParser(
            prog=f"{prog} stop", parents=[common], description="Stop an execution"
        )
        parser.add_argument("execution", help="the execution's name or ARN")
    elif argv and argv[0] == "status":
        parser = argparse.ArgumentParser(prog=f"{prog} status", parents=[common], description="Executions")
        parser.add_argument("--limit", type=int, default=10, help="how many, newest first (default 10)")
    else:
        parser = argparse.ArgumentParser(
            prog=prog,
            parents=[common],
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument(
            "request", type=Path, help="the request, a JSON file (examples/training-requests/)"
        )
        parser.add_argument("--data-bucket", help="the data bucket (default: the stack's output)")
        parser.add_argument("--name", help="execution name (default: <adapter_name>-<date>-<time>)")
        parser.add_argument("--wait", action="store_true", help="follow the execution until it ends")
        parser.add_argument("--metrics-only", action="store_true", help="with --wait: metrics, not log lines")
        parser.add_argument("--poll-seconds", type=float, default=15.0, help="with --wait (default 15)")
        checks = parser.add_mutually_exclusive_group()
        checks.add_argument("--validate-only", action="store_true", help="judge offline; no AWS call")
        checks.add_argument("--dry-run", action="store_true", help="judge with the S3 checks; start nothing")
    try:
        return parser.parse_args(argv[1:] if argv and argv[0] in COMMANDS else argv)
    except SystemExit as exit_:
        # argparse has printed the usage and the error; keep the documented status.
        raise UsageError("") if exit_.code else exit_ from None


class Aws:
    """Clients of one session, and the stack's outputs read once."""

    def __init__(self, args: argparse.Namespace) -> None:
        import boto3

        self.session = boto3.session.Session(region_name=args.region)
        self.args = args
        self._outputs: dict[str, str] | None = None

    def client(self, name: str) -> Any:
        return self.session.client(name)

    def output(self, key: str) -> str:
        if self._outputs is None:
            from botocore.exceptions import ClientError

            try:
                stack = self.client("cloudformation").describe_stacks(StackName=self.args.stack)["Stacks"][0]
            except ClientError as error:
                if "does not exist" in error.response["Error"]["Message"]:
                    raise AwsAccessError(
                        f"stack {self.args.stack} does not exist in {self.session.region_name}: deploy it, "
                        "or pass --stack or --state-machine-arn"
                    ) from None
                raise
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return self._outputs[key]

    def state_machine_arn(self) -> str:
        return self.args.state_machine_arn or self.output("StateMachineArn")


def _report_problems(problems: list[str], path: Path, err: TextIO) -> int:
    print(f"{path}: invalid request, nothing was started:", file=err)
    for problem in problems:
        print(f"  {problem}", file=err)
    return INVALID


def start(args: argparse.Namespace, deployment: Deployment, out: TextIO, err: TextIO) -> int:
    request = load_request(args.request)
    if args.validate_only:
        # Offline: S3 URIs are checked against --data-bucket when given, else against any bucket.
        problems = request_problems(request, deployment, args.data_bucket)
        if problems:
            return _report_problems(problems, args.request, err)
        print(f"{args.request}: valid (offline checks; --dry-run also checks S3)", file=out)
        return OK
    aws = Aws(args)
    bucket = args.data_bucket or aws.output("DataBucketName")
    now = datetime.now(UTC)
    judged = verdict(
        request,
        deployment,
        data_bucket=bucket,
        volume_kms_key="(project key)",
        started=now,
        s3=aws.client("s3"),
    )
    if not judged["valid"]:
        return _report_problems(judged["cause"].split("\n"), args.request, err)
    plan = judged["plan"]
    resources = plan["resources"]
    summary = (
        f"{resources['InstanceCount']} x {resources['InstanceType']}, recipe {plan['recipe']}, "
        f"{len(plan['hyperparameters'])} hyperparameters, channels "
        f"{', '.join(c['ChannelName'] for c in plan['channels'])}"
    )
    if args.dry_run:
        print(f"{args.request}: valid; would train adapter {plan['adapter_name']} on {summary}", file=out)
        return OK
    sfn = aws.client("stepfunctions")
    name = args.name or default_execution_name(plan["adapter_name"], now)
    try:
        started = sfn.start_execution(
            stateMachineArn=aws.state_machine_arn(), name=name, input=json.dumps(request)
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        raise UsageError(f"an execution named {name} exists already; give another --name") from None
    except sfn.exceptions.InvalidName as error:
        raise UsageError(f"--name {name!r}: {error.response['Error']['Message']}") from None
    arn = started["executionArn"]
    print(f"started {arn}\n  {summary}\n  console: {console_links(arn)['execution']}", file=out, flush=True)
    if not args.wait:
        print(f"  follow: python -m training_pipeline.launch status; stop: ... stop {name}", file=out)
        return OK
    follower = Follower(sfn, aws.client("sagemaker"), aws.client("logs"), out, metrics_only=args.metrics_only)
    described = follow(follower, arn, poll_seconds=args.poll_seconds)
    return finish(described, out, err)


def finish(described: Mapping[str, Any], out: TextIO, err: TextIO) -> int:
    if described["status"] == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        print(f"succeeded: adapter {output.get('adapter_name')}\n{json.dumps(output, indent=2)}", file=out)
        return OK
    summary = failure_summary(described.get("error"), described.get("cause"))
    print(f"{described['status'].lower()}: {summary}", file=err)
    return FAILED


def stop(args: argparse.Namespace, out: TextIO) -> int:
    from botocore.exceptions import ClientError

    aws = Aws(args)
    arn = execution_arn_for(aws.state_machine_arn(), args.execution)
    sfn = aws.client("stepfunctions")
    try:
        described = sfn.describe_execution(executionArn=arn)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ExecutionDoesNotExist":
            raise UsageError(f"no execution {args.execution} of {aws.state_machine_arn()}") from None
        raise
    if described["status"] != "RUNNING":
        print(f"{arn} has already ended: {described['status']}", file=out)
        return OK
    sfn.stop_execution(
        executionArn=arn, error="StoppedByUser", cause="python -m training_pipeline.launch stop"
    )
    print(f"stopped {arn}", file=out)
    history = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=100)
    job_name = job_name_from_history(history["events"])
    if job_name:
        stop_job(aws.client("sagemaker"), job_name, out)
    return OK


def stop_job(sagemaker: Any, job_name: str, out: TextIO) -> None:
    """Step Functions stops a `.sync` job with its execution; this makes sure, and says where it stands."""
    from botocore.exceptions import ClientError

    status = sagemaker.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"]
    if status == "InProgress":
        try:
            sagemaker.stop_training_job(TrainingJobName=job_name)
        except ClientError as error:
            # Already stopping (Step Functions was first): nothing more to do.
            if error.response["Error"]["Code"] != "ValidationException":
                raise
        status = "Stopping"
    print(f"training job {job_name}: {status}", file=out)


def status(args: argparse.Namespace, out: TextIO) -> int:
    aws = Aws(args)
    machine = aws.state_machine_arn()
    sfn = aws.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=machine, maxResults=args.limit)
    rows = [("NAME", "STATUS", "STARTED (UTC)", "ADAPTER")]
    for execution in listed["executions"]:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        try:
            adapter = json.loads(described.get("input") or "{}").get("adapter_name", "-")
        except (json.JSONDecodeError, AttributeError):
            adapter = "-"
        started = execution["startDate"].astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        rows.append((execution["name"], execution["status"], started, str(adapter)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out
        )
    return OK


def main(argv: list[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    from project_config.checks import ConfigError

    argv = sys.argv[1:] if argv is None else argv
    try:
        deployment, prefix = repo_deployment()
        args = parse_args(argv, f"{prefix}-TrainingPipeline")
        if argv and argv[0] == "stop":
            return stop(args, out)
        if argv and argv[0] == "status":
            return status(args, out)
        return start(args, deployment, out, err)
    except UsageError as error:
        if str(error):
            print(f"error: {error}", file=err)
        return INVALID
    except ConfigError as error:
        print(f"error: cdk.json: {error}", file=err)
        return INVALID
    except (NoCredentialsError, NoRegionError) as error:
        print(f"AWS: {error} (configure credentials and a region, or pass --region)", file=err)
        return AWS_ACCESS
    except AwsAccessError as error:
        print(f"AWS: {error}", file=err)
        return AWS_ACCESS
    except ClientError as error:
        details = error.response["Error"]
        print(f"AWS: {details.get('Code')}: {details.get('Message')}", file=err)
        return AWS_ACCESS
    except BotoCoreError as error:
        print(f"AWS: {error}", file=err)
        return AWS_ACCESS
    except KeyboardInterrupt:
        print("stopped following; the execution goes on (see: ... status, ... stop NAME)", file=err)
        return 130


if __name__ == "__main__":
    sys.exit(main())
