"""HyperPod stack: security groups, FSx for Lustre, the cluster, its role, its lifecycle scripts."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from constructs.llmft_hyperpod import LIFECYCLE_PARAMETERS, LIFECYCLE_PREFIX, lifecycle_parameters
from project_config import load_config
from stacks.hyperpod_stack import HyperPodStack
from tests import service_model
from tests.conftest import SynthesizedApp, project_context, synthesize

MANAGED_POLICY = "AmazonSageMakerClusterInstanceRolePolicy"


@dataclass
class HyperPodApp:
    app: SynthesizedApp

    @property
    def stacks(self):
        return self.app.stacks

    @property
    def hyperpod(self) -> HyperPodStack:
        assert self.stacks.hyperpod is not None, "hyperpod.enabled is true: the app must build the stack"
        return self.stacks.hyperpod

    @property
    def out_dir(self) -> Path:
        return self.app.out_dir

    @property
    def template(self) -> Template:
        return Template.from_stack(self.hyperpod)


def synthesize_hyperpod(out_dir: Path, hyperpod: dict | None = None, **overrides) -> HyperPodApp:
    return HyperPodApp(synthesize(out_dir, {"hyperpod": {"enabled": True, **(hyperpod or {})}, **overrides}))


@pytest.fixture(scope="module")
def hp(full_app) -> HyperPodApp:
    """The app with every optional stack on: HyperPod takes the TrainingImage stack's repository."""
    return HyperPodApp(full_app)


def test_hyperpod_is_off_by_default(default_app):
    assert default_app.stacks.hyperpod is None, "HyperPod costs money: cdk.json must leave it off"


def resources(template: Template, kind: str) -> list[dict]:
    return list(template.find_resources(kind).values())


def logical_id(template: Template, kind: str, pattern: str) -> str:
    found = [name for name in template.find_resources(kind) if re.search(pattern, name)]
    assert len(found) == 1, f"expected one {kind} matching {pattern}, found {found}"
    return found[0]


# --- security groups --------------------------------------------------------------------------------


def rules(template: Template, kind: str, group: str) -> list[dict]:
    return [
        r["Properties"]
        for r in resources(template, kind)
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
    ]


def peer(rule: dict) -> str | None:
    ref = rule.get("SourceSecurityGroupId") or rule.get("DestinationSecurityGroupId")
    return ref["Fn::GetAtt"][0] if ref else rule.get("CidrIp")


def test_nodes_admit_and_send_all_traffic_among_themselves(hp):
    template = hp.template
    nodes = logical_id(template, "AWS::EC2::SecurityGroup", "NodeSecurityGroup")
    ingress = [(peer(r), r["IpProtocol"]) for r in rules(template, "AWS::EC2::SecurityGroupIngress", nodes)]
    egress = [(peer(r), r["IpProtocol"]) for r in rules(template, "AWS::EC2::SecurityGroupEgress", nodes)]
    assert (nodes, "-1") in ingress, f"EFA needs all inbound traffic from the group itself: {ingress}"
    assert (nodes, "-1") in egress, f"EFA needs all outbound traffic to the group itself: {egress}"


def test_nodes_reach_only_https_outside_the_cluster(hp):
    template = hp.template
    nodes = logical_id(template, "AWS::EC2::SecurityGroup", "NodeSecurityGroup")
    group = template.find_resources("AWS::EC2::SecurityGroup")[nodes]["Properties"]
    outside = [r for r in group.get("SecurityGroupEgress", []) if "CidrIp" in r]
    assert outside == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "HTTPS to AWS",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ], f"nodes should reach the outside on HTTPS only: {outside}"
    assert not group.get("SecurityGroupIngress"), "nothing outside the cluster may connect to a node"


@pytest.mark.parametrize("ports", [(988, 988), (1018, 1023)])
def test_lustre_ports_are_open_both_ways_between_nodes_and_file_system(hp, ports):
    template = hp.template
    nodes = logical_id(template, "AWS::EC2::SecurityGroup", "NodeSecurityGroup")
    fs = logical_id(template, "AWS::EC2::SecurityGroup", "FileSystemSecurityGroup")

    def opened(kind, group, other):
        return any(
            peer(r) == other and (r["FromPort"], r["ToPort"]) == ports and r["IpProtocol"] == "tcp"
            for r in rules(template, kind, group)
        )

    for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
        assert opened(kind, fs, nodes), f"{kind} on the file system for nodes, ports {ports}"
        assert opened(kind, nodes, fs), f"{kind} on the nodes for the file system, ports {ports}"
        assert opened(kind, fs, fs), f"{kind} between the file servers themselves, ports {ports}"


