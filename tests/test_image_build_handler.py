"""The image-build custom resource handlers, against stubbed CodeBuild and ECR clients."""

import boto3
import pytest
from botocore.stub import Stubber

from image_build import handler

PROPS = {
    "ProjectName": "ImageBuild-abc",
    "RepositoryName": "llmft-training",
    "ImageTag": "f" * 64,
    "ImageUri": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/llmft-training:{'f' * 64}",
}


def _clients():
    codebuild = boto3.client("codebuild", region_name="eu-west-1")
    ecr = boto3.client("ecr", region_name="eu-west-1")
    return codebuild, ecr


def _event(request_type: str, **extra) -> dict:
    return {"RequestType": request_type, "ResourceProperties": PROPS, **extra}


def _build(status: str, **extra) -> dict:
    return {"id": "ImageBuild-abc:1234", "buildStatus": status, **extra}


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_start_a_build_of_the_new_tag(request_type):
    codebuild, ecr = _clients()
    with Stubber(codebuild) as cb, Stubber(ecr) as registry:
        registry.add_client_error(
            "describe_images",
            service_error_code="ImageNotFoundException",
            expected_params={
                "repositoryName": "llmft-training",
                "imageIds": [{"imageTag": PROPS["ImageTag"]}],
            },
        )
        cb.add_response(
            "start_build",
            {"build": _build("IN_PROGRESS")},
            expected_params={
                "projectName": "ImageBuild-abc",
                "environmentVariablesOverride": [
                    {"name": "IMAGE_TAG", "value": PROPS["ImageTag"], "type": "PLAINTEXT"}
                ],
            },
        )
        result = handler.on_event(_event(request_type), codebuild=codebuild, ecr=ecr)
        cb.assert_no_pending_responses()
    assert result["PhysicalResourceId"] == PROPS["ImageUri"], "the physical ID must be the image URI"
    assert result["Data"] == {"ImageUri": PROPS["ImageUri"], "BuildId": "ImageBuild-abc:1234"}


def test_an_image_already_in_ecr_is_not_rebuilt():
    codebuild, ecr = _clients()
    with Stubber(codebuild), Stubber(ecr) as registry:
        registry.add_response("describe_images", {"imageDetails": [{"imageTags": [PROPS["ImageTag"]]}]})
        result = handler.on_event(_event("Create"), codebuild=codebuild, ecr=ecr)
    assert result["Data"]["BuildId"] == "", "an existing immutable tag must not start a build"
    assert handler.is_complete({**_event("Create"), **result})["IsComplete"] is True


def test_delete_calls_nothing_and_keeps_the_physical_id():
    codebuild, ecr = _clients()
    with Stubber(codebuild), Stubber(ecr):
        # Any call on a stubbed client without a queued response would raise.
        result = handler.on_event(
            _event("Delete", PhysicalResourceId="old-uri"), codebuild=codebuild, ecr=ecr
        )
        done = handler.is_complete(_event("Delete", PhysicalResourceId="old-uri"), codebuild=codebuild)
    assert result == {"PhysicalResourceId": "old-uri"}
    assert done == {"IsComplete": True}


def _check(build: dict) -> dict:
    codebuild, _ = _clients()
    event = _event("Create", PhysicalResourceId=PROPS["ImageUri"], Data={"BuildId": build["id"]})
    with Stubber(codebuild) as cb:
        cb.add_response("batch_get_builds", {"builds": [build]}, expected_params={"ids": [build["id"]]})
        return handler.is_complete(event, codebuild=codebuild)


def test_a_running_build_is_not_complete():
    assert _check(_build("IN_PROGRESS")) == {"IsComplete": False}


def test_a_succeeded_build_completes_with_the_image_uri():
    result = _check(_build("SUCCEEDED"))
    assert result["IsComplete"] is True
    assert result["Data"]["BuildId"] == "ImageBuild-abc:1234"


@pytest.mark.parametrize("status", ["FAILED", "FAULT", "STOPPED", "TIMED_OUT"])
def test_a_failed_or_stopped_build_fails_the_deploy_with_its_reason(status):
    build = _build(
        status,
        phases=[
            {"phaseType": "PRE_BUILD", "phaseStatus": "SUCCEEDED"},
            {
                "phaseType": "BUILD",
                "phaseStatus": "FAILED",
                "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "docker build exit 1"}],
            },
        ],
        logs={"deepLink": "https://console.aws.amazon.com/cloudwatch/logs"},
    )
    with pytest.raises(RuntimeError) as error:
        _check(build)
    message = str(error.value)
    assert f"ended {status}" in message, message
    assert "phase BUILD FAILED: docker build exit 1" in message, message
    assert "PRE_BUILD" not in message, "succeeded phases are noise in the reason"
    assert "logs: https://console.aws.amazon.com" in message, message
