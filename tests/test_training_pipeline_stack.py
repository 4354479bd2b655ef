"""TrainingPipeline stack: the state machine's settings, the roles' least privilege, the topic."""

import json
import subprocess

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.conftest import FULL_TEST_CONFIG, ROOT, synthesize
from tests.pipeline_moto import TEST_VALUES, definition_text, render, state_machine_properties

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


def test_execution_data_is_under_the_project_key_and_only_this_machine_may_use_it(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    properties = state_machine_properties(template)
    encryption = properties["EncryptionConfiguration"]
    assert encryption["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    assert "StoreProjectKey" in json.dumps(encryption["KmsKeyId"])
    assert properties["StateMachineName"] == "LlmFt-TrainingPipeline-Training"
    (key_use,) = [
        s
        for s in _policy_statements(template, "StateMachineRole")
        if "kms:EncryptionContext:aws:states:stateMachineArn" in json.dumps(s)
    ]
    machine_arn = key_use["Condition"]["StringEquals"]["kms:EncryptionContext:aws:states:stateMachineArn"]
    # CDK builds this ARN from the machine's name; with a generated name it would end in "stateMachine:".
    assert machine_arn["Fn::Join"][1][-1] == ":stateMachine:LlmFt-TrainingPipeline-Training", machine_arn


def test_rendered_definition_passes_the_asl_validator(synthesized, tmp_path):
    template = synthesized.template(synthesized.stacks.training_pipeline)
    values = {**TEST_VALUES, "TopicArn": "arn:aws:sns:us-east-1:123456789012:llmft"}
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(render(template, values)))
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
    assert substitutions["ValidatorFunctionArn"]["Fn::GetAtt"][0].startswith("PipelineValidator")
    assert substitutions["RecorderFunctionArn"]["Fn::GetAtt"][0].startswith("PipelineRecorder")
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
    # training/: an earlier job's model.tar.gz, when a request continues its adapter (base_adapter).
    assert read_prefixes == ["checkpoints", "datasets", "models", "training"], read_prefixes
    assert write_prefixes == ["checkpoints", "training"], write_prefixes
    all_actions = {a for s in statements for a in _actions(s)}
    assert not {"s3:*", "s3:DeleteObject", "s3:PutObjectAcl", "secretsmanager:GetSecretValue"} & all_actions
    (grant,) = _statements_with(statements, "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_training_role_changes_network_interfaces_only_in_the_projects_vpc(default_app):
    statements = _policy_statements(
        default_app.template(default_app.stacks.training_pipeline), "TrainingRole"
    )
    (changes,) = _statements_with(statements, "ec2:CreateNetworkInterface")
    assert sorted(_actions(changes)) == [
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
    ]
    assert list(changes["Condition"]) == ["ArnEquals"]
    vpc = changes["Condition"]["ArnEquals"]["ec2:Vpc"]
    assert "NetworkVpc" in json.dumps(vpc) and ":vpc/" in json.dumps(vpc), vpc
    # What stays on "*": calls that take no resource (CDK merges ECR's login into the same statement).
    (describe,) = _statements_with(statements, "ec2:DescribeSubnets")
    assert all(a.startswith("ec2:Describe") or a == "ecr:GetAuthorizationToken" for a in _actions(describe))


def test_a_customer_key_on_the_token_secret_is_usable_only_through_secrets_manager(tmp_path_factory):
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    app = synthesize(
        tmp_path_factory.mktemp("cdk-hf-key"),
        {"training": {"hf_token_secret_name": "llmft/hf-token", "hf_token_kms_key_arn": key_arn}},
    )
    statements = _policy_statements(app.template(app.stacks.training_pipeline), "TrainingRole")
    (decrypt,) = [s for s in statements if s["Resource"] == key_arn]
    assert _actions(decrypt) == ["kms:Decrypt"]
    via = decrypt["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == {"Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}


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


def test_timeout_covers_every_capacity_attempt(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    definition = json.loads(definition_text(state_machine_properties(template)))
    # 3 attempts x (72 h runtime + 24 h spot wait + 10 min capacity wait) + 1 h
    assert definition["TimeoutSeconds"] == 3 * ((72 + 24) * 3600 + 600) + 3600


def test_the_graph_a_developer_sees_has_at_most_15_states(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    states = json.loads(definition_text(state_machine_properties(template)))["States"]
    assert list(states) == [
        "Receive request",
        "Validate request",
        "Request valid?",
        "Invalid request",
        "Train",
        "Capacity to retry?",
        "Wait for capacity",
        "Next attempt",
        "Record adapter",
        "Notify success",
        "Adapter ready",
        "Failure report",
        "Notify failure",
        "Failed",
    ]
    assert len(states) <= 15


def test_the_job_runs_through_the_sync_integration_in_the_stacks_partition(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    states = json.loads(definition_text(state_machine_properties(template)))["States"]
    resources = {name: state["Resource"] for name, state in states.items() if state["Type"] == "Task"}
    joined = state_machine_properties(template)["DefinitionString"]["Fn::Join"][1]
    assert joined.count({"Ref": "AWS::Partition"}) == len(resources), "each integration takes AWS::Partition"
    assert resources == {
        "Validate request": "arn:${Partition}:states:::lambda:invoke",
        "Train": "arn:${Partition}:states:::sagemaker:createTrainingJob.sync",
        "Record adapter": "arn:${Partition}:states:::lambda:invoke",
        "Notify success": "arn:${Partition}:states:::sns:publish",
        "Notify failure": "arn:${Partition}:states:::sns:publish",
    }


@pytest.mark.parametrize("app_name", ["default_app", "full_app"])
def test_no_template_writes_a_partition_literally(request, app_name):
    app = request.getfixturevalue(app_name)
    for path in app.template_files():
        text = path.read_text()
        assert "arn:aws:" not in text and "arn:aws-" not in text, f"{path.name} writes a partition literally"


def _role_statements(template, logical_prefix: str) -> list[dict]:
    return _policy_statements(template, logical_prefix)


def test_the_state_machine_may_run_stop_and_wait_for_jobs_and_write_nothing_to_s3(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    statements = _role_statements(template, "StateMachineRole")
    sagemaker = [s for s in statements if any(a.startswith("sagemaker:") for a in _actions(s))]
    (jobs,) = sagemaker
    # The `.sync` integration's documented needs: create, describe (wait), stop, tags.
    assert set(_actions(jobs)) == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:AddTags",
        "sagemaker:ListTags",
    }
    assert json.dumps(jobs["Resource"]).endswith(':training-job/*"]]}'), jobs["Resource"]
    (events,) = _statements_with(statements, "events:PutRule")
    assert set(_actions(events)) == {"events:PutTargets", "events:PutRule", "events:DescribeRule"}
    assert json.dumps(events["Resource"]).endswith(
        ':rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"]]}'
    )
    invoked = {
        json.dumps(r) for s in _statements_with(statements, "lambda:InvokeFunction") for r in s["Resource"]
    }
    assert all("PipelineValidator" in r or "PipelineRecorder" in r for r in invoked), invoked
    assert not [a for s in statements for a in _actions(s) if a.startswith("s3:")], "S3 is the functions' job"


def test_the_judge_only_looks_and_the_recorder_writes_only_manifests(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    judge = _role_statements(template, "PipelineValidatorRole")
    judge_actions = {a for s in judge for a in _actions(s)}
    assert judge_actions == {"s3:GetObject", "s3:ListBucket", "logs:CreateLogStream", "logs:PutLogEvents"}
    (read,) = _statements_with(judge, "s3:GetObject")
    assert sorted(json.dumps(r).split("/", 1)[1] for r in read["Resource"]) == [
        'adapters/*/manifest.json"]]}',
        'datasets/*"]]}',
        'models/*"]]}',
    ]
    (listing,) = _statements_with(judge, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["datasets/*", "models/*", "adapters/*"]}}

    recorder = _role_statements(template, "PipelineRecorderRole")
    (write,) = _statements_with(recorder, "s3:PutObject")
    assert set(_actions(write)) == {"s3:PutObject", "s3:GetObject"}
    assert json.dumps(write["Resource"]).endswith('"/adapters/*/manifest.json"]]}'), write["Resource"]
    (key,) = _statements_with(recorder, "kms:GenerateDataKey")
    assert set(_actions(key)) == {"kms:GenerateDataKey", "kms:Decrypt"}, "a manifest is written and read back"
    assert {a for s in recorder for a in _actions(s) if a.startswith("sagemaker:")} == {
        "sagemaker:DescribeTrainingJob"
    }
    assert not {a for s in recorder for a in _actions(s)} & {"s3:DeleteObject", "s3:*", "s3:PutObjectAcl"}


def test_functions_run_the_bundled_handlers_on_arm_with_encrypted_logs(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    functions = template.find_resources("AWS::Lambda::Function")
    handlers = sorted(f["Properties"]["Handler"] for f in functions.values())
    assert handlers == ["training_pipeline.handlers.record", "training_pipeline.handlers.validate"]
    for function in functions.values():
        properties = function["Properties"]
        assert (properties["Runtime"], properties["Architectures"]) == ("python3.14", ["arm64"])
        assert "DATA_BUCKET" in properties["Environment"]["Variables"]
    log_groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(log_groups) == 3 and all("KmsKeyId" in g["Properties"] for g in log_groups.values())


# The operation each Task calls, by its integration, for botocore's list of the errors it models.
OPERATIONS = {
    "lambda:invoke": ("lambda", "Invoke", "Lambda"),
    "sagemaker:createTrainingJob.sync": ("sagemaker", "CreateTrainingJob", "SageMaker"),
    "sns:publish": ("sns", "Publish", "SNS"),
}
# Names no service model lists, each from the Step Functions documentation: the Lambda integration's
# transient errors (Lambda best practices; aws-cdk-lib's LambdaInvoke retries the same), the optimized
# SageMaker integration's generic error (the guide's SageMaker training job example), and the States.*
# names the error-handling page defines.
DOCUMENTED_ELSEWHERE = {
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "SageMaker.AmazonSageMakerException",
    "States.TaskFailed",
    "States.ALL",
}


def test_every_retry_names_an_error_its_call_can_raise_and_every_task_has_a_catch(default_app):
    import botocore.session

    session = botocore.session.get_session()
    template = default_app.template(default_app.stacks.training_pipeline)
    states = json.loads(definition_text(state_machine_properties(template)))["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        integration = state["Resource"].split(":::", 1)[1]
        service, operation, prefix = OPERATIONS[integration]
        modeled = {
            error.name.removesuffix("Exception")
            for error in session.get_service_model(service).operation_model(operation).error_shapes
        }
        for retry in state["Retry"]:
            for error in retry["ErrorEquals"]:
                if error in DOCUMENTED_ELSEWHERE:
                    continue
                service_prefix, _, shape = error.partition(".")
                assert service_prefix == prefix and shape.removesuffix("Exception") in modeled, (
                    f"{name}: {error} is neither modeled for {operation} nor documented"
                )
        assert state["Catch"] and state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], (
            f"{name} has no Catch-all"
        )


def test_failures_end_in_a_notification_and_a_notification_never_decides_the_outcome(default_app):
    template = default_app.template(default_app.stacks.training_pipeline)
    states = json.loads(definition_text(state_machine_properties(template)))["States"]
    for name in ("Validate request", "Record adapter"):
        assert states[name]["Catch"][0]["Next"] == "Failure report", name
    assert states["Train"]["Catch"][0]["Next"] == "Capacity to retry?"
    assert states["Capacity to retry?"]["Default"] == "Failure report"
    assert states["Failure report"]["Next"] == "Notify failure"
    assert (states["Notify failure"]["Next"], states["Notify failure"]["Catch"][0]["Next"]) == (
        "Failed",
        "Failed",
    )
    assert (states["Notify success"]["Next"], states["Notify success"]["Catch"][0]["Next"]) == (
        "Adapter ready",
        "Adapter ready",
    )