def test_file_system_group_opens_nothing_but_lustres_ports(hp):
    template = hp.template
    fs = logical_id(template, "AWS::EC2::SecurityGroup", "FileSystemSecurityGroup")
    opened = {
        (r["IpProtocol"], r["FromPort"], r["ToPort"])
        for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
        for r in rules(template, kind, fs)
    }
    assert opened == {("tcp", 988, 988), ("tcp", 1018, 1023)}, opened
    group = template.find_resources("AWS::EC2::SecurityGroup")[fs]["Properties"]
    assert not group.get("SecurityGroupIngress") and all(
        r.get("CidrIp") == "255.255.255.255/32" for r in group.get("SecurityGroupEgress", [])
    ), f"no inline rule may widen the file system's group: {group}"


# --- FSx for Lustre ---------------------------------------------------------------------------------


def test_file_system_is_persistent_2_compressed_and_under_the_project_key(hp):
    template = hp.template
    template.has_resource(
        "AWS::FSx::FileSystem",
        {
            "Properties": {
                "FileSystemType": "LUSTRE",
                "StorageCapacity": 1200,
                "KmsKeyId": Match.any_value(),
                "LustreConfiguration": {
                    "DeploymentType": "PERSISTENT_2",
                    "PerUnitStorageThroughput": 250,
                    "DataCompressionType": "LZ4",
                },
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_file_system_and_cluster_share_the_configured_zones_subnet(hp):
    template = hp.template
    fs = resources(template, "AWS::FSx::FileSystem")[0]["Properties"]
    cluster = resources(template, "AWS::SageMaker::Cluster")[0]["Properties"]
    assert fs["SubnetIds"] == cluster["VpcConfig"]["Subnets"], "FSx and the nodes must be in one subnet"
    output = json.dumps(fs["SubnetIds"])
    assert "workloadSubnet1" in output, f"zone index 0 is the VPC's first workload subnet: {output}"


def test_each_prefix_has_an_association_exporting_only_the_export_prefixes(hp):
    associations = {
        a["Properties"]["FileSystemPath"]: a["Properties"]
        for a in resources(hp.template, "AWS::FSx::DataRepositoryAssociation")
    }
    assert sorted(associations) == ["/datasets", "/hyperpod", "/models"]
    for path, association in associations.items():
        s3 = association["S3"]
        assert s3["AutoImportPolicy"]["Events"] == ["NEW", "CHANGED", "DELETED"], path
        assert ("AutoExportPolicy" in s3) == (path == "/hyperpod"), f"only hyperpod/ is exported: {path}"
        repository_path = json.dumps(association["DataRepositoryPath"])
        assert f"{path[1:]}/" in repository_path and "s3://" in repository_path, repository_path


def test_project_key_lets_the_fsx_service_linked_role_use_the_bucket(hp):
    key = resources(Template.from_stack(hp.stacks.data), "AWS::KMS::Key")[0]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    fsx = [s for s in statements if s.get("Sid") == "FSxLustreS3DataRepository"]
    assert fsx, "without a key policy entry FSx cannot read or write the KMS-encrypted bucket"
    condition = json.dumps(fsx[0]["Condition"])
    assert "AWSServiceRoleForFSxS3Access_*" in condition and "kms:ViaService" in condition, condition


def test_delete_option_removes_the_file_system_with_the_stack(tmp_path_factory):
    app = synthesize_hyperpod(tmp_path_factory.mktemp("cdk-hp-delete"), {"fsx": {"on_delete": "delete"}})
    app.template.has_resource("AWS::FSx::FileSystem", {"DeletionPolicy": "Delete"})


# --- the cluster ------------------------------------------------------------------------------------


def groups(template: Template) -> dict[str, dict]:
    cluster = resources(template, "AWS::SageMaker::Cluster")[0]["Properties"]
    return {g["InstanceGroupName"]: g for g in cluster["InstanceGroups"]}


def test_cluster_is_slurm_configured_through_the_api_with_automatic_node_recovery(hp):
    hp.template.has_resource_properties(
        "AWS::SageMaker::Cluster",
        {"Orchestrator": {"Slurm": {"SlurmConfigStrategy": "Managed"}}, "NodeRecovery": "Automatic"},
    )


# Values standing in for what CloudFormation resolves at deploy time, shaped like the real ones.
DEPLOY_TIME = {
    "ExecutionRole": "arn:aws:iam::123456789012:role/LlmFt-HyperPod-ExecutionRole-AbCdEf",
    "SourceS3Uri": "s3://llmft-data-bucket/cluster-lifecycle/",
    "VolumeKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "DnsName": "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com",
    "MountName": "abcdefgh",
    "SecurityGroupIds": ["sg-0123456789abcdef0"],
    "Subnets": ["subnet-0123456789abcdef0"],
}


def _deploy_time(value, key=None):
    """The template's properties as the CreateCluster request CloudFormation would send."""
    if isinstance(value, dict) and any(k.startswith(("Fn::", "Ref")) for k in value):
        return DEPLOY_TIME[key]
    if isinstance(value, dict):
        return {k: _deploy_time(v, k) for k, v in value.items()}
    if isinstance(value, list):
        if any(isinstance(v, dict) and any(k.startswith(("Fn::", "Ref")) for k in v) for v in value):
            return DEPLOY_TIME[key]
        return [_deploy_time(v, key) for v in value]
    return value


def create_cluster_request(template: Template) -> dict:
    properties = resources(template, "AWS::SageMaker::Cluster")[0]["Properties"]
    # CloudFormation names the cluster when the template does not; the API requires a name.
    return {"ClusterName": "LlmFt-HyperPod-Cluster-AbCdEf", **_deploy_time(properties)}


@pytest.mark.parametrize("login", [False, True], ids=["controller-and-workers", "with-login"])
def test_the_cluster_is_a_valid_create_cluster_request_by_botocores_model(hp, tmp_path_factory, login):
    """Shapes, enums, lengths and patterns of CreateCluster (botocore's SageMaker model), and the rules
    HyperPod documents for SlurmConfig: one Controller group, at most one Login group, one partition on
    each Compute group and none on the others; Orchestrator.Slurm names its SlurmConfigStrategy."""
    template = hp.template
    if login:
        template = synthesize_hyperpod(
            tmp_path_factory.mktemp("cdk-hp-login"), {"login": {"instance_type": "ml.m5.large"}}
        ).template
    request = create_cluster_request(template)
    assert service_model.request_problems("sagemaker", "CreateCluster", request) == []
    types = [g["SlurmConfig"]["NodeType"] for g in request["InstanceGroups"]]
    assert types.count("Controller") == 1 and types.count("Login") == (1 if login else 0), types
    for group in request["InstanceGroups"]:
        partitions = group["SlurmConfig"].get("PartitionNames")
        if group["SlurmConfig"]["NodeType"] == "Compute":
            assert partitions and len(partitions) == 1, group
        else:
            assert partitions is None, group
    assert request["Orchestrator"] == {"Slurm": {"SlurmConfigStrategy": "Managed"}}


def test_every_group_mounts_the_file_system_through_hyperpod(hp):
    for name, group in groups(hp.template).items():
        fsx = [c["FsxLustreConfig"] for c in group["InstanceStorageConfigs"] if "FsxLustreConfig" in c]
        assert len(fsx) == 1 and fsx[0]["MountPath"] == "/fsx", name
        assert "DNSName" in json.dumps(fsx[0]["DnsName"]) and "LustreMountName" in json.dumps(
            fsx[0]["MountName"]
        )


def test_the_file_system_waits_for_every_lustre_rule(hp):
    """FSx checks its security group's Lustre rules (988, 1018-1023) when it creates the file system."""
    template = hp.template
    lustre = [
        name
        for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
        for name, rule in template.find_resources(kind).items()
        if rule["Properties"].get("FromPort") in (988, 1018)
    ]
    assert len(lustre) == 12, (
        lustre
    )  # 2 ports x (file system in/out from itself and the nodes + nodes in/out)
    (file_system,) = template.find_resources("AWS::FSx::FileSystem").values()
    assert set(lustre) <= set(file_system["DependsOn"]), sorted(set(lustre) - set(file_system["DependsOn"]))


def test_default_groups_are_one_controller_and_two_g5_workers_at_one_thread_per_core(hp):
    found = groups(hp.template)
    assert sorted(found) == ["controller", "workers"], found
    assert (found["controller"]["InstanceType"], found["controller"]["InstanceCount"]) == ("ml.c5.xlarge", 1)
    workers = found["workers"]
    assert (workers["InstanceType"], workers["InstanceCount"], workers["ThreadsPerCore"]) == (
        "ml.g5.12xlarge",
        2,
        1,
    )
    volume = workers["InstanceStorageConfigs"][0]["EbsVolumeConfig"]
    assert volume["VolumeSizeInGB"] == 500 and "VolumeKmsKeyId" in volume, volume


def test_every_group_runs_on_create_from_the_lifecycle_prefix(hp):
    for name, group in groups(hp.template).items():
        config = group["LifeCycleConfig"]
        assert config["OnCreate"] == "on_create.sh", name
        uri = json.dumps(config["SourceS3Uri"])
        assert '"s3://"' in uri and f'"/{LIFECYCLE_PREFIX}"' in uri, f"{name}: {uri}"


def test_login_group_and_more_worker_groups_are_configurable(tmp_path_factory):
    app = synthesize_hyperpod(
        tmp_path_factory.mktemp("cdk-hp-groups"),
        {
            "login": {"instance_type": "ml.m5.large"},
            "workers": [
                {"name": "a100", "instance_type": "ml.p4d.24xlarge", "count": 4, "ebs_volume_gib": 1000},
                {
                    "name": "g5",
                    "instance_type": "ml.g5.2xlarge",
                    "count": 1,
                    "ebs_volume_gib": 200,
                    "partition": "dev",
                },
            ],
        },
    )
    found = groups(app.template)
    assert sorted(found) == ["a100", "controller", "g5", "login"], found
    assert found["a100"]["InstanceCount"] == 4 and found["login"]["InstanceType"] == "ml.m5.large"
    assert "ThreadsPerCore" not in found["login"], "only worker groups run one thread per core"


def test_cluster_waits_for_its_scripts_role_and_file_system(hp):
    template = hp.template
    cluster = template.find_resources("AWS::SageMaker::Cluster")
    depends = next(iter(cluster.values()))["DependsOn"]
    for needed in ("LifecycleScriptsCustomResource", "ExecutionRoleDefaultPolicy", "FileSystem"):
        assert any(needed in d for d in depends), f"the cluster must wait for {needed}: {depends}"


# --- the execution role -----------------------------------------------------------------------------


def role_statements(template: Template) -> list[dict]:
    role = logical_id(template, "AWS::IAM::Role", "HyperPodExecutionRole")
    policies = [
        p["Properties"]
        for p in resources(template, "AWS::IAM::Policy")
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_role_is_for_sagemaker_with_the_cluster_instance_managed_policy(hp):
    hp.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]
            },
            "ManagedPolicyArns": [
                {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::aws:policy/{MANAGED_POLICY}"]]}
            ],
        },
    )


def test_role_can_read_the_lifecycle_scripts_in_the_data_bucket(hp):
    """The managed policy reads only sagemaker-* buckets; our scripts need an explicit grant."""
    readable = [
        json.dumps(s["Resource"])
        for s in role_statements(hp.template)
        if "s3:GetObject*" in actions(s) and s["Effect"] == "Allow"
    ]
    assert any(f"/{LIFECYCLE_PREFIX}*" in r for r in readable), readable
    for prefix in ("datasets/", "models/", "hyperpod/"):
        assert any(f"/{prefix}*" in r for r in readable), f"no read on {prefix}: {readable}"
    writes = [a for s in role_statements(hp.template) for a in actions(s) if a.startswith("s3:Put")]
    assert not writes, f"the nodes write to S3 through FSx only, never directly: {writes}"


def test_role_has_the_network_interface_permissions_scoped_to_the_vpc(hp):
    statements = role_statements(hp.template)
    granted = {a for s in statements for a in actions(s)}
    for action in (
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ec2:DetachNetworkInterface",
    ):
        assert action in granted, f"missing {action}"
    delete = next(s for s in statements if "ec2:DeleteNetworkInterface" in actions(s))
    assert "ec2:Vpc" in json.dumps(delete.get("Condition")), "interface changes must be held to our VPC"


def test_role_can_pull_the_training_image(hp):
    granted = {a for s in role_statements(hp.template) for a in actions(s)}
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken"):
        assert action in granted, f"enroot cannot pull the image without {action}"


# --- the lifecycle scripts and llmft_parameters.json ---------------------------------------------------


def deployment(hp: HyperPodApp) -> dict:
    return resources(hp.template, "Custom::CDKBucketDeployment")[0]["Properties"]


def deployed_files(hp: HyperPodApp) -> dict[str, Path]:
    files = {}
    for key in deployment(hp)["SourceObjectKeys"]:
        folder = hp.out_dir / f"asset.{key.removesuffix('.zip')}"
        files.update({str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()})
    return files


def test_scripts_and_sbatch_files_are_deployed_under_the_lifecycle_prefix(hp):
    props = deployment(hp)
    assert props["DestinationBucketKeyPrefix"] == LIFECYCLE_PREFIX and props["Prune"] is True
    files = deployed_files(hp)
    for name in (
        "on_create.sh",
        "llmft_lifecycle.py",
        LIFECYCLE_PARAMETERS,
        "sbatch/llamafactory-multinode.sbatch",
        "sbatch/llmft-node.sh",
    ):
        assert name in files, f"{name} is not deployed: {sorted(files)}"
    assert "provisioning_parameters.json" not in files, "the legacy Slurm file would mix the two models"


def test_the_script_upload_can_change_nothing_outside_the_lifecycle_prefix(hp):
    """aws-cdk-lib grants the BucketDeployment handler read-write on the whole data bucket."""
    statements = [
        statement
        for policy in hp.template.find_resources("AWS::IAM::Policy").values()
        if "CDKBucketDeployment" in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Action"] == ["s3:Abort*", "s3:DeleteObject*", "s3:PutObject*"]
    join = deny["NotResource"]["Fn::Join"]
    assert "StoreDataBucket" in json.dumps(join[1][0]) and join[1][1:] == [f"/{LIFECYCLE_PREFIX}*"], join


def test_lifecycle_parameters_name_groups_partitions_file_system_and_image(hp):
    props = deployment(hp)
    markers = {k: json.dumps(v) for m in props["SourceMarkers"] for k, v in m.items()}
    text = deployed_files(hp)[LIFECYCLE_PARAMETERS].read_text()
    # Markers stand for JSON strings CloudFormation fills in at deploy; name them after their source.
    for marker, value in markers.items():
        if "LustreMountName" in value:
            text = text.replace(marker, '"MOUNT"')
        elif "DNSName" in value:
            text = text.replace(marker, '"DNS"')
        elif "ImageUri" in value:
            # The TrainingImage stack's build resource gives the URI (`<repo uri>:<tag>`) as one string.
            assert "LlmFt-TrainingImage" in value and "Fn::Split" not in value, value
            text = text.replace(marker, '"IMAGE"')
    params = json.loads(text)
    assert params == {
        "controller_group": "controller",
        "worker_groups": [{"instance_group_name": "workers", "partition_name": "gpu"}],
        "fsx_dns_name": "DNS",
        "fsx_mountname": "MOUNT",
        "llmft_mount_point": "/fsx",
        "llmft_image_uri": "IMAGE",
    }


def test_lifecycle_parameters_name_the_login_group_when_there_is_one():
    config = load_config(project_context({"hyperpod": {"login": {"instance_type": "ml.m5.large"}}})).hyperpod
    params = lifecycle_parameters(config, fsx_dns_name="d", fsx_mount_name="m", image_uri="i")
    assert params["login_group"] == "login"
    without = lifecycle_parameters(
        load_config({}).hyperpod, fsx_dns_name="d", fsx_mount_name="m", image_uri="i"
    )
    assert "login_group" not in without


def test_outputs_give_the_cluster_file_system_and_ssm_command(hp):
    outputs = hp.template.find_outputs("*")
    for name in ("ClusterArn", "FileSystemDnsName", "FileSystemMountName", "ControllerSsmCommand"):
        assert name in outputs, f"missing output {name}: {sorted(outputs)}"
    ssm = json.dumps(outputs["ControllerSsmCommand"]["Value"])
    assert "aws ssm start-session --target sagemaker-cluster:" in ssm and "_controller-<instance-id>" in ssm


# --- zones --------------------------------------------------------------------------------------------


def test_a_pinned_zone_name_selects_that_zones_subnet(tmp_path_factory):
    app = synthesize_hyperpod(
        tmp_path_factory.mktemp("cdk-hp-zone"),
        {"availability_zone": "eu-west-1c"},
        account="123456789012",
        region="eu-west-1",
        network={"availability_zones": ["eu-west-1a", "eu-west-1c"]},
    )
    subnet_ref = resources(app.template, "AWS::FSx::FileSystem")[0]["Properties"]["SubnetIds"]
    network = Template.from_stack(app.stacks.network)
    zone_c = [
        name
        for name, s in network.find_resources("AWS::EC2::Subnet").items()
        if s["Properties"]["AvailabilityZone"] == "eu-west-1c" and "workload" in name
    ]
    assert len(zone_c) == 1 and zone_c[0] in json.dumps(subnet_ref), (zone_c, subnet_ref)
