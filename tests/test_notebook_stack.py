"""Notebook stack: network and security settings, lifecycle config, role scope, example deployment."""

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Annotations, Match, Template
from cdk_nag import AwsSolutionsChecks

from constructs.llmft_notebook import EXAMPLES_DIR, EXAMPLES_PREFIX, PLATFORM_IDENTIFIER, lifecycle_scripts
from project_config import CONTEXT_KEY, load_config
from project_config.notebook import NotebookConfig
from stacks.data_stack import DataStack
from stacks.network_stack import NetworkStack
from stacks.notebook_stack import NotebookStack
from tests.conftest import CDK_JSON_CONTEXT, FULL_TEST_CONFIG, project_context, synthesize
from tests.test_gates import NAG_MESSAGE
from tools import nag_summary

INSTANCE = "AWS::SageMaker::NotebookInstance"


def one(template: Template, resource_type: str) -> tuple[str, dict]:
    resources = template.find_resources(resource_type)
    assert len(resources) == 1, f"expected one {resource_type}, found {list(resources)}"
    return next(iter(resources.items()))


def stack_output(value, stack_name: str, output_fragment: str) -> bool:
    """A weak cross-stack reference (Fn::GetStackOutput) to an output of `stack_name`."""
    ref = value.get("Fn::GetStackOutput", {}) if isinstance(value, dict) else {}
    return ref.get("StackName") == stack_name and output_fragment in ref.get("OutputName", "")


