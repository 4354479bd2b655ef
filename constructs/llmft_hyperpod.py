"""SageMaker HyperPod Slurm cluster: its subnet and security groups, FSx for Lustre linked to the data
bucket, the lifecycle scripts in S3 and the cluster with its execution role."""

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_fsx as fsx
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagSuppressions

from constructs import Construct
from constructs import llmft_compliance as compliance
from constructs.llmft_deployment import fenced_deployment
from constructs.llmft_nag import arn_in_this_account, arn_of_other_stack, suppress_bucket_deployment
from project_config.hyperpod import FsxConfig, HyperPodConfig, InstanceGroupConfig

LIFECYCLE_DIR = Path(__file__).resolve().parent.parent / "cluster_lifecycle"
# Scripts live under this prefix of the data bucket, read by the cluster role only (see docs/hyperpod.md).
LIFECYCLE_PREFIX = "cluster-lifecycle/"
ON_CREATE = "on_create.sh"
MOUNT_POINT = "/fsx"
# Lustre: 988 for the servers, 1018-1023 for LNet between clients and servers.
LUSTRE_PORTS = (ec2.Port.tcp(988), ec2.Port.tcp_range(1018, 1023))
INSTANCE_ROLE_POLICY = "AmazonSageMakerClusterInstanceRolePolicy"


@dataclass(frozen=True)
class Association:
    """One data repository association: a bucket prefix seen at /fsx/<prefix>."""

    prefix: str
    export: bool

    @property
    def file_system_path(self) -> str:
        return "/" + self.prefix.rstrip("/")


def associations(config: FsxConfig) -> list[Association]:
    return [Association(p, export=False) for p in config.import_prefixes] + [
        Association(p, export=True) for p in config.export_prefixes
    ]


# Our lifecycle scripts' own settings. Not provisioning_parameters.json: that file is HyperPod's legacy
# Slurm configuration, and this cluster uses the API-driven one (SlurmConfig per instance group).
LIFECYCLE_PARAMETERS = "llmft_parameters.json"


def lifecycle_parameters(
    config: HyperPodConfig, *, fsx_dns_name: str, fsx_mount_name: str, image_uri: str
) -> dict:
    """llmft_parameters.json: which group holds which node role, the file system and the image."""
    params = {
        "controller_group": config.controller.name,
        "worker_groups": [
            {"instance_group_name": group.name, "partition_name": group.partition} for group in config.workers
        ],
        "fsx_dns_name": fsx_dns_name,
        "fsx_mountname": fsx_mount_name,
        "llmft_mount_point": MOUNT_POINT,
        "llmft_image_uri": image_uri,
    }
    if config.login:
        params["login_group"] = config.login.name
    return params


def same_account_image_uri(repository: ecr.IRepository, image_uri: str) -> str:
    """The image URI rebuilt around the repository's name when its tag is known at synth.

    A repository from another stack reaches this one as a reference to its ARN, and ECR's URI
    helpers split that ARN; CloudFormation's Fn::Split takes no cross-stack reference, a plain
    Fn::Join does. The repository is in this stack's account and region.
    """
    if not Token.is_unresolved(image_uri):
        return image_uri
    tag = image_uri.rsplit(":", 1)[-1]
    if Token.is_unresolved(tag) or "/" in tag:
        return image_uri
    return f"{Aws.ACCOUNT_ID}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{repository.repository_name}:{tag}"


def cluster_subnet(vpc: ec2.IVpc, zone: int | str) -> ec2.ISubnet:
    """The VPC's workload subnet in the configured zone (HyperPod capacity is per zone)."""
    subnets = vpc.select_subnets(subnet_group_name="workload").subnets
    if isinstance(zone, int):
        return subnets[zone]
    matching = [subnet for subnet in subnets if subnet.availability_zone == zone]
    if not matching:
        raise ValueError(f"the VPC has no workload subnet in {zone}")
    return matching[0]


