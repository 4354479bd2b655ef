"""Network stack: VPC shape, NAT choice, flow logs, endpoints and security groups."""

import json

import pytest
from aws_cdk.assertions import Match
from moto.iam.access_control import IAMPolicy, PermissionResult

from tests.conftest import synthesize

DEFAULT_ENDPOINTS = ["sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "sts"]


@pytest.fixture(scope="module")
def isolated_app(tmp_path_factory):
    """No NAT gateway at all: isolated subnets, AWS reached only through endpoints."""
    return synthesize(tmp_path_factory.mktemp("cdk-isolated"), {"network": {"nat_gateways": 0}})


def test_vpc_spans_two_zones_with_the_configured_range(default_app):
    template = default_app.template(default_app.stacks.network)
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.20.0.0/16"})
    subnets = template.find_resources("AWS::EC2::Subnet")
    workload = [s for s in subnets.values() if "workloadSubnet" in json.dumps(s["Properties"]["Tags"])]
    zones = {str(s["Properties"]["AvailabilityZone"]) for s in workload}
    assert len(workload) == 2 and len(zones) == 2, workload


def test_no_subnet_gives_public_addresses_not_even_the_nat_subnets(default_app):
    subnets = default_app.template(default_app.stacks.network).find_resources("AWS::EC2::Subnet")
    assert len(subnets) == 4
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())


def test_default_has_one_nat_gateway_and_private_egress_subnets(default_app):
    template = default_app.template(default_app.stacks.network)
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.resource_count_is("AWS::EC2::InternetGateway", 1)


def test_zero_nat_gateways_gives_isolated_subnets_with_no_internet_route(isolated_app):
    template = isolated_app.template(isolated_app.stacks.network)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    routes = template.find_resources("AWS::EC2::Route")
    assert not routes, f"isolated subnets must have no default route: {list(routes)}"
    template.resource_count_is("AWS::EC2::VPCEndpoint", 1 + len(DEFAULT_ENDPOINTS))


def test_flow_logs_go_to_an_encrypted_log_group_with_retention(default_app):
    template = default_app.template(default_app.stacks.network)
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    template.has_resource(
        "AWS::Logs::LogGroup",
        {
            "Properties": {"RetentionInDays": 90, "KmsKeyId": Match.any_value()},
            "DeletionPolicy": "Retain",
        },
    )


def test_s3_gateway_and_the_configured_interface_endpoints(default_app):
    template = default_app.template(default_app.stacks.network)
    endpoints = template.find_resources("AWS::EC2::VPCEndpoint")
    services = sorted(str(e["Properties"]["ServiceName"]) for e in endpoints.values())
    for service in DEFAULT_ENDPOINTS:
        assert any(f".{service}" in name for name in services), f"no {service} endpoint in {services}"
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Interface", "PrivateDnsEnabled": True}
    )


def test_endpoint_set_is_configurable(tmp_path_factory):
    app = synthesize(
        tmp_path_factory.mktemp("cdk-endpoints"),
        {"network": {"interface_endpoints": ["sts", "secretsmanager"]}},
    )
    app.template(app.stacks.network).resource_count_is("AWS::EC2::VPCEndpoint", 3)


def test_endpoints_admit_https_from_the_vpc_only(default_app):
    template = default_app.template(default_app.stacks.network)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("Interface VPC endpoints"),
            "SecurityGroupIngress": [
                Match.object_like(
                    {"CidrIp": "10.20.0.0/16", "FromPort": 443, "ToPort": 443, "IpProtocol": "tcp"}
                )
            ],
        },
    )


def test_training_nodes_reach_each_other_on_all_ports(default_app):
    template = default_app.template(default_app.stacks.network)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "-1",
            "SourceSecurityGroupId": {
                "Fn::GetAtt": [Match.string_like_regexp("TrainingSecurityGroup"), "GroupId"]
            },
            "GroupId": {"Fn::GetAtt": [Match.string_like_regexp("TrainingSecurityGroup"), "GroupId"]},
        },
    )


def test_no_security_group_admits_the_internet(default_app):
    template = default_app.template(default_app.stacks.network)
    for logical_id, group in template.find_resources("AWS::EC2::SecurityGroup").items():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0", logical_id


def test_fixed_environment_synthesizes_without_any_aws_lookup(tmp_path_factory):
    app = synthesize(
        tmp_path_factory.mktemp("cdk-fixed-env"),
        {
            "account": "123456789012",
            "region": "eu-west-1",
            "network": {"availability_zones": ["eu-west-1a", "eu-west-1c"]},
        },
    )
    missing = json.loads((app.out_dir / "manifest.json").read_text()).get("missing")
    assert not missing, f"synth would need AWS lookups: {missing}"
    subnets = app.template(app.stacks.network).find_resources("AWS::EC2::Subnet")
    zones = {s["Properties"]["AvailabilityZone"] for s in subnets.values()}
    assert zones == {"eu-west-1a", "eu-west-1c"}


def workload_groups(template) -> dict[str, dict]:
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    return {
        name: group["Properties"]
        for name, group in groups.items()
        if any(kind in name for kind in ("Training", "Notebook", "Inference"))
    }


