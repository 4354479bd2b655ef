"""The private network every workload runs in: VPC, flow logs, VPC endpoints, security groups."""

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from constructs import Construct
from constructs import llmft_compliance as compliance
from constructs.llmft_logs import encrypted_log_group
from project_config.network import NetworkConfig

HTTPS = ec2.Port.tcp(443)
# AWS-owned buckets that workloads read through the S3 gateway endpoint, as AWS documents them:
# ECR's image layers (ECR User Guide, "Minimum Amazon S3 bucket permissions for Amazon ECR") and the
# Amazon Linux 2023 package repositories the notebook instance's platform installs from
# (Amazon Linux 2023 User Guide, "Accessing AL2023 repositories through a VPC endpoint").
AWS_OWNED_READ_ONLY_OBJECTS = (
    f"arn:{Aws.PARTITION}:s3:::prod-{Aws.REGION}-starport-layer-bucket/*",
    f"arn:{Aws.PARTITION}:s3:::al2023-repos-{Aws.REGION}-de612dc2/*",
)


class TrainingNetwork(Construct):
    """A two-zone VPC with private subnets only for workloads, reaching AWS through endpoints."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NetworkConfig,
        key: kms.IKey,
        data_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        workload_subnet_type = (
            ec2.SubnetType.PRIVATE_ISOLATED if config.isolated else ec2.SubnetType.PRIVATE_WITH_EGRESS
        )
        subnets = [ec2.SubnetConfiguration(name="workload", subnet_type=workload_subnet_type, cidr_mask=20)]
        if not config.isolated:
            # NAT gateways live in public subnets; nothing else is placed there.
            subnets.append(
                ec2.SubnetConfiguration(
                    name="nat",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    # Only the NAT gateways' own Elastic IPs: nothing launched here gets a public address.
                    map_public_ip_on_launch=False,
                )
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
        # Through the gateway, S3 reaches the project's data bucket and AWS's read-only buckets only: a
        # workload cannot copy data to a bucket outside the project.
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.workload_subnets]
        )
        for statement in s3_endpoint_statements(data_bucket):
            self.s3_endpoint.add_to_policy(statement)
        for service in config.interface_endpoints:
            endpoint = self.vpc.add_interface_endpoint(
                _endpoint_id(service),
                service=ec2.InterfaceVpcEndpointAwsService(service),
                subnets=self.workload_subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
                # The endpoint security group already admits HTTPS from the VPC range only.
                open=False,
            )
            endpoint.add_to_policy(this_account_only())

        # HTTPS is the only way out: AWS APIs through the endpoints, and through the NAT gateway (when
        # there is one) the Hugging Face Hub and package indexes (PyPI, conda) that jobs and notebooks use.
        self.training_security_group = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=self.vpc,
            description="SageMaker training jobs: all traffic between nodes of one job, HTTPS out",
            allow_all_outbound=False,
        )
        # Multi-node training (NCCL over EFA) talks on arbitrary ports between the job's nodes, both ways.
        self.training_security_group.add_ingress_rule(
            self.training_security_group, ec2.Port.all_traffic(), "Traffic from other training nodes"
        )
        self.training_security_group.add_egress_rule(
            self.training_security_group, ec2.Port.all_traffic(), "Traffic to other training nodes"
        )
        self.training_security_group.add_egress_rule(ec2.Peer.any_ipv4(), HTTPS, "HTTPS out")
        self.notebook_security_group = ec2.SecurityGroup(
            self,
            "NotebookSecurityGroup",
            vpc=self.vpc,
            description="SageMaker notebook instance: no inbound, HTTPS out",
            allow_all_outbound=False,
        )
        self.notebook_security_group.add_egress_rule(ec2.Peer.any_ipv4(), HTTPS, "HTTPS out")
        self.inference_security_group = ec2.SecurityGroup(
            self,
            "InferenceSecurityGroup",
            vpc=self.vpc,
            description="SageMaker endpoint: no inbound, HTTPS out",
            allow_all_outbound=False,
        )
        self.inference_security_group.add_egress_rule(ec2.Peer.any_ipv4(), HTTPS, "HTTPS out")
        self._suppress_compliance_findings()

    def _suppress_compliance_findings(self) -> None:
        """HIPAA, NIST 800-53 and PCI DSS rules that do not fit the network, with reasons."""
        compliance.inline_policy(
            self.vpc.node.find_child("FlowLog").node.find_child("IAMRole").node.find_child("DefaultPolicy"),
            "The flow log's role (written by aws-cdk-lib): deliver the VPC's flow logs to their log group",
        )
        compliance.all_traffic_from_itself(
            self.training_security_group,
            "All traffic is admitted only from this same group, the nodes of one training job: NCCL over EFA "
            "uses arbitrary ports, and EFA requires a group that admits all traffic from itself. Nothing "
            "outside the job can use it.",
        )
        for subnet in self.vpc.public_subnets:
            compliance.suppress_in_packs(
                subnet.node.find_child("DefaultRoute"),
                "VPCNoUnrestrictedRouteToIGW",
                f"The route of NAT subnet {subnet.node.id} to the internet gateway is how its NAT gateway "
                "reaches the internet for the private subnets; only the NAT gateway lives in this subnet, "
                "and no instance gets a public address here.",
            )


def s3_endpoint_statements(data_bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """The S3 gateway endpoint's policy: the data bucket for any request, AWS's buckets to read."""
    return [
        iam.PolicyStatement(
            sid="ProjectDataBucket",
            principals=[iam.AnyPrincipal()],
            actions=["s3:*"],
            resources=[data_bucket.bucket_arn, data_bucket.arn_for_objects("*")],
        ),
        # Requested with AWS's own credentials (ECR hands out presigned layer URLs), so no principal
        # condition: the objects are public to AWS's customers and read-only here.
        iam.PolicyStatement(
            sid="AwsOwnedReadOnly",
            principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject"],
            resources=list(AWS_OWNED_READ_ONLY_OBJECTS),
        ),
    ]


def this_account_only() -> iam.PolicyStatement:
    """An interface endpoint's policy: any call by a principal of this account, none by another's."""
    return iam.PolicyStatement(
        sid="ThisAccountsPrincipals",
        principals=[iam.AnyPrincipal()],
        actions=["*"],
        resources=["*"],
        conditions={"StringEquals": {"aws:PrincipalAccount": Aws.ACCOUNT_ID}},
    )


def _endpoint_id(service: str) -> str:
    """A logical ID per service name: 'sagemaker.api' -> 'SagemakerApiEndpoint'."""
    return "".join(part.capitalize() for part in service.replace("-", ".").split(".")) + "Endpoint"
