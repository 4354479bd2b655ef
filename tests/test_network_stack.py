"""Network stack: VPC shape, NAT choice, flow logs, endpoints and security groups."""

import json

import pytest
from aws_cdk.assertions import Match

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
    workload = [s for s in subnets.values() if s["Properties"]["MapPublicIpOnLaunch"] is False]
    zones = {str(s["Properties"]["AvailabilityZone"]) for s in workload}
    assert len(workload) == 2 and len(zones) == 2, workload


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