def flatten(value, refs: list) -> str:
    """A Fn::Join of strings and references as text; each reference becomes <ref> and is kept in `refs`."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(flatten(part, refs) for part in parts)
    refs.append(value)
    return "<ref>"


def policy_statements(template: Template, logical_id_fragment: str) -> list[dict]:
    policies = template.find_resources("AWS::IAM::Policy")
    matches = [p for logical_id, p in policies.items() if logical_id_fragment in logical_id]
    assert len(matches) == 1, f"expected one policy named like {logical_id_fragment}: {list(policies)}"
    return matches[0]["Properties"]["PolicyDocument"]["Statement"]


@pytest.fixture(scope="module")
def template(full_app) -> Template:
    return full_app.template(full_app.stacks.notebook)


def test_notebook_is_off_by_default(default_app):
    assert default_app.stacks.notebook is None, "the notebook costs money: only when enabled"


def test_instance_runs_in_a_private_workload_subnet_without_direct_internet(template):
    _, instance = one(template, INSTANCE)
    props = instance["Properties"]
    assert props["DirectInternetAccess"] == "Disabled"
    assert stack_output(props["SubnetId"], "LlmFt-Network", "VpcworkloadSubnet"), props["SubnetId"]
    assert len(props["SecurityGroupIds"]) == 1
    assert stack_output(props["SecurityGroupIds"][0], "LlmFt-Network", "NotebookSecurityGroup")


def test_instance_is_encrypted_imdsv2_only_without_root_on_the_current_platform(template):
    props = one(template, INSTANCE)[1]["Properties"]
    assert stack_output(props["KmsKeyId"], "LlmFt-Data", "StoreProjectKey"), "volume under the project key"
    assert props["InstanceMetadataServiceConfiguration"] == {"MinimumInstanceMetadataServiceVersion": "2"}
    assert props["RootAccess"] == "Disabled"
    assert props["PlatformIdentifier"] == PLATFORM_IDENTIFIER == "notebook-al2023-v1"
    assert (props["InstanceType"], props["VolumeSizeInGB"]) == ("ml.g5.2xlarge", 100)
    assert "NotebookInstanceName" not in props, "the name is generated"


def test_instance_settings_follow_the_config(tmp_path_factory):
    settings = {
        "enabled": True,
        "instance_type": "ml.g6e.xlarge",
        "volume_size_gb": 250,
        "root_access": True,
        "idle_timeout_minutes": 0,
    }
    app = synthesize(tmp_path_factory.mktemp("cdk-notebook-config"), {"notebook": settings})
    template = app.template(app.stacks.notebook)
    props = one(template, INSTANCE)[1]["Properties"]
    assert (props["InstanceType"], props["VolumeSizeInGB"], props["RootAccess"]) == (
        "ml.g6e.xlarge",
        250,
        "Enabled",
    )
    on_start = one(template, "AWS::SageMaker::NotebookInstanceLifecycleConfig")[1]["Properties"]["OnStart"]
    assert 'IDLE_TIMEOUT_MINUTES="0"' in flatten(on_start[0]["Content"]["Fn::Base64"], [])


def test_lifecycle_config_holds_the_rendered_scripts(template):
    lifecycle_id, lifecycle = one(template, "AWS::SageMaker::NotebookInstanceLifecycleConfig")
    props = lifecycle["Properties"]
    expected = lifecycle_scripts(config=NotebookConfig(), data_bucket="<ref>", state_machine_arn="<ref>")
    assert props["OnCreate"] == [{"Content": {"Fn::Base64": expected["on-create"]}}]
    refs: list = []
    assert flatten(props["OnStart"][0]["Content"]["Fn::Base64"], refs) == expected["on-start"]
    bucket = [ref for ref in refs if stack_output(ref, "LlmFt-Data", "RefStoreDataBucket")]
    machine = [ref for ref in refs if stack_output(ref, "LlmFt-TrainingPipeline", "RefPipelineStateMachine")]
    assert bucket and machine and len(bucket) + len(machine) == len(refs), refs
    instance = one(template, INSTANCE)[1]["Properties"]
    assert instance["LifecycleConfigName"] == {
        "Fn::GetAtt": [lifecycle_id, "NotebookInstanceLifecycleConfigName"]
    }


def test_role_is_assumed_by_sagemaker_only_and_carries_no_managed_policy(template):
    roles = template.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [{"Principal": {"Service": "sagemaker.amazonaws.com"}}]
                }
            }
        },
    )
    assert len(roles) == 1, roles
    role = next(iter(roles.values()))["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role


def test_role_reads_and_writes_only_its_data_prefixes(template):
    statements = policy_statements(template, "NotebookAccessPolicy")
    by_action = {str(statement["Action"]): statement for statement in statements}

    listing = by_action["s3:ListBucket"]
    assert listing["Condition"] == {
        "StringLike": {
            "s3:prefix": ["datasets/*", "models/*", "adapters/*", "training/*", "notebooks/examples/*"]
        }
    }

    def prefixes(statement: dict) -> list[str]:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        texts = []
        for resource in resources:
            refs: list = []
            texts.append(flatten(resource, refs))
            assert all(stack_output(ref, "LlmFt-Data", "StoreDataBucket") for ref in refs), refs
        return sorted(texts)

    assert prefixes(by_action["s3:GetObject"]) == sorted(
        f"<ref>/{prefix}*"
        for prefix in ["datasets/", "models/", "adapters/", "training/", "notebooks/examples/"]
    )
    assert prefixes(by_action[str(["s3:AbortMultipartUpload", "s3:PutObject"])]) == [
        "<ref>/datasets/*",
        "<ref>/training/notebook-*",
    ], "writes only to datasets/ and its own training/notebook-* artifacts"
    create_only = by_action["s3:PutObject"]
    assert prefixes(create_only) == ["<ref>/adapters/*"]
    # S3 User Guide, "Enforce conditional writes": the header must be present, so an existing adapter,
    # manifest or served archive is never replaced.
    assert create_only["Condition"] == {"Null": {"s3:if-none-match": "false"}}
    kms = by_action[str(["kms:Decrypt", "kms:GenerateDataKey"])]
    assert stack_output(kms["Resource"], "LlmFt-Data", "StoreProjectKey")
    assert list(kms["Condition"]["StringEquals"]) == ["kms:ViaService"], "the key only through S3"
    every_action = [
        a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert not any(a.endswith("*") or a.startswith(("s3:Delete", "iam:")) for a in every_action), every_action


def test_role_may_stop_only_its_own_instance(template):
    instance_id = one(template, INSTANCE)[0]
    assert policy_statements(template, "NotebookSelfStopPolicy") == [
        {
            "Action": "sagemaker:StopNotebookInstance",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [instance_id, "NotebookInstanceArn"]},
        }
    ]


def test_instance_waits_for_its_permissions_and_the_examples(template):
    instance = one(template, INSTANCE)[1]
    depends = instance.get("DependsOn", [])
    assert any("NotebookAccessPolicy" in d for d in depends), "on-start reads S3 on the first start"
    assert any("NotebookExamplesCustomResource" in d for d in depends), "examples copied on the first start"


def test_examples_are_deployed_under_their_prefix_only(template, full_app):
    _, deployment = one(template, "Custom::CDKBucketDeployment")
    props = deployment["Properties"]
    assert props["DestinationBucketKeyPrefix"] == EXAMPLES_PREFIX == "notebooks/examples/"
    assert props["Prune"] is True
    assert stack_output(props["DestinationBucketName"], "LlmFt-Data", "RefStoreDataBucket")
    deny = [s for s in policy_statements(template, "CDKBucketDeployment") if s["Effect"] == "Deny"]
    assert len(deny) == 1, "the handler's writes are fenced to the examples prefix"
    assert deny[0]["Action"] == ["s3:Abort*", "s3:DeleteObject*", "s3:PutObject*"]
    assert flatten(deny[0]["NotResource"], []) == "<ref>/notebooks/examples/*"
    # The asset staged for upload is the repository's notebook/examples folder.
    asset = full_app.out_dir / f"asset.{props['SourceObjectKeys'][0].removesuffix('.zip')}"
    shipped = sorted(str(p.relative_to(asset)) for p in asset.rglob("*") if p.is_file())
    assert shipped == sorted(str(p.relative_to(EXAMPLES_DIR)) for p in EXAMPLES_DIR.rglob("*") if p.is_file())


def test_the_examples_upload_logs_to_an_encrypted_log_group(template):
    template.has_resource(
        "AWS::Logs::LogGroup",
        {
            "Properties": {"RetentionInDays": 90, "KmsKeyId": Match.any_value()},
            "DeletionPolicy": "Retain",
        },
    )


# --- with a training state machine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_state_machine(tmp_path_factory):
    """The Notebook stack given a stand-in training state machine from a stack of its own."""
    context = {**CDK_JSON_CONTEXT, CONTEXT_KEY: project_context(FULL_TEST_CONFIG)}
    app = cdk.App(context=context, outdir=str(tmp_path_factory.mktemp("cdk-notebook-sfn")))
    config = load_config(context[CONTEXT_KEY])
    data = DataStack(app, "T-Data", config=config.data)
    network = NetworkStack(
        app, "T-Network", config=config.network, key=data.store.key, data_bucket=data.store.data_bucket
    )
    pipeline = cdk.Stack(app, "T-Pipeline")
    state_machine = sfn.StateMachine(
        pipeline, "Training", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(pipeline, "Train"))
    )
    notebook = NotebookStack(
        app,
        "T-Notebook",
        config=config.notebook,
        network=network.network,
        store=data.store,
        training_state_machine=state_machine,
    )
    cdk.Aspects.of(notebook).add(AwsSolutionsChecks())
    app.synth()
    state_machine_id = pipeline.get_logical_id(state_machine.node.default_child)
    return notebook, Template.from_stack(notebook), state_machine_id


def test_role_starts_exactly_the_training_state_machine(with_state_machine):
    _, template, state_machine_id = with_state_machine
    statements = [
        s
        for s in policy_statements(template, "NotebookRoleDefaultPolicy")
        if any(
            a.startswith("states:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        )
    ]
    start = [s for s in statements if s["Action"] == "states:StartExecution"]
    assert len(start) == 1, statements
    assert stack_output(start[0]["Resource"], "T-Pipeline", f"Ref{state_machine_id}"), start[0]["Resource"]
    describe = [s for s in statements if s["Action"] == "states:DescribeExecution"]
    assert len(describe) == 1, statements
    refs: list = []
    text = flatten(describe[0]["Resource"], refs)
    assert ":execution:" in text and text.endswith(":*"), text
    assert {s["Action"] for s in statements} == {"states:StartExecution", "states:DescribeExecution"}


def test_on_start_tells_the_examples_which_state_machine_to_use(with_state_machine):
    _, template, state_machine_id = with_state_machine
    on_start = one(template, "AWS::SageMaker::NotebookInstanceLifecycleConfig")[1]["Properties"]["OnStart"]
    refs: list = []
    text = flatten(on_start[0]["Content"]["Fn::Base64"], refs)
    assert 'TRAINING_STATE_MACHINE_ARN="<ref>"' in text
    assert any(stack_output(ref, "T-Pipeline", f"Ref{state_machine_id}") for ref in refs), refs


def test_the_state_machine_grant_passes_cdk_nag(with_state_machine):
    notebook, _, _ = with_state_machine
    annotations = Annotations.from_stack(notebook)
    findings = annotations.find_error("*", NAG_MESSAGE) + annotations.find_warning("*", NAG_MESSAGE)
    assert not findings, "\n".join(str(f.entry.data) for f in findings)


def test_nag_suppressions_are_exactly_the_documented_ones(full_app):
    lines = nag_summary.load_reports(full_app.out_dir)["LlmFt-Notebook"]
    suppressed = {
        (line["ruleId"], line["resourceId"].split("/", 1)[1].replace("8693BB64968944B69AAFB0CC9EB8756C", ""))
        for line in lines
        if line["compliance"] == nag_summary.SUPPRESSED
    }
    assert suppressed == {
        ("AwsSolutions-IAM5", "Notebook/AccessPolicy/Resource"),
        ("AwsSolutions-IAM5", "Notebook/Role/DefaultPolicy/Resource"),
        ("AwsSolutions-IAM4", "Custom::CDKBucketDeployment/ServiceRole/Resource"),
        ("AwsSolutions-IAM5", "Custom::CDKBucketDeployment/ServiceRole/DefaultPolicy/Resource"),
        ("AwsSolutions-L1", "Custom::CDKBucketDeployment/Resource"),
    }, "a suppression was added or widened: document it in docs/notebook.md"


def test_suppressions_still_match_in_a_fixed_environment(tmp_path_factory):
    """With an account and region, ARNs in findings carry literals instead of pseudo parameters."""
    app = synthesize(
        tmp_path_factory.mktemp("cdk-notebook-fixed-env"),
        {
            **FULL_TEST_CONFIG,
            "account": "123456789012",
            "region": "eu-west-1",
            "network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]},
        },
    )
    annotations = Annotations.from_stack(app.stacks.notebook)
    findings = annotations.find_error("*", NAG_MESSAGE) + annotations.find_warning("*", NAG_MESSAGE)
    assert not findings, "\n".join(str(f.entry.data) for f in findings)


def test_full_app_wires_the_pipeline_and_the_endpoint_into_the_role(template):
    """In the real app the role may start the project's training and call the project's endpoint."""
    statements = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_action = {s["Action"]: s["Resource"] for s in statements if isinstance(s["Action"], str)}
    assert stack_output(
        by_action["states:StartExecution"], "LlmFt-TrainingPipeline", "RefPipelineStateMachine"
    )
    assert stack_output(by_action["sagemaker:InvokeEndpoint"], "LlmFt-Inference", "RefLmiEndpoint")
    refs: list = []
    describe = flatten(by_action["states:DescribeExecution"], refs)
    assert describe.endswith(":execution:<ref>:*"), describe
    # The machine's Name attribute: an execution ARN is execution:<state machine name>:<execution>.
    assert stack_output(refs[-1], "LlmFt-TrainingPipeline", "FnGetAttPipelineStateMachine"), refs
    assert "Name" in refs[-1]["Fn::GetStackOutput"]["OutputName"], refs
    # The machine's data is under the project key: a data key to start, kms:Decrypt to describe, for it alone.
    context = "kms:EncryptionContext:aws:states:stateMachineArn"
    (decrypt,) = [s for s in statements if context in json.dumps(s.get("Condition", {}))]
    assert decrypt["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert stack_output(decrypt["Resource"], "LlmFt-Data", "StoreProjectKey")
    machine = decrypt["Condition"]["StringEquals"][context]
    assert stack_output(machine, "LlmFt-TrainingPipeline", "RefPipelineStateMachine"), machine
