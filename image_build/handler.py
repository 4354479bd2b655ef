"""Custom resource handlers that make `cdk deploy` build the training image and wait for it.

`on_event` starts one CodeBuild build per new image tag (unless the tag is already in ECR, e.g. after
the stack was recreated over the retained repository); `is_complete` polls it. Deleting does nothing:
the repository and its images are retained. Runs in Lambda with boto3; tests pass stubbed clients.
"""

from __future__ import annotations

from typing import Any

DONE = "SUCCEEDED"
RUNNING = "IN_PROGRESS"


def _client(name: str) -> Any:
    import boto3

    return boto3.client(name)


def _image_exists(ecr: Any, repository: str, tag: str) -> bool:
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


def on_event(event: dict, context: Any = None, *, codebuild: Any = None, ecr: Any = None) -> dict:
    """Create/Update: start a build of the new tag. Delete: nothing (images are retained)."""
    props = event["ResourceProperties"]
    image_uri = props["ImageUri"]
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    ecr = ecr or _client("ecr")
    if _image_exists(ecr, props["RepositoryName"], props["ImageTag"]):
        print(f"{image_uri} is already in ECR; nothing to build")
        return {"PhysicalResourceId": image_uri, "Data": {"ImageUri": image_uri, "BuildId": ""}}
    codebuild = codebuild or _client("codebuild")
    build = codebuild.start_build(
        projectName=props["ProjectName"],
        environmentVariablesOverride=[{"name": "IMAGE_TAG", "value": props["ImageTag"], "type": "PLAINTEXT"}],
    )["build"]
    print(f"started build {build['id']} for {image_uri}")
    # The physical ID is the image URI: a new tag replaces the resource, and the old one's Delete is a no-op.
    return {"PhysicalResourceId": image_uri, "Data": {"ImageUri": image_uri, "BuildId": build["id"]}}


def failure_reason(build: dict) -> str:
    """The build's status, the phase that failed with its messages, and where its logs are."""
    parts = [f"build {build['id']} ended {build['buildStatus']}"]
    for phase in build.get("phases", []):
        status = phase.get("phaseStatus")
        if status and status != DONE:
            messages = "; ".join(c["message"] for c in phase.get("contexts", []) if c.get("message"))
            parts.append(f"phase {phase['phaseType']} {status}" + (f": {messages}" if messages else ""))
    link = build.get("logs", {}).get("deepLink")
    if link:
        parts.append(f"logs: {link}")
    return "; ".join(parts)


def is_complete(event: dict, context: Any = None, *, codebuild: Any = None) -> dict:
    """IsComplete once the build SUCCEEDED; raises with the build's reason when it failed or stopped."""
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    data = event.get("Data", {})
    if not data.get("BuildId"):
        return {"IsComplete": True, "Data": data}
    codebuild = codebuild or _client("codebuild")
    build = codebuild.batch_get_builds(ids=[data["BuildId"]])["builds"][0]
    status = build["buildStatus"]
    if status == DONE:
        return {"IsComplete": True, "Data": data}
    if status == RUNNING:
        return {"IsComplete": False}
    # FAILED, FAULT, STOPPED, TIMED_OUT: the deploy fails with the reason instead of waiting on.
    raise RuntimeError(failure_reason(build))