def test_workloads_leave_only_by_https_and_training_nodes_also_to_each_other(default_app):
    template = default_app.template(default_app.stacks.network)
    groups = workload_groups(template)
    assert len(groups) == 3, list(groups)
    for name, group in groups.items():
        assert group["SecurityGroupEgress"] == [
            {
                "CidrIp": "0.0.0.0/0",
                "Description": "HTTPS out",
                "FromPort": 443,
                "IpProtocol": "tcp",
                "ToPort": 443,
            }
        ], name
    (training,) = [name for name in groups if "Training" in name]
    egress = template.find_resources("AWS::EC2::SecurityGroupEgress")
    assert [rule["Properties"] for rule in egress.values()] == [
        {
            "Description": "Traffic to other training nodes",
            "DestinationSecurityGroupId": {"Fn::GetAtt": [training, "GroupId"]},
            "GroupId": {"Fn::GetAtt": [training, "GroupId"]},
            "IpProtocol": "-1",
        }
    ], "NCCL/EFA between the nodes of a job is the only other way out"


# What the intrinsic functions in an endpoint policy stand for, in one concrete deployment.
ACCOUNT, REGION, DATA_BUCKET = "123456789012", "us-east-1", "llmft-data-123456789012"


def resolve(value):
    """An endpoint policy with the stack's intrinsics replaced by one deployment's values."""
    if isinstance(value, list):
        return [resolve(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}[value["Ref"]]
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(part) for part in parts)
    if set(value) == {"Fn::GetStackOutput"}:
        assert "StoreDataBucket" in value["Fn::GetStackOutput"]["OutputName"], value
        return f"arn:aws:s3:::{DATA_BUCKET}"
    return {key: resolve(item) for key, item in value.items()}


def endpoint_policies(template) -> dict[str, IAMPolicy]:
    """Service suffix -> the endpoint's policy, evaluated by moto's IAM policy engine."""
    policies = {}
    for endpoint in template.find_resources("AWS::EC2::VPCEndpoint").values():
        service = resolve(endpoint["Properties"]["ServiceName"]).removeprefix(f"com.amazonaws.{REGION}.")
        policies[service] = IAMPolicy(json.dumps(resolve(endpoint["Properties"]["PolicyDocument"])))
    return policies


def test_the_s3_gateway_allows_image_pulls_and_training_data_and_nothing_else(default_app):
    s3 = endpoint_policies(default_app.template(default_app.stacks.network))["s3"]
    allowed = [
        # An image pull's layers: ECR's AWS-owned layer bucket (ECR User Guide, VPC endpoints).
        ("s3:GetObject", f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/sha256-0f2b"),
        # A training job: its channels, base model and checkpoints in, its output and checkpoints out.
        ("s3:ListBucket", f"arn:aws:s3:::{DATA_BUCKET}"),
        ("s3:GetObject", f"arn:aws:s3:::{DATA_BUCKET}/datasets/train.jsonl"),
        ("s3:GetObject", f"arn:aws:s3:::{DATA_BUCKET}/models/Qwen2.5-1.5B/config.json"),
        ("s3:PutObject", f"arn:aws:s3:::{DATA_BUCKET}/training/job-1/output/model.tar.gz"),
        (
            "s3:PutObject",
            f"arn:aws:s3:::{DATA_BUCKET}/checkpoints/job-1/checkpoint-100/adapter_model.safetensors",
        ),
        # The notebook instance's Amazon Linux 2023 packages.
        (
            "s3:GetObject",
            f"arn:aws:s3:::al2023-repos-{REGION}-de612dc2/core/mirrors/latest/x86_64/mirror.list",
        ),
    ]
    for action, resource in allowed:
        assert s3.is_action_permitted(action, resource) == PermissionResult.PERMITTED, (action, resource)
    refused = [
        ("s3:PutObject", "arn:aws:s3:::someone-elses-bucket/exfiltrated.jsonl"),
        ("s3:GetObject", "arn:aws:s3:::someone-elses-bucket/tool.sh"),
        ("s3:PutObject", f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/sha256-0f2b"),
    ]
    for action, resource in refused:
        assert s3.is_action_permitted(action, resource) != PermissionResult.PERMITTED, (action, resource)


def test_interface_endpoints_serve_this_accounts_principals_only(default_app):
    policies = endpoint_policies(default_app.template(default_app.stacks.network))
    interface = {service: policy for service, policy in policies.items() if service != "s3"}
    assert sorted(interface) == sorted(DEFAULT_ENDPOINTS), sorted(interface)
    pull = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    for action in pull:
        for service in ("ecr.api", "ecr.dkr"):
            policy = interface[service]
            ours = policy.is_action_permitted(
                action, "*", incoming_condition_values={"aws:PrincipalAccount": ACCOUNT}
            )
            theirs = policy.is_action_permitted(
                action, "*", incoming_condition_values={"aws:PrincipalAccount": "210987654321"}
            )
            assert ours == PermissionResult.PERMITTED and theirs != PermissionResult.PERMITTED, (
                service,
                action,
            )
    for service, policy in interface.items():
        call = policy.is_action_permitted(
            "sts:AssumeRole", "*", incoming_condition_values={"aws:PrincipalAccount": "210987654321"}
        )
        assert call != PermissionResult.PERMITTED, service
