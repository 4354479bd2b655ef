"""TrainingImage stack: the repository, the cloud-side build and the deploy-time wait for it."""

import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from constructs.llmft_training_image import BUILD_SPEC, TrainingImageBuild
from project_config.training import TrainingConfig
from tests.conftest import ROOT, synthesize


@pytest.fixture(scope="module")
def template(default_app) -> Template:
    return default_app.template(default_app.stacks.training_image)


def test_repository_scans_on_push_has_immutable_tags_kms_and_is_retained(template):
    template.has_resource(
        "AWS::ECR::Repository",
        {
            "Properties": {
                "ImageScanningConfiguration": {"ScanOnPush": True},
                "ImageTagMutability": "IMMUTABLE",
                "EncryptionConfiguration": {"EncryptionType": "KMS", "KmsKey": Match.any_value()},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_lifecycle_keeps_the_configured_number_of_images(template):
    repository = next(iter(template.find_resources("AWS::ECR::Repository").values()))
    policy = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
    selection = policy["rules"][0]["selection"]
    assert selection["countType"] == "imageCountMoreThan" and selection["countNumber"] == 10, policy


def test_build_is_privileged_encrypted_logged_and_outside_the_vpc(template):
    project = next(iter(template.find_resources("AWS::CodeBuild::Project").values()))["Properties"]
    assert project["Environment"]["PrivilegedMode"] is True, "docker build needs privileged mode"
    assert "EncryptionKey" in project, "build artifacts must use the project key"
    assert project["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"
    assert "VpcConfig" not in project, "the build must reach PyPI and the DLC registry without a NAT"
    assert project["TimeoutInMinutes"] == 55
    names = {v["Name"] for v in project["Environment"]["EnvironmentVariables"]}
    assert {"REPOSITORY_URI", "DLC_REGISTRY", "IMAGE_TAG"} <= names, names
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 90}
    )


def test_buildspec_logs_in_to_the_dlc_registry_and_pushes_in_the_build_phase(template):
    project = next(iter(template.find_resources("AWS::CodeBuild::Project").values()))["Properties"]
    spec = json.loads(project["Source"]["BuildSpec"])
    assert spec == BUILD_SPEC, "the deployed buildspec must be the one reviewed here"
    pre_build = " ".join(spec["phases"]["pre_build"]["commands"])
    build = spec["phases"]["build"]["commands"]
    assert "--password-stdin" in pre_build and '$LOGIN "$DLC_REGISTRY"' in pre_build, pre_build
    assert build[-1].startswith("docker push") and "post_build" not in spec["phases"]
    # The Dockerfile's FROM takes the whole registry host from the build: no domain is written there.
    dockerfile = (ROOT / "training_image" / "Dockerfile").read_text()
    assert "FROM ${BASE_REGISTRY}/pytorch-training:${BASE_TAG}" in dockerfile
    assert '--build-arg BASE_REGISTRY="$DLC_REGISTRY"' in " ".join(build)
    from_line = next(line for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert "amazonaws" not in from_line, from_line


def test_the_base_image_registry_is_in_the_partitions_domain(template):
    """DLC_REGISTRY is <account>.dkr.ecr.<region>.<AWS::URLSuffix>: amazonaws.com.cn in China."""
    project = next(iter(template.find_resources("AWS::CodeBuild::Project").values()))["Properties"]
    registry = next(v for v in project["Environment"]["EnvironmentVariables"] if v["Name"] == "DLC_REGISTRY")
    assert {"Ref": "AWS::URLSuffix"} in registry["Value"]["Fn::Join"][1], registry


def test_dlc_registry_account_is_configurable(tmp_path_factory):
    app = synthesize(
        tmp_path_factory.mktemp("cdk-dlc-account"), {"training": {"dlc_registry_account": "111122223333"}}
    )
    other = app.template(app.stacks.training_image)
    project = next(iter(other.find_resources("AWS::CodeBuild::Project").values()))["Properties"]
    registry = next(v for v in project["Environment"]["EnvironmentVariables"] if v["Name"] == "DLC_REGISTRY")
    assert "111122223333.dkr.ecr." in json.dumps(registry["Value"]), registry
    policies = json.dumps(other.find_resources("AWS::IAM::Policy"))
    assert ":111122223333:repository/pytorch-training" in policies, "the build must pull from that account"
    assert "763104351884" not in json.dumps(other.to_json()), "the default account must be gone"


def test_build_role_may_pull_only_the_pytorch_dlc_from_the_dlc_account(template):
    policies = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert ":763104351884:repository/pytorch-training" in policies
    assert ":763104351884:repository/*" not in policies


def test_deploy_waits_for_the_build_through_a_custom_resource(default_app, template):
    image = default_app.stacks.training_image.image
    template.has_resource_properties(
        "Custom::TrainingImageBuild",
        {
            "ImageTag": image.image_tag,
            "ServiceTimeout": "3600",
            "ProjectName": {"Ref": Match.string_like_regexp("ImageBuild")},
            "RepositoryName": {"Ref": Match.string_like_regexp("ImageRepository")},
        },
    )
    waiter = next(iter(template.find_resources("AWS::StepFunctions::StateMachine").values()))
    definition = json.dumps(waiter["Properties"]["DefinitionString"])
    # query interval 60 s x 60 attempts: the 1-hour maximum a deploy may wait for the build.
    assert '\\"IntervalSeconds\\":60,\\"MaxAttempts\\":60' in definition, definition[:400]
    assert waiter["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    assert waiter["Properties"]["TracingConfiguration"] == {"Enabled": True}
    role = waiter["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    traced = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if policy["Properties"]["Roles"] == [{"Ref": role}]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "xray:PutTraceSegments" in statement["Action"]
    ]
    assert len(traced) == 1, "the waiter's role may send its traces"


def test_handlers_use_own_roles_without_aws_managed_policies(template):
    for logical_id, role in template.find_resources("AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{logical_id} has a managed policy"


def test_image_uri_is_a_stack_output_read_from_the_finished_build(default_app, template):
    image = default_app.stacks.training_image.image
    assert len(image.image_tag) == 64 and int(image.image_tag, 16) >= 0, image.image_tag
    build = template.find_resources("Custom::TrainingImageBuild")
    (build_id,) = build
    uri = json.dumps(build[build_id]["Properties"]["ImageUri"])
    assert f":{image.image_tag}" in uri and "dkr.ecr" in uri, uri
    output = template.find_outputs("TrainingImageUri")["TrainingImageUri"]["Value"]
    assert output == {"Fn::GetAtt": [build_id, "ImageUri"]}, "consumers must get the URI once it is built"


def _tag_for(source_dir) -> str:
    stack = cdk.Stack(cdk.App(), "Probe")
    key = cdk.aws_kms.Key(stack, "Key")
    return TrainingImageBuild(
        stack, "Image", config=TrainingConfig(), key=key, source_dir=source_dir
    ).image_tag


def test_tag_changes_with_the_source_and_ignores_tests_and_caches(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    first = _tag_for(tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("assert True\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert _tag_for(tmp_path) == first, "tests and caches must not change the image tag"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nLABEL v=2\n")
    assert _tag_for(tmp_path) != first, "a changed source must get a new tag (and a build)"
