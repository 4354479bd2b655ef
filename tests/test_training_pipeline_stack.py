"""TrainingPipeline stack: the state machine's settings, the roles' least privilege, the topic."""

import json
import subprocess

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.conftest import FULL_TEST_CONFIG, ROOT, synthesize
from tests.pipeline_moto import TEST_VALUES, render, state_machine_properties

ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


@pytest.fixture(params=["default_app", "full_app"])
def synthesized(request):
    return request.getfixturevalue(request.param)


def _policy_statements(template, role_id_fragment: str) -> list[dict]:
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if role_id_fragment in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements, f"no policy attached to a role matching {role_id_fragment}"
    return statements


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def _statements_with(statements: list[dict], action: str) -> list[dict]:
    return [s for s in statements if action in _actions(s)]


def test_standard_state_machine_with_tracing_and_full_logging(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    properties = state_machine_properties(template)
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is True, logging
    template.has_resource(
        "AWS::Logs::LogGroup",
        {"Properties": {"KmsKeyId": Match.any_value(), "RetentionInDays": 90}, "DeletionPolicy": "Retain"},
    )


def test_rendered_definition_passes_the_asl_validator(synthesized, tmp_path):
    template = synthesized.template(synthesized.stacks.training_pipeline)
    values = {**TEST_VALUES, "TopicArn": "arn:aws:sns:us-east-1:123456789012:llmft"}
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(render(template, values, fast_waits=False)))
    result = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_definition_substitutions_are_references_not_names(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    substitutions = state_machine_properties(template)["DefinitionSubstitutions"]
    image = json.dumps(substitutions["TrainingImage"])
    assert "LlmFt-TrainingImage" in image and "ImageUri" in image, "the image URI comes from the build"
    assert substitutions["TrainingRoleArn"]["Fn::GetAtt"][0].startswith("PipelineTrainingRole")
    assert {"Subnet0", "Subnet1", "SecurityGroupId", "DataBucket", "KmsKeyArn", "TopicArn"} <= set(
        substitutions
    )
    assert "HfTokenSecretArn" not in substitutions, "no secret is configured by default"


def test_pass_role_only_for_the_training_role_and_only_to_sagemaker(synthesized):
    template = synthesized.template(synthesized.stacks.training_pipeline)
    pass_role = [
        s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "iam:PassRole" in _actions(s)
    ]
    assert len(pass_role) == 1, pass_role
    (statement,) = pass_role
    assert _actions(statement) == ["iam:PassRole"]
    assert statement["Resource"]["Fn::GetAtt"][0].startswith("PipelineTrainingRole"), statement["Resource"]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_state_machine_may_start_training_jobs_and_write_only_manifests(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    statements = _policy_statements(template, "StateMachineRole")
    sagemaker = {a for s in statements for a in _actions(s) if a.startswith("sagemaker:")}
    assert sagemaker == {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:AddTags"}
    (put,) = _statements_with(statements, "s3:PutObject")
    assert json.dumps(put["Resource"]).endswith('/adapters/*/manifest.json"]]}'), put["Resource"]
    (listing,) = _statements_with(statements, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["adapters/*"]}}
    assert not [
        a for s in statements for a in _actions(s) if a in ("s3:*", "s3:DeleteObject", "s3:GetObject")
    ]


def test_training_role_reads_inputs_and_writes_only_outputs(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]
            }
        },
    )
    statements = _policy_statements(template, "TrainingRole")
    (read,) = _statements_with(statements, "s3:GetObject")
    (write,) = _statements_with(statements, "s3:PutObject")
    read_prefixes = sorted(json.dumps(r).split("/")[-2] for r in read["Resource"])
    write_prefixes = sorted(json.dumps(r).split("/")[-2] for r in write["Resource"])
    assert read_prefixes == ["checkpoints", "datasets", "models"], read_prefixes
    assert write_prefixes == ["checkpoints", "training"], write_prefixes
    all_actions = {a for s in statements for a in _actions(s)}
    assert not {"s3:*", "s3:DeleteObject", "s3:PutObjectAcl", "secretsmanager:GetSecretValue"} & all_actions
    (grant,) = _statements_with(statements, "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_training_role_reads_only_the_configured_token_secret(full_app):
    template = full_app.template(full_app.stacks.training_pipeline)
    statements = _policy_statements(template, "TrainingRole")
    (secret,) = _statements_with(statements, "secretsmanager:GetSecretValue")
    assert json.dumps(secret["Resource"]).endswith(':secret:llmft/hf-token-??????"]]}'), secret["Resource"]
    substitutions = state_machine_properties(template)["DefinitionSubstitutions"]
    assert ":secret:llmft/hf-token" in json.dumps(substitutions["HfTokenSecretArn"])


def test_notifications_are_kms_encrypted_tls_only_and_mailed_when_configured(default_app, full_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    policy = json.dumps(template.find_resources("AWS::SNS::TopicPolicy"))
    assert '"aws:SecureTransport": "false"' in policy, "publishing over plain HTTP must be denied"
    template.resource_count_is("AWS::SNS::Subscription", 0)
    full_app.template(full_app.stacks.training_pipeline).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ml-team@example.com"}
    )


def test_outputs_give_the_launcher_what_it_needs(default_app):
    outputs = default_app.template(default_app.stacks.training_pipeline).find_outputs("*")
    assert {"StateMachineArn", "DataBucketName", "NotificationTopicArn", "TrainingRoleArn"} <= set(outputs)


def test_timeout_covers_every_capacity_attempt(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    definition = json.loads(state_machine_properties(template)["DefinitionString"])
    # 3 attempts x (72 h runtime + 24 h spot wait + 10 min capacity wait) + 1 h
    assert definition["TimeoutSeconds"] == 3 * ((72 + 24) * 3600 + 600) + 3600


@pytest.mark.parametrize("max_runtime_hours", [1, 72, 672])
def test_polling_for_the_longest_execution_fits_the_history_limit(tmp_path_factory, max_runtime_hours):
    """A Standard execution fails at 25,000 history events; each poll (Wait, Describe, Choice) adds 9."""
    spot_wait = 1 if max_runtime_hours == 1 else 24
    training = {
        "max_runtime_hours": max_runtime_hours,
        "default_max_runtime_hours": 1,
        "spot_extra_wait_hours": spot_wait,
    }
    app = synthesize(tmp_path_factory.mktemp("cdk-poll"), {"training": training})
    template = app.template(app.stacks.training_pipeline)
    definition = json.loads(state_machine_properties(template)["DefinitionString"])
    poll = definition["States"]["Wait for job"]["Seconds"]
    polls = definition["TimeoutSeconds"] / poll
    assert polls * 9 <= 24_000, f"{polls:.0f} polls of {poll} s exceed the history limit"
    assert poll % 60 == 0 and poll >= 60, poll
    if max_runtime_hours == 1:
        assert poll == 60, "short jobs are polled every minute"


def test_a_fixed_environment_has_no_unsuppressed_nag_finding_either(tmp_path_factory):
    """Suppressions match ARNs whether partition, region, account and references are tokens or literals."""
    app = synthesize(
        tmp_path_factory.mktemp("cdk-pipeline-fixed-env"),
        {
            **FULL_TEST_CONFIG,
            "account": "123456789012",
            "region": "eu-west-1",
            "network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]},
        },
    )
    message = Match.string_like_regexp("AwsSolutions-")
    for stack in (app.stacks.training_image, app.stacks.training_pipeline):
        annotations = Annotations.from_stack(stack)
        findings = annotations.find_error("*", message) + annotations.find_warning("*", message)
        assert not findings, [str(f.entry.data)[:200] for f in findings]
