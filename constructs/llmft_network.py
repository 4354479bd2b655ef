"""The private network every workload runs in: VPC, flow logs, VPC endpoints, security groups."""

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms

from constructs import Construct
from constructs.llmft_logs import encrypted_log_group
from project_config.network import NetworkConfig

HTTPS = ec2.Port.tcp(443)


class TrainingNetwork(Construct):
    """A two-zone VPC with private subnets only for workloads, reaching AWS through endpoints."""

    def __init__(self, scope: Construct, construct_id: str, *, config: NetworkConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        workload_subnet_type = (
            ec2.SubnetType.PRIVATE_ISOLATED if config.isolated else ec2.SubnetType.PRIVATE_WITH_EGRESS
        )
        subnets = [ec2.SubnetConfiguration(name="workload", subnet_type=workload_subnet_type, cidr_mask=20)]
        if not config.isolated:
            # NAT gateways live in public subnets; nothing else is placed there.
            subnets.append(
                ec2.SubnetConfiguration(name="nat", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            )
        zones = (
            {"availability_zones": list(config.availability_zones)}
            if config.availability_zones
            else {"max_azs": 2}
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            nat_gateways=config.nat_gateways,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
            **zones,
        )
        self.workload_subnets = ec2.SubnetSelection(subnet_type=workload_subnet_type)

        self.flow_log_group = encrypted_log_group(
            self, "FlowLogs", key=key, retention_days=config.flow_log_retention_days
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface VPC endpoints: HTTPS from inside the VPC",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(config.vpc_cidr), HTTPS, "HTTPS from the VPC"
        )
        self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.workload_subnets]
        )
        for service in config.interface_endpoints:
            self.vpc.add_interface_endpoint(
                _endpoint_id(service),
                service=ec2.InterfaceVpcEndpointAwsService(service),
                subnets=self.workload_subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
                # The endpoint security group already admits HTTPS from the VPC range only.
                open=False,
            )

        self.training_security_group = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=self.vpc,
            description="SageMaker training jobs: all traffic between nodes of one job",
        )
        # Multi-node training (NCCL, EFA) talks on arbitrary ports between the job's nodes.
        self.training_security_group.add_ingress_rule(
            self.training_security_group, ec2.Port.all_traffic(), "Traffic between training nodes"
        )
        self.notebook_security_group = ec2.SecurityGroup(
            self, "NotebookSecurityGroup", vpc=self.vpc, description="SageMaker notebook instance: no inbound"
        )
        self.inference_security_group = ec2.SecurityGroup(
            self, "InferenceSecurityGroup", vpc=self.vpc, description="SageMaker endpoint: no inbound"
        )


def _endpoint_id(service: str) -> str:
    """A logical ID per service name: 'sagemaker.api' -> 'SagemakerApiEndpoint'."""
    return "".join(part.capitalize() for part in service.replace("-", ".").split(".")) + "Endpoint"
