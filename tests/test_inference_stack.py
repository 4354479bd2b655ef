"""Inference stack: LMI environment, LoRA options, image per region, KMS, VPC, autoscaling, role scope,
and the adapter registration workflow (rule, state machine paths, planner asset)."""

import json
import subprocess
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from inference.lmi import lmi_images
from tests.conftest import ROOT, synthesize
from tools import nag_summary

FIXED_ENV = {
    "account": "123456789012",
    "region": "eu-west-1",
    "network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]},
}


@pytest.fixture(scope="module")
def inference(full_app):
    return full_app.template(full_app.stacks.inference)


@pytest.fixture(scope="module")
def scale_to_zero_app(tmp_path_factory):
    """Fixed region, Hub model id, no instance storage (volume key allowed), scale to zero."""
    overrides = {
        **FIXED_ENV,
        "inference": {
            "enabled": True,
            "instance_type": "ml.p3.2xlarge",
            "base_model": "meta-llama/Llama-3.1-8B-Instruct",
            "min_copies": 0,
            "max_copies": 3,
            "max_instances": 3,
        },
    }
    return synthesize(tmp_path_factory.mktemp("cdk-inference-zero"), overrides)


def only(template, resource_type):
    resources = template.find_resources(resource_type)
    assert len(resources) == 1, f"expected one {resource_type}, found {list(resources)}"
    return next(iter(resources.values()))["Properties"]


def statements(template, policy_path):
    policies = template.find_resources("AWS::IAM::Policy")
    matches = [p for logical_id, p in policies.items() if logical_id.startswith(policy_path)]
    assert len(matches) == 1, f"expected one policy named {policy_path}*, found {list(policies)}"
    return matches[0]["Properties"]["PolicyDocument"]["Statement"]


def resources_of(statement):
    resources = statement["Resource"]
    return json.dumps(resources if isinstance(resources, list) else [resources])


def test_inference_is_not_deployed_by_default(default_app):
    assert default_app.stacks.inference is None, "the endpoint costs money: off unless enabled"


def test_container_runs_lmi_vllm_async_with_lora_from_the_data_bucket(inference):
    env = only(inference, "AWS::SageMaker::Model")["PrimaryContainer"]["Environment"]
    assert env["OPTION_ENTRYPOINT"] == "djl_python.lmi_vllm.vllm_async_service"
    assert env["OPTION_ASYNC_MODE"] == "true" and env["OPTION_ROLLING_BATCH"] == "disable"
    assert env["OPTION_ENABLE_LORA"] == "true"
    assert (env["OPTION_MAX_LORAS"], env["OPTION_MAX_CPU_LORAS"], env["OPTION_MAX_LORA_RANK"]) == (
        "4",
        "16",
        "64",
    )
    assert env["TENSOR_PARALLEL_DEGREE"] == "1" and env["OPTION_MAX_MODEL_LEN"] == "8192"
    model_id = json.dumps(env["HF_MODEL_ID"])
    assert model_id.startswith('{"Fn::Join": ["", ["s3://"') and "/models/base-model/" in model_id, model_id


def test_env_agnostic_image_comes_from_a_region_mapping_of_the_sdk_registry(inference):
    image = only(inference, "AWS::SageMaker::Model")["PrimaryContainer"]["Image"]
    assert image == {"Fn::FindInMap": ["LmiImages", {"Ref": "AWS::Region"}, "Uri"]}, image
    mapping = inference.to_json()["Mappings"]["LmiImages"]
    for region, release in lmi_images("0.38.0").items():
        assert mapping[region] == {"Uri": release.uri, "Registry": release.registry}, region