class HyperPodCluster(Construct):
    """FSx for Lustre + a HyperPod Slurm cluster whose nodes mount it and run our training image."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: HyperPodConfig,
        vpc: ec2.IVpc,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        repository: ecr.IRepository,
        image_uri: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.subnet = cluster_subnet(vpc, config.availability_zone)

        self.node_security_group = ec2.SecurityGroup(
            self,
            "NodeSecurityGroup",
            vpc=vpc,
            description="HyperPod nodes: all traffic among themselves (EFA, NCCL, Slurm), HTTPS out",
            allow_all_outbound=False,
        )
        # EFA requires a group that admits all traffic from itself, inbound and outbound.
        self.node_security_group.add_ingress_rule(
            self.node_security_group, ec2.Port.all_traffic(), "All traffic from other cluster nodes"
        )
        self.node_security_group.add_egress_rule(
            self.node_security_group, ec2.Port.all_traffic(), "All traffic to other cluster nodes"
        )
        # AWS APIs, ECR and S3, through the VPC endpoints or the NAT gateway; no plain HTTP anywhere.
        self.node_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS")

        self.file_system_security_group = ec2.SecurityGroup(
            self,
            "FileSystemSecurityGroup",
            vpc=vpc,
            description="FSx for Lustre: Lustre ports from and to its servers and the cluster nodes",
            allow_all_outbound=False,
        )
        for port in LUSTRE_PORTS:
            for peer, what in (
                (self.file_system_security_group, "file servers"),
                (self.node_security_group, "cluster nodes"),
            ):
                self.file_system_security_group.add_ingress_rule(peer, port, f"Lustre from {what}")
                self.file_system_security_group.add_egress_rule(peer, port, f"Lustre to {what}")
            self.node_security_group.add_ingress_rule(
                self.file_system_security_group, port, "Lustre from the file system"
            )
            self.node_security_group.add_egress_rule(
                self.file_system_security_group, port, "Lustre to the file system"
            )

        # The L1 resource: the L2 construct adds its own 988-1023 rule, wider than Lustre's ports.
        self.file_system = fsx.CfnFileSystem(
            self,
            "FileSystem",
            file_system_type="LUSTRE",
            file_system_type_version="2.15",
            storage_capacity=config.fsx.storage_gib,
            subnet_ids=[self.subnet.subnet_id],
            security_group_ids=[self.file_system_security_group.security_group_id],
            kms_key_id=key.key_id,
            lustre_configuration=fsx.CfnFileSystem.LustreConfigurationProperty(
                deployment_type="PERSISTENT_2",
                per_unit_storage_throughput=config.fsx.throughput_per_tib,
                data_compression_type="LZ4",
            ),
        )
        # FSx checks its security group's Lustre rules when it creates the file system: every rule that
        # reaches it (its own group's, and the nodes' rules naming it) exists first.
        for group in (self.file_system_security_group, self.node_security_group):
            for child in group.node.children:
                if isinstance(child, (ec2.CfnSecurityGroupIngress, ec2.CfnSecurityGroupEgress)):
                    self.file_system.node.add_dependency(child)
        self.file_system.apply_removal_policy(
            RemovalPolicy.RETAIN if config.fsx.on_delete == "retain" else RemovalPolicy.DESTROY
        )
        self.fsx_dns_name = self.file_system.attr_dns_name
        self.fsx_mount_name = self.file_system.attr_lustre_mount_name
        events = ["NEW", "CHANGED", "DELETED"]
        for association in associations(config.fsx):
            fsx.CfnDataRepositoryAssociation(
                self,
                "Association" + "".join(p.capitalize() for p in association.file_system_path[1:].split("-")),
                file_system_id=self.file_system.ref,
                file_system_path=association.file_system_path,
                data_repository_path=data_bucket.s3_url_for_object(association.prefix),
                batch_import_meta_data_on_create=True,
                s3=fsx.CfnDataRepositoryAssociation.S3Property(
                    auto_import_policy=fsx.CfnDataRepositoryAssociation.AutoImportPolicyProperty(
                        events=events
                    ),
                    auto_export_policy=(
                        fsx.CfnDataRepositoryAssociation.AutoExportPolicyProperty(events=events)
                        if association.export
                        else None
                    ),
                ),
            )
        # FSx reads and writes the KMS-encrypted bucket as its S3 service-linked role, which only the
        # key policy can allow (a service-linked role takes no IAM policy of ours).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FSxLustreS3DataRepository",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
                principals=[iam.AnyPrincipal()],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:PrincipalAccount": Aws.ACCOUNT_ID,
                        "kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com",
                    },
                    "ArnLike": {
                        "aws:PrincipalArn": (
                            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/"
                            "s3.data-source.lustre.fsx.amazonaws.com/AWSServiceRoleForFSxS3Access_*"
                        )
                    },
                },
            )
        )

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="HyperPod cluster nodes: lifecycle scripts, data, training image",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(INSTANCE_ROLE_POLICY)],
        )
        self._grant_network_interfaces(vpc)
        # The managed policy reads only buckets named sagemaker-*; the scripts are in the data bucket.
        for prefix in (LIFECYCLE_PREFIX, *config.fsx.import_prefixes, *config.fsx.export_prefixes):
            data_bucket.grant_read(self.role, f"{prefix}*")
        repository.grant_pull(self.role)
        # HyperPod encrypts the nodes' EBS volumes with the project key through a grant.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        key.grant(self.role, "kms:DescribeKey")

        parameters = lifecycle_parameters(
            config,
            fsx_dns_name=self.fsx_dns_name,
            fsx_mount_name=self.fsx_mount_name,
            image_uri=same_account_image_uri(repository, image_uri),
        )
        self.lifecycle = fenced_deployment(
            self,
            "LifecycleScripts",
            sources=[
                s3deploy.Source.asset(str(LIFECYCLE_DIR), exclude=["__pycache__", "*.pyc"]),
                s3deploy.Source.json_data(LIFECYCLE_PARAMETERS, parameters),
            ],
            data_bucket=data_bucket,
            prefix=LIFECYCLE_PREFIX,
            key=key,
        )
        self.lifecycle_uri = data_bucket.s3_url_for_object(LIFECYCLE_PREFIX)

        groups = [self._group(config.controller, node_type="Controller", threads_per_core=None, key=key)]
        if config.login:
            groups.append(self._group(config.login, node_type="Login", threads_per_core=None, key=key))
        groups += [
            self._group(g, node_type="Compute", threads_per_core=1, key=key, partition=g.partition)
            for g in config.workers
        ]
        self.cluster = sagemaker.CfnCluster(
            self,
            "Cluster",
            instance_groups=groups,
            node_recovery="Automatic",
            # HyperPod's API-driven Slurm configuration (its recommended model): node types and partitions
            # per instance group; HyperPod owns slurm.conf ("Managed": no drift, no manual edits).
            orchestrator=sagemaker.CfnCluster.OrchestratorProperty(
                slurm=sagemaker.CfnCluster.ClusterOrchestratorSlurmConfigProperty(
                    slurm_config_strategy="Managed"
                )
            ),
            vpc_config=sagemaker.CfnCluster.VpcConfigProperty(
                security_group_ids=[self.node_security_group.security_group_id],
                subnets=[self.subnet.subnet_id],
            ),
        )
        # Nodes run the scripts as they start: the files and the role's permissions come first.
        self.cluster.node.add_dependency(self.lifecycle)
        self.cluster.node.add_dependency(self.role)
        self.cluster.node.add_dependency(self.file_system)
        self.cluster_id = Fn.select(1, Fn.split("/", self.cluster.attr_cluster_arn))
        self._suppress(Stack.of(self), config, data_bucket)

    def _group(
        self,
        group: InstanceGroupConfig,
        *,
        node_type: str,
        threads_per_core: int | None,
        key: kms.IKey,
        partition: str | None = None,
    ) -> sagemaker.CfnCluster.ClusterInstanceGroupProperty:
        return sagemaker.CfnCluster.ClusterInstanceGroupProperty(
            instance_group_name=group.name,
            instance_type=group.instance_type,
            instance_count=group.count,
            execution_role=self.role.role_arn,
            threads_per_core=threads_per_core,
            # Partitions only for Compute groups, one each (HyperPod's rule for SlurmConfig).
            slurm_config=sagemaker.CfnCluster.ClusterSlurmConfigProperty(
                node_type=node_type, partition_names=[partition] if partition else None
            ),
            life_cycle_config=sagemaker.CfnCluster.ClusterLifeCycleConfigProperty(
                source_s3_uri=self.lifecycle_uri, on_create=ON_CREATE
            ),
            instance_storage_configs=[
                sagemaker.CfnCluster.ClusterInstanceStorageConfigProperty(
                    ebs_volume_config=sagemaker.CfnCluster.ClusterEbsVolumeConfigProperty(
                        volume_size_in_gb=group.ebs_volume_gib, volume_kms_key_id=key.key_arn
                    )
                ),
                # HyperPod mounts the file system on every node before the lifecycle scripts run.
                sagemaker.CfnCluster.ClusterInstanceStorageConfigProperty(
                    fsx_lustre_config=sagemaker.CfnCluster.ClusterFsxLustreConfigProperty(
                        dns_name=self.fsx_dns_name, mount_name=self.fsx_mount_name, mount_path=MOUNT_POINT
                    )
                ),
            ],
        )

    def _grant_network_interfaces(self, vpc: ec2.IVpc) -> None:
        """What HyperPod needs to attach the nodes' network interfaces in our subnet."""
        stack = Stack.of(self)
        interface_arn = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                # EC2 Describe actions support no resource-level permissions.
                resources=["*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterface"],
                resources=[
                    interface_arn,
                    stack.format_arn(service="ec2", resource="subnet", resource_name=self.subnet.subnet_id),
                    stack.format_arn(
                        service="ec2",
                        resource="security-group",
                        resource_name=self.node_security_group.security_group_id,
                    ),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                    "ec2:DetachNetworkInterface",
                ],
                resources=[interface_arn],
                conditions={
                    "ArnEquals": {
                        "ec2:Vpc": stack.format_arn(service="ec2", resource="vpc", resource_name=vpc.vpc_id)
                    }
                },
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateTags"],
                resources=[interface_arn],
                conditions={"StringEquals": {"ec2:CreateAction": "CreateNetworkInterface"}},
            )
        )

    def _suppress(self, stack: Stack, config: HyperPodConfig, data_bucket: s3.IBucket) -> None:
        """Each finding on the one resource it concerns, with the reason it is right there."""
        bucket_objects = [
            arn_of_other_stack(data_bucket, f"/{prefix}*")
            for prefix in (LIFECYCLE_PREFIX, *config.fsx.import_prefixes, *config.fsx.export_prefixes)
        ]
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                {
                    "id": "AwsSolutions-IAM4",
                    "reason": "AmazonSageMakerClusterInstanceRolePolicy, the policy HyperPod documents for "
                    "cluster instances: CloudWatch metrics and logs under /aws/sagemaker/Clusters, SSM "
                    "session channels, and reads of the account's sagemaker-* buckets, which this cluster "
                    "does not use (its scripts and data come from the data bucket, granted separately).",
                    "appliesTo": [f"Policy::arn:<AWS::Partition>:iam::aws:policy/{INSTANCE_ROLE_POLICY}"],
                }
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.role.node.find_child("DefaultPolicy").node.default_child,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "grant_read on the lifecycle prefix and the prefixes FSx links: GetObject* on "
                    "those prefixes, and GetBucket*/List* on the bucket itself (so the nodes can list every "
                    "key, not read it); EC2 Describe* and ecr:GetAuthorizationToken take no resource; the "
                    "cluster's network interfaces get IDs only when HyperPod creates them (network-"
                    "interface/*), their creation held to the cluster's subnet and security group by ARN "
                    "and their other changes to the VPC by ec2:Vpc.",
                    "appliesTo": [
                        "Action::s3:GetBucket*",
                        "Action::s3:GetObject*",
                        "Action::s3:List*",
                        "Resource::*",
                        arn_in_this_account("ec2", "network-interface/*"),
                        *bucket_objects,
                    ],
                }
            ],
        )
        suppress_bucket_deployment(
            stack, data_bucket, copies="writes (and prunes) the lifecycle scripts under cluster-lifecycle/"
        )
        compliance.inline_policy(
            self.role.node.find_child("DefaultPolicy"),
            "The cluster instances' role: read the lifecycle scripts and the prefixes FSx links, pull the "
            "training image, manage the cluster's network interfaces in its VPC",
        )
        compliance.all_traffic_from_itself(
            self.node_security_group,
            "All traffic is admitted only from this same group, the cluster's own nodes: EFA and NCCL "
            "between nodes use arbitrary ports, and EFA requires a group that admits all traffic from "
            "itself. Nothing outside the cluster can use it.",
        )