def test_fixed_region_uses_the_literal_image_uri(scale_to_zero_app):
    template = scale_to_zero_app.template(scale_to_zero_app.stacks.inference)
    image = only(template, "AWS::SageMaker::Model")["PrimaryContainer"]["Image"]
    assert image == lmi_images("0.38.0")["eu-west-1"].uri
    assert "Mappings" not in template.to_json(), "a fixed region needs no mapping"
    env = only(template, "AWS::SageMaker::Model")["PrimaryContainer"]["Environment"]
    assert env["HF_MODEL_ID"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_model_and_endpoint_run_in_the_private_subnets_with_the_inference_security_group(full_app, inference):
    network = full_app.template(full_app.stacks.network).to_json()["Resources"]
    group = next(k for k in network if k.startswith("NetworkInferenceSecurityGroup"))
    for resource_type in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig"):
        vpc_config = json.dumps(only(inference, resource_type)["VpcConfig"])
        assert group in vpc_config, f"{resource_type} must use the inference security group"
        assert vpc_config.count("workloadSubnet") == 2, f"{resource_type} must use both workload subnets"


def test_volume_key_is_set_unless_the_instance_has_hardware_encrypted_storage(inference, scale_to_zero_app):
    g5 = only(inference, "AWS::SageMaker::EndpointConfig")
    assert "KmsKeyId" not in g5, "SageMaker rejects KmsKeyId for ml.g5 (NVMe instance storage)"
    template = scale_to_zero_app.template(scale_to_zero_app.stacks.inference)
    p3 = only(template, "AWS::SageMaker::EndpointConfig")
    assert "ProjectKey" in json.dumps(p3["KmsKeyId"]), "an EBS-only instance must use the project key"


def test_endpoint_uses_inference_components_with_managed_instance_scaling(inference):
    config = only(inference, "AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert "ModelName" not in variant, "models attach through inference components, not the variant"
    assert variant["InstanceType"] == "ml.g5.2xlarge" and variant["InitialInstanceCount"] == 1
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 1,
        "MaxInstanceCount": 2,
    }
    assert "ExecutionRoleArn" in config, "an inference component endpoint needs its execution role"


def test_base_component_is_sized_for_an_8b_model(inference):
    component = only(inference, "AWS::SageMaker::InferenceComponent")
    spec = component["Specification"]
    assert spec["StartupParameters"] == {
        "ContainerStartupHealthCheckTimeoutInSeconds": 1800,
        "ModelDataDownloadTimeoutInSeconds": 1800,
    }
    assert spec["ComputeResourceRequirements"] == {
        "NumberOfAcceleratorDevicesRequired": 1,
        "MinMemoryRequiredInMb": 16384,
    }
    assert "BaseInferenceComponentName" not in spec
    assert component["RuntimeConfig"] == {"CopyCount": 1}


def test_copies_scale_on_invocations_per_copy(inference):
    target = only(inference, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ScalableDimension"] == "sagemaker:inference-component:DesiredCopyCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 2)
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in json.dumps(target["RoleARN"])
    policy = only(inference, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
    }
    assert tracking["TargetValue"] == 20
    inference.resource_count_is("AWS::CloudWatch::Alarm", 0)


def test_scale_to_zero_lets_instances_go_and_wakes_on_requests_without_capacity(scale_to_zero_app):
    template = scale_to_zero_app.template(scale_to_zero_app.stacks.inference)
    (variant,) = only(template, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["ManagedInstanceScaling"]["MinInstanceCount"] == 0
    target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    assert only(template, "AWS::SageMaker::InferenceComponent")["RuntimeConfig"] == {"CopyCount": 1}
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": Match.object_like(
                {
                    "AdjustmentType": "ChangeInCapacity",
                    "StepAdjustments": Match.array_with(
                        [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
                    ),
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"Namespace": "AWS/SageMaker", "MetricName": "NoCapacityInvocationFailures", "Threshold": 1},
    )


def test_execution_role_reads_only_its_base_model_and_the_adapters(inference, scale_to_zero_app):
    found = statements(inference, "LmiExecutionPolicy")
    by_sid = {statement["Sid"]: statement for statement in found}
    reads = resources_of(by_sid["ReadModelsAndAdapters"])
    assert by_sid["ReadModelsAndAdapters"]["Action"] == "s3:GetObject"
    # The configured base model's folder (cdk.json's models/base-model/), not every model in the bucket.
    assert '"/models/base-model/*"' in reads and '"/adapters/*"' in reads, reads
    assert '"/models/*"' not in reads and "/training/" not in reads, reads
    assert by_sid["ListModelsAndAdapters"]["Condition"] == {
        "StringLike": {"s3:prefix": ["models/base-model/*", "adapters/*"]}
    }
    # A Hub model id: nothing under models/ at all.
    hub = statements(scale_to_zero_app.template(scale_to_zero_app.stacks.inference), "LmiExecutionPolicy")
    hub_reads = resources_of(next(s for s in hub if s["Sid"] == "ReadModelsAndAdapters"))
    assert "/models/" not in hub_reads and '"/adapters/*"' in hub_reads, hub_reads
    assert by_sid["DecryptData"]["Action"] == "kms:Decrypt"
    actions = json.dumps([statement["Action"] for statement in found])
    assert "s3:PutObject" not in actions and "s3:*" not in actions, actions
    pull = by_sid["PullLmiImage"]
    assert "repository/djl-inference" in resources_of(pull) and "Registry" in resources_of(pull)
    assert by_sid["EndpointNetworkInterfaces"]["Condition"]["ArnEquals"]["ec2:Vpc"], "ENIs limited to the VPC"


def test_the_stack_owns_the_endpoints_log_group_under_the_project_key(inference):
    endpoint = inference.find_resources("AWS::SageMaker::Endpoint")
    ((endpoint_id, endpoint),) = endpoint.items()
    groups = {
        logical_id: group
        for logical_id, group in inference.find_resources("AWS::Logs::LogGroup").items()
        if "LogGroupName" in group["Properties"]
    }
    ((group_id, group),) = groups.items()
    name = endpoint["Properties"]["EndpointName"]
    prefix, suffix = name["Fn::Join"][1]
    # SageMaker writes an endpoint's logs to /aws/sagemaker/Endpoints/<EndpointName>.
    assert group["Properties"]["LogGroupName"] == {
        "Fn::Join": ["", [f"/aws/sagemaker/Endpoints/{prefix}", suffix]]
    }
    assert prefix == "llmft-lmi-", "lower case, as SageMaker writes endpoint names in ARNs"
    # The head of the stack's UUID: a redeploy after a deletion gets a new name, clear of the retained group.
    assert suffix["Fn::Select"][0] == 0 and "AWS::StackId" in json.dumps(suffix)
    assert group["Properties"]["RetentionInDays"] == 90 and "StoreProjectKey" in json.dumps(
        group["Properties"]
    )
    assert group["DeletionPolicy"] == "Retain"
    assert group_id in endpoint["DependsOn"], "the group exists before SageMaker writes to it"
    (logs,) = [s for s in statements(inference, "LmiExecutionPolicy") if s["Sid"] == "EndpointLogs"]
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == {"Fn::GetAtt": [group_id, "Arn"]}, "this endpoint's group only"


def test_manifest_events_of_the_data_bucket_start_the_registration(full_app, inference):
    rule = only(inference, "AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "adapters/*/manifest.json"}]
    assert "StoreDataBucket" in json.dumps(pattern["detail"]["bucket"]["name"])
    (target,) = rule["Targets"]
    assert "AdapterRegistrationStateMachine" in json.dumps(target["Arn"])


BUCKET = "llmft-data-test"
ENDPOINT = "LmiEndpoint-Ab12Cd34Ef56"
BASE_COMPONENT = "llmft--base"
TOPIC = "arn:aws:sns:us-east-1:123456789012:llmft-notifications"


def rendered_definition(template) -> dict:
    """The state machine definition with CloudFormation tokens replaced by test values."""
    machine = only(template, "AWS::StepFunctions::StateMachine")
    parts = machine["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(_placeholder(part) for part in parts))


def _placeholder(part) -> str:
    if isinstance(part, str):
        return part
    if part == {"Ref": "AWS::Partition"}:
        return "aws"
    if "Fn::GetAtt" in part and part["Fn::GetAtt"][1] == "Arn":
        # The only ARN inside the definition is the planner function's, in a Task's Resource.
        return f"arn:aws:lambda:us-east-1:123456789012:function:{part['Fn::GetAtt'][0]}"
    if "Fn::GetAtt" in part and part["Fn::GetAtt"][1] == "EndpointName":
        return ENDPOINT
    if "Fn::GetStackOutput" in part and "RefStoreDataBucket" in part["Fn::GetStackOutput"]["OutputName"]:
        return BUCKET
    if "Fn::GetStackOutput" in part and "Notifications" in part["Fn::GetStackOutput"]["OutputName"]:
        return TOPIC
    raise AssertionError(f"unexpected token in the definition: {part}")


@pytest.fixture(scope="module")
def definition(inference):
    return rendered_definition(inference)


def test_state_machine_is_logged_traced_and_bounded(inference):
    machine = only(inference, "AWS::StepFunctions::StateMachine")
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    assert "StoreProjectKey" in json.dumps(machine["EncryptionConfiguration"]["KmsKeyId"])
    assert machine["StateMachineName"] == "LlmFt-Inference-AdapterRegistration", "CDK's key grant names it"
    # The rule's role starts the machine; a data key for that machine's execution data, nothing more.
    (events_policy,) = [
        p
        for p in inference.find_resources("AWS::IAM::Policy")
        if p.startswith("AdapterRegistrationEventsRole")
    ]
    granted = inference.find_resources("AWS::IAM::Policy")[events_policy]["Properties"]["PolicyDocument"]
    (key_use,) = [s for s in granted["Statement"] if s["Action"] == "kms:GenerateDataKey"]
    context = key_use["Condition"]["StringEquals"]["kms:EncryptionContext:aws:states:stateMachineArn"]
    assert context == {"Ref": next(iter(inference.find_resources("AWS::StepFunctions::StateMachine")))}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    inference.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 90}
    )
    assert rendered_definition(inference)["TimeoutSeconds"] == 3600


def test_registration_reads_plans_releases_then_creates_or_updates(definition):
    states = definition["States"]
    assert definition["StartAt"] == "ReadManifest"
    assert states["ReadManifest"]["Resource"] == "arn:aws:states:::aws-sdk:s3:getObject"
    assert states["ReadManifest"]["ResultSelector"] == {"manifest.$": "States.StringToJson($.Body)"}
    assert states["ReadManifest"]["Next"] == "PlanRegistration"
    assert states["PlanRegistration"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FailureReport"}
    ], "a bad manifest (ManifestError) is reported like any other failure"
    assert states["PlanRegistration"]["Next"] == "ReleaseAdapter"
    assert states["ReleaseAdapter"]["Resource"].endswith(":s3:copyObject")
    assert states["ReleaseAdapter"]["Parameters"]["Key.$"] == "$.plan.artifact_key"
    find = states["FindComponent"]
    assert find["Resource"].endswith(":sagemaker:describeInferenceComponent")
    assert find["Next"] == "UpdateAdapterComponent", "an existing component gets the new artifact"
    assert find["Catch"][0]["Next"] == "ComponentExists"
    (missing,) = states["ComponentExists"]["Choices"]
    assert (missing["StringMatches"], missing["Next"]) == ("*Could not find*", "CreateAdapterComponent")
    assert states["ComponentExists"]["Default"] == "FailureReport", "other lookup failures are reported"


def test_adapter_component_sits_on_the_base_component_with_the_released_artifact(definition):
    create = definition["States"]["CreateAdapterComponent"]
    assert create["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createInferenceComponent"
    params = create["Parameters"]
    assert params["InferenceComponentName.$"] == "$.plan.component_name"
    assert params["Specification"]["BaseInferenceComponentName"] == BASE_COMPONENT
    assert params["EndpointName"] == ENDPOINT
    assert params["Specification"]["Container"] == {"ArtifactUrl.$": "$.plan.artifact_url"}
    assert "ComputeResourceRequirements" not in params["Specification"], "adapters share the base's compute"
    update = definition["States"]["UpdateAdapterComponent"]["Parameters"]
    assert update["Specification"]["Container"] == {"ArtifactUrl.$": "$.plan.artifact_url"}


def test_registration_waits_until_in_service_or_fails_clearly(definition):
    states = definition["States"]
    assert states["CreateAdapterComponent"]["Next"] == "WaitForComponent"
    assert states["UpdateAdapterComponent"]["Next"] == "WaitForComponent"
    assert states["WaitForComponent"]["Next"] == "CheckComponent"
    choice = states["ComponentStatus"]
    routes = {c["StringEquals"]: c["Next"] for c in choice["Choices"]}
    assert routes == {"InService": "AdapterInService", "Failed": "ComponentFailed"}
    assert choice["Default"] == "WaitForComponent"
    assert states["AdapterInService"]["Type"] == "Succeed"
    assert states["ComponentFailed"]["Parameters"] == {
        "Error": "AdapterComponentFailed",
        "Cause.$": "$.component.reason",
    }
    assert states["ComponentFailed"]["Next"] == "FailureReport"
    assert states["RegistrationFailed"] == {
        "Type": "Fail",
        "ErrorPath": "$.failure.error",
        "CausePath": "$.failure.cause",
    }


def test_definition_passes_the_asl_validator(definition, tmp_path):
    path = tmp_path / "registration.asl.json"
    path.write_text(json.dumps(definition))
    result = subprocess.run(
        [str(ROOT / "node_modules/.bin/asl-validator"), "--json-path", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_state_machine_role_is_scoped_to_manifests_training_outputs_and_prefixed_components(inference):
    found = statements(inference, "AdapterRegistrationStateMachineRoleDefaultPolicy")
    by_action = {}
    for statement in found:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            by_action.setdefault(action, []).append(resources_of(statement))
    assert "/adapters/*/manifest.json" in by_action["s3:GetObject"][0]
    # Only model archives are copied, and only to adapters/<adapter>/<job>/model.tar.gz.
    assert any('"/training/*.tar.gz"' in r for r in by_action["s3:GetObject"])
    assert by_action["s3:PutObject"] == [by_action["s3:PutObject"][0]]
    assert '"/adapters/*/model.tar.gz"' in by_action["s3:PutObject"][0], by_action["s3:PutObject"]
    for action in (
        "sagemaker:createInferenceComponent",
        "sagemaker:updateInferenceComponent",
        "sagemaker:describeInferenceComponent",
    ):
        assert all("inference-component/llmft-*" in r for r in by_action[action]), action
    assert "sagemaker:deleteInferenceComponent" not in by_action


def test_planner_lambda_ships_only_the_pure_planning_code(full_app, inference):
    function = only(inference, "AWS::Lambda::Function")
    assert function["Handler"] == "registration.handler"
    assert function["Runtime"].startswith("python3.")
    assets = list(Path(full_app.out_dir).glob("asset.*"))
    planner = [a for a in assets if (a / "registration.py").exists()]
    assert len(planner) == 1, assets
    assert sorted(p.name for p in planner[0].iterdir()) == ["names.py", "registration.py"]
    policy = statements(inference, "AdapterRegistrationPlannerRoleDefaultPolicy")
    actions = sorted(
        a for s in policy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"], "the planner reads and calls nothing"


def test_every_inference_suppression_is_scoped_to_its_finding(full_app):
    lines = nag_summary.load_reports(full_app.out_dir)["LlmFt-Inference"]
    suppressed = [line for line in lines if line["compliance"] == nag_summary.SUPPRESSED]
    assert suppressed, "the inference stack's wildcard grants should be suppressed explicitly"
    for line in suppressed:
        # cdk-nag prefixes the reason with [finding] only when applies_to matched that one finding.
        assert line["exceptionReason"].startswith("["), f"blanket suppression: {line}"


# The errors each registration Task's call can raise, for its Retry (constructs/llmft_adapter_registration):
# the operation's modeled errors in botocore as `<Service>.<Shape>Exception`, the aws-sdk integration's
# `<Service>.<Service>Exception` for the rest, aws-cdk-lib's Lambda list, and States.TaskFailed.
TASK_OPERATIONS = {
    "s3:getObject": ("s3", "GetObject", "S3"),
    "s3:copyObject": ("s3", "CopyObject", "S3"),
    "sagemaker:describeInferenceComponent": ("sagemaker", "DescribeInferenceComponent", "SageMaker"),
    "sagemaker:createInferenceComponent": ("sagemaker", "CreateInferenceComponent", "SageMaker"),
    "sagemaker:updateInferenceComponent": ("sagemaker", "UpdateInferenceComponent", "SageMaker"),
}
DOCUMENTED = {
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "States.TaskFailed",
}


def test_every_registration_task_retries_what_its_call_raises_and_reports_the_rest(definition):
    import botocore.session

    session = botocore.session.get_session()
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        integration = state["Resource"].split("aws-sdk:", 1)[-1]
        operation = TASK_OPERATIONS.get(integration)
        retry_names = [error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]]
        assert retry_names, f"{name} has no Retry"
        for error in retry_names:
            if error in DOCUMENTED:
                continue
            assert operation, f"{name}: {error} on an integration this test does not know"
            service, op, prefix = operation
            modeled = {e.name for e in session.get_service_model(service).operation_model(op).error_shapes}
            shape = error.removeprefix(f"{prefix}.").removesuffix("Exception")
            assert error.startswith(f"{prefix}.") and (shape in modeled or shape == prefix), (name, error)
        catch = state["Catch"]
        assert catch[-1]["ErrorEquals"] == ["States.ALL"], name
        expected = {"NotifyFailure": "RegistrationFailed", "FindComponent": "ComponentExists"}
        assert catch[-1]["Next"] == expected.get(name, "FailureReport"), name


def test_a_failure_is_notified_with_the_adapter_and_how_to_register_it_again(definition):
    states = definition["States"]
    report = states["FailureReport"]["Parameters"]
    assert report["register_again"] == "python -m inference.register <adapter_name>"
    assert report["manifest.$"].startswith("States.Format('s3://{}/{}'")
    notify = states["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert notify["Parameters"]["TopicArn"] == TOPIC, "the project's encrypted topic"
    assert notify["Next"] == "RegistrationFailed"


def test_iam_names_the_endpoint_by_its_arn_and_components_by_their_exact_names(inference):
    """SageMaker ARNs carry names in lower case and IAM matches case-sensitively, so the endpoint is named by
    its own ARN (GetAtt EndpointArn), never by its generated name, and the base component is named
    explicitly in lower case, in SageMaker's pattern for inference component names (botocore)."""
    import botocore.session
    import regex

    found = statements(inference, "AdapterRegistrationStateMachineRoleDefaultPolicy")
    create = [s for s in found if "sagemaker:createInferenceComponent" in json.dumps(s["Action"])]
    resources = json.dumps([s["Resource"] for s in create])
    assert '"EndpointArn"' in resources and ":endpoint/" not in resources, resources
    component = only(inference, "AWS::SageMaker::InferenceComponent")
    name = component["InferenceComponentName"]
    shape = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("CreateInferenceComponent")
        .input_shape.members["InferenceComponentName"]
    )
    assert name == BASE_COMPONENT == name.lower()
    assert regex.fullmatch(shape.metadata["pattern"], name) and len(name) <= shape.metadata["max"]
    target = only(inference, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ResourceId"] == f"inference-component/{BASE_COMPONENT}"


def test_the_scale_from_zero_alarm_watches_the_base_component_by_its_exact_name(scale_to_zero_app):
    template = scale_to_zero_app.template(scale_to_zero_app.stacks.inference)
    alarm = only(template, "AWS::CloudWatch::Alarm")
    assert alarm["Dimensions"] == [{"Name": "InferenceComponentName", "Value": BASE_COMPONENT}]
