"""The security review (tools/security_review.py): its readings of hand-written templates, of the whole
synthesized app, and the file `make synth` writes."""

import json
import re
import shutil
import sys

import pytest

from project_config import load_config
from tests.conftest import CDK_JSON_CONTEXT, FULL_TEST_CONFIG, ROOT
from tools import (
    nag_summary,
    security_review,
    security_review_diagram,
    security_review_iam,
    security_review_nag,
    security_review_network,
    security_review_stores,
)
from tools.security_review_cfn import App, find_settings, readable_names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_SEVEN = {"Data", "Network", "TrainingImage", "TrainingPipeline", "HyperPod", "Inference", "Notebook"}


def getatt(lid: str, attribute: str = "Arn") -> dict:
    return {"Fn::GetAtt": [lid, attribute]}


def ref(lid: str) -> dict:
    return {"Ref": lid}


def sg_egress_count(template: dict, lid: str) -> int:
    """Egress rules of a group as the template writes them: inline plus separate resources naming it."""
    inline = len(template["Resources"][lid]["Properties"].get("SecurityGroupEgress", []))
    separate = sum(
        1
        for body in template["Resources"].values()
        if body["Type"] == "AWS::EC2::SecurityGroupEgress"
        and body["Properties"].get("GroupId") == getatt(lid, "GroupId")
    )
    return inline + separate


# Hand-written templates: each reading on its own.

DATA = {
    "Resources": {
        "KeyAAAAAAAA": {"Type": "AWS::KMS::Key", "Properties": {"EnableKeyRotation": True}},
        "BucketBBBBBBBB": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "BucketKeyEnabled": True,
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": getatt("KeyAAAAAAAA"),
                            },
                        }
                    ]
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True},
            },
        },
        "BucketPolicyCCCCCCCC": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("BucketBBBBBBBB"),
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Principal": {"AWS": "*"},
                            "Action": "s3:*",
                            "Resource": getatt("BucketBBBBBBBB"),
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ]
                },
            },
        },
        "PlainBucketDDDDDDDD": {"Type": "AWS::S3::Bucket", "Properties": {}},
    },
    "Outputs": {"ExportBucketArn": {"Value": getatt("BucketBBBBBBBB")}},
}

JOBS = {
    "Mappings": {"Images": {"eu-west-1": {"Uri": "image-uri"}}},
    "Resources": {
        "RoleEEEEEEEE": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": "runs the jobs",
                "AssumeRolePolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "sagemaker.amazonaws.com"},
                            "Condition": {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}},
                        }
                    ]
                },
                "ManagedPolicyArns": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/ReadOnlyAccess"}],
                "Policies": [
                    {
                        "PolicyName": "Own",
                        "PolicyDocument": {
                            "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]
                        },
                    }
                ],
            },
        },
        "RolePolicyFFFFFFFF": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "Grants",
                "Roles": [ref("RoleEEEEEEEE")],
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject"],
                            "Resource": {
                                "Fn::Join": [
                                    "",
                                    [
                                        {
                                            "Fn::GetStackOutput": {
                                                "StackName": "Demo-Data",
                                                "OutputName": "ExportBucketArn",
                                            }
                                        },
                                        "/datasets/*",
                                    ],
                                ]
                            },
                        }
                    ]
                },
            },
        },
        "Function1A1A1A1A": {"Type": "AWS::Lambda::Function", "Properties": {"Role": getatt("RoleEEEEEEEE")}},
        "Machine2B2B2B2B": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "RoleArn": getatt("RoleEEEEEEEE"),
                "DefinitionString": {
                    "Fn::Join": [
                        "",
                        [
                            '{"States": {"Train": {"Resource": "arn:',
                            ref("AWS::Partition"),
                            ':states:::sagemaker:createTrainingJob", "Parameters": '
                            '{"OutputDataConfig": {"KmsKeyId": "${KeyArn}"}, "RoleArn": "${Role}"}}}}',
                        ],
                    ]
                },
                "DefinitionSubstitutions": {
                    "KeyArn": {"Fn::GetStackOutput": {"StackName": "Demo-Data", "OutputName": "KeyArn"}},
                    "Role": getatt("RoleEEEEEEEE"),
                },
            },
        },
    },
}
DATA["Outputs"]["KeyArn"] = {"Value": getatt("KeyAAAAAAAA")}

NET = {
    "Resources": {
        "VpcAAAAAAAA": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        "SubnetBBBBBBBB": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {
                "VpcId": ref("VpcAAAAAAAA"),
                "CidrBlock": "10.0.0.0/24",
                "AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
                "Tags": [{"Key": "Name", "Value": "private-a"}],
            },
        },
        "TableCCCCCCCC": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": ref("VpcAAAAAAAA")}},
        "AssocDDDDDDDD": {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {"SubnetId": ref("SubnetBBBBBBBB"), "RouteTableId": ref("TableCCCCCCCC")},
        },
        "NatEEEEEEEE": {"Type": "AWS::EC2::NatGateway", "Properties": {"SubnetId": ref("SubnetBBBBBBBB")}},
        "RouteFFFFFFFF": {
            "Type": "AWS::EC2::Route",
            "Properties": {
                "RouteTableId": ref("TableCCCCCCCC"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "NatGatewayId": ref("NatEEEEEEEE"),
            },
        },
        "HttpsOut1A1A1A1A": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "https out",
                "VpcId": ref("VpcAAAAAAAA"),
                "SecurityGroupEgress": [
                    {
                        "CidrIp": "0.0.0.0/0",
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "Description": "x",
                    }
                ],
            },
        },
        "NoEgress2B2B2B2B": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "nothing said", "VpcId": ref("VpcAAAAAAAA")},
        },
        "Separate3C3C3C3C": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "separate rules", "VpcId": ref("VpcAAAAAAAA")},
        },
        "SeparateEgress4D4D4D4D": {
            "Type": "AWS::EC2::SecurityGroupEgress",
            "Properties": {
                "GroupId": getatt("Separate3C3C3C3C", "GroupId"),
                "DestinationSecurityGroupId": getatt("HttpsOut1A1A1A1A", "GroupId"),
                "IpProtocol": "tcp",
                "FromPort": 988,
                "ToPort": 988,
            },
        },
        "Notebook5E5E5E5E": {
            "Type": "AWS::SageMaker::NotebookInstance",
            "Properties": {
                "DirectInternetAccess": "Disabled",
                "SubnetId": ref("SubnetBBBBBBBB"),
                "SecurityGroupIds": [getatt("HttpsOut1A1A1A1A", "GroupId")],
            },
        },
        "Outside6F6F6F6F": {"Type": "AWS::Lambda::Function", "Properties": {}},
    }
}


@pytest.fixture(scope="module")
def demo() -> App:
    return App({"Demo-Data": DATA, "Demo-Jobs": JOBS, "Demo-Net": NET})


def test_intrinsics_read_as_placeholders_and_cross_stack_references_name_their_stack(demo):
    policy = JOBS["Resources"]["RolePolicyFFFFFFFF"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert demo.render("Demo-Jobs", policy["Resource"]) == "<Demo-Data:Bucket.Arn>/datasets/*"
    assert demo.render("Demo-Data", getatt("BucketBBBBBBBB")) == "<Bucket.Arn>"
    assert demo.render("Demo-Jobs", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${RoleEEEEEEEE.Arn}"}) == (
        "arn:<AWS::Partition>:s3:::<Role.Arn>"
    )
    assert demo.render("Demo-Net", {"Fn::Select": [1, {"Fn::GetAZs": ""}]}) == "<AZs[1]>"
    assert demo.render("Demo-Jobs", {"Fn::FindInMap": ["Images", "eu-west-1", "Uri"]}) == "image-uri"
    assert demo.render("Demo-Jobs", {"Fn::FindInMap": ["Images", ref("AWS::Region"), "Uri"]}) == (
        "<Images[AWS::Region].Uri>"
    )
    assert demo.target("Demo-Jobs", policy["Resource"]) is None, "a Join is not the bucket itself"
    assert demo.refs("Demo-Jobs", policy["Resource"]) == {("Demo-Data", "BucketBBBBBBBB")}


def test_readable_names_drop_the_hash_unless_two_resources_would_share_a_name():
    names = readable_names(["DataBucket0A1B2C3D", "LogsAAAAAAAA", "LogsBBBBBBBB", "Plain"])
    assert names == {
        "DataBucket0A1B2C3D": "DataBucket",
        "LogsAAAAAAAA": "LogsAAAAAAAA",
        "LogsBBBBBBBB": "LogsBBBBBBBB",
        "Plain": "Plain",
    }


def test_a_role_shows_its_trust_managed_policies_every_statement_and_its_users(demo):
    (role,) = security_review_iam.roles(demo)
    assert role.name == "Role" and role.description == "runs the jobs"
    (trust,) = role.trust
    assert trust.principals == ["Service: sagemaker.amazonaws.com"]
    assert trust.conditions == ["StringEquals aws:SourceAccount = <AWS::AccountId>"]
    assert role.managed == ["arn:<AWS::Partition>:iam::aws:policy/ReadOnlyAccess"]
    assert [(s.source, s.actions, s.resources) for s in role.statements] == [
        ("inline Own", ["logs:PutLogEvents"], ["*"]),
        ("RolePolicy", ["s3:GetObject"], ["<Demo-Data:Bucket.Arn>/datasets/*"]),
    ]
    assert role.used_by == ["Lambda::Function Function", "StepFunctions::StateMachine Machine"]
    text = "\n".join(security_review_iam.section([role], []))
    assert "- Assumed by: `Service: sagemaker.amazonaws.com may sts:AssumeRole when StringEquals" in text
    assert "| Allow | `s3:GetObject` | `<Demo-Data:Bucket.Arn>/datasets/*` |  | `RolePolicy` |" in text


def test_a_state_machine_definition_is_read_with_its_substitutions(demo):
    machine = demo.resource(("Demo-Jobs", "Machine2B2B2B2B"))
    found = dict(find_settings(demo.expanded(machine), security_review_stores.KEY_SETTING))
    path = "DefinitionString.States.Train.Parameters.OutputDataConfig.KmsKeyId"
    assert demo.text("Demo-Jobs", found[path]) == "<Demo-Data:Key.Arn>"
    assert demo.references[machine.key] == {("Demo-Jobs", "RoleEEEEEEEE"), ("Demo-Data", "KeyAAAAAAAA")}


def test_buckets_show_their_key_public_access_block_and_tls_policy(demo):
    rows = {r.name: r for r in security_review_stores.stores(demo) if r.kind == "S3 bucket"}
    assert rows["Bucket"].key == "<Key.Arn>"
    assert "encryption aws:kms, bucket key on" in rows["Bucket"].settings
    assert "public access block missing: IgnorePublicAcls, RestrictPublicBuckets" in rows["Bucket"].settings
    assert "TLS only (bucket policy denies aws:SecureTransport false)" in rows["Bucket"].settings
    assert rows["Bucket"].on_delete == "Retain"
    assert rows["PlainBucket"].key == "none in template (S3 applies SSE-S3)"
    assert "plain HTTP not denied by a bucket policy" in rows["PlainBucket"].settings
    assert rows["PlainBucket"].on_delete == "Delete (default)"


def test_security_groups_list_every_egress_rule_and_ec2_s_default_when_the_template_has_none(demo):
    groups = {g.name: g for g in security_review_network.security_groups(demo).values()}
    (https,) = groups["HttpsOut"].egress
    assert (https.peer, https.ports, https.internet) == ("0.0.0.0/0 (anywhere)", "tcp 443", True)
    (default,) = groups["NoEgress"].egress
    assert (default.ports, default.origin, default.internet) == ("all traffic", "not in template", True)
    (separate,) = groups["Separate"].egress
    assert (separate.peer, separate.ports, separate.origin) == ("group HttpsOut", "tcp 988", "SeparateEgress")
    assert "check that the deployed group lost it" in groups["Separate"].note
    assert groups["HttpsOut"].members == ["SageMaker::NotebookInstance Notebook"]


def test_what_reaches_the_internet_follows_groups_and_the_subnet_s_default_route(demo):
    net = security_review_network.network(demo)
    (subnet,) = net.subnets
    assert (subnet.name, subnet.default_route) == ("private-a", "0.0.0.0/0 -> EC2::NatGateway Nat")
    placed = {p.resource: p.internet for p in net.placements}
    assert (
        placed["SageMaker::NotebookInstance Notebook"]
        == "yes: tcp 443 through 0.0.0.0/0 -> EC2::NatGateway Nat"
    )
    assert placed["Lambda::Function Outside"] == "yes: outside the VPC, on the AWS-managed network"


def test_the_diagram_draws_grants_roles_rules_routes_and_keys(demo):
    edges = {(e.source[1], e.target[1], e.kind) for e in security_review_diagram.graph(demo).edges}
    assert ("RoleEEEEEEEE", "BucketBBBBBBBB", "IAM grant") in edges
    assert ("Function1A1A1A1A", "RoleEEEEEEEE", "runs as") in edges
    assert ("Machine2B2B2B2B", "KeyAAAAAAAA", "encrypted by") in edges
    assert ("Separate3C3C3C3C", "HttpsOut1A1A1A1A", "network") in edges
    assert ("SubnetBBBBBBBB", "NatEEEEEEEE", "network") in edges
    assert not any(target == "VpcAAAAAAAA" for _, target, _ in edges), "the VPC is the column, not an edge"


def test_nag_reports_of_every_pack_are_read_with_each_suppression_s_finding(tmp_path):
    line = {"resourceId": "S/Role/Resource", "ruleLevel": "Error", "ruleInfo": "wildcards"}
    reports = {
        "AwsSolutions--S-NagReport.json": [
            {
                **line,
                "ruleId": "AwsSolutions-IAM5",
                "compliance": "Suppressed",
                "exceptionReason": "[Resource::*] why",
            },
            {**line, "ruleId": "AwsSolutions-IAM4", "compliance": "Compliant", "exceptionReason": "N/A"},
        ],
        "HIPAA.Security-S-NagReport.json": [
            {
                **line,
                "ruleId": "HIPAA.Security-IAMNoInlinePolicy",
                "compliance": "Suppressed",
                "exceptionReason": "why",
            }
        ],
        "NIST.800.53.R5-T-NagReport.json": [
            {
                **line,
                "ruleId": "NIST.800.53.R5-S3BucketLogging",
                "compliance": "Non-Compliant",
                "exceptionReason": "N/A",
            }
        ],
    }
    for name, lines in reports.items():
        (tmp_path / name).write_text(json.dumps({"lines": lines}))
    loaded = nag_summary.load_packs(tmp_path)
    assert {pack: sorted(stacks) for pack, stacks in loaded.items()} == {
        "AwsSolutions": ["S"],
        "HIPAA.Security": ["S"],
        "NIST.800.53.R5": ["T"],
    }
    assert [(s.pack, s.rule, s.applies_to, s.reason) for s in security_review_nag.suppressions(loaded)] == [
        ("AwsSolutions", "AwsSolutions-IAM5", "Resource::*", "why"),
        ("HIPAA.Security", "HIPAA.Security-IAMNoInlinePolicy", "", "why"),
    ]
    text = "\n".join(security_review_nag.section(loaded, ["S", "T"]))
    assert "| S | `S/Role/Resource` | AwsSolutions-IAM5 | `Resource::*` | why |" in text
    assert "| S | `S/Role/Resource` | HIPAA.Security-IAMNoInlinePolicy | (whole rule) | why |" in text
    assert "### NIST.800.53.R5: open findings (1)" in text


def test_the_all_stacks_override_is_the_test_suite_s():
    assert security_review.ALL_STACKS == FULL_TEST_CONFIG


def test_the_review_switches_on_what_cdk_json_leaves_off_and_names_what_the_configuration_refuses():
    llmft, applied, refused = security_review.review_config(CDK_JSON_CONTEXT["llmft"], load_config)
    assert not refused
    assert {a.split(" = ")[0] for a in applied} == {
        f"{section}.{key}"
        for section, settings in FULL_TEST_CONFIG.items()
        for key in settings
        if not CDK_JSON_CONTEXT["llmft"].get(section, {}).get(key)
    }
    config = load_config(llmft)
    assert config.hyperpod.enabled and config.inference.enabled and config.notebook.enabled
    # Without a NAT gateway the notebook cannot exist: the review says so instead of failing.
    isolated = {
        **CDK_JSON_CONTEXT["llmft"],
        "network": {**CDK_JSON_CONTEXT["llmft"]["network"], "nat_gateways": 0},
    }
    llmft, applied, refused = security_review.review_config(isolated, load_config)
    assert any(r.startswith("notebook.enabled = true: ") and "nat_gateways" in r for r in refused), refused
    assert load_config(llmft).hyperpod.enabled
    # A value of cdk.json's own is reviewed as it is.
    named = {**CDK_JSON_CONTEXT["llmft"], "training": {**CDK_JSON_CONTEXT["llmft"]["training"]}}
    named["training"]["hf_token_secret_name"] = "team/token"
    llmft, applied, _ = security_review.review_config(named, load_config)
    assert llmft["training"]["hf_token_secret_name"] == "team/token"
    assert not any(a.startswith("training.hf_token_secret_name") for a in applied)


# The whole app, every stack enabled (the same templates the review reads).


@pytest.fixture(scope="module")
def full(full_app):
    app = App.load(full_app.out_dir)
    reports = nag_summary.load_packs(full_app.out_dir)
    text, counts = security_review.render(app, reports, None, [], [])
    return app, reports, text, counts


def test_the_full_app_has_all_seven_stacks(full):
    app, reports, text, counts = full
    assert {stack.split("-", 1)[1] for stack in app.templates} == ALL_SEVEN
    assert counts["stacks"] == 7
    assert sorted(reports["AwsSolutions"]) == sorted(app.templates)


def test_every_role_appears_with_its_trust_principal(full):
    app, _, text, counts = full
    roles = [
        (stack, lid, body)
        for stack, t in app.templates.items()
        for lid, body in t["Resources"].items()
        if body["Type"] == "AWS::IAM::Role"
    ]
    assert counts["roles"] == len(roles) > 0
    for stack, lid, body in roles:
        heading = f"#### {app.name((stack, lid), stack)}\n"
        iam_of_stack = text.split(f"\n### {stack}\n", 1)[1]
        assert heading in iam_of_stack, f"{stack} {lid}: no section"
        after = iam_of_stack.split(heading, 1)[1].splitlines()
        assumed = next(line for line in after if line.startswith("- Assumed by:"))
        for statement in body["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            for kind, principal in statement["Principal"].items():
                assert f"{kind}: {principal}" in assumed, f"{stack} {lid}: trust {principal} missing"


def test_the_training_role_reads_datasets_and_the_review_shows_where(full):
    app, _, text, _ = full
    (role,) = [
        r
        for r in security_review_iam.roles(app)
        if r.stack.endswith("-TrainingPipeline") and r.name == "PipelineTrainingRole"
    ]
    data = next(stack for stack in app.templates if stack.endswith("-Data"))
    bucket = next(
        lid
        for lid, b in app.templates[data]["Resources"].items()
        if b["Type"] == "AWS::S3::Bucket" and "KMSMasterKeyID" in json.dumps(b["Properties"])
    )
    datasets = f"<{app.name((data, bucket))}.Arn>/datasets/*"
    reads = [s for s in role.statements if "s3:GetObject" in s.actions and s.effect == "Allow"]
    assert any(datasets in s.resources for s in reads), [s.resources for s in reads]
    assert re.search(rf"\| Allow \| `s3:GetObject` \| [^|]*`{re.escape(datasets)}`", text)
    assert full[3]["role statements"] == statements_in_templates(app)


def statements_in_templates(app: App) -> int:
    """Statements attached to roles, counted straight from the templates."""
    total = 0
    for template in app.templates.values():
        for body in template["Resources"].values():
            if body["Type"] == "AWS::IAM::Policy":
                total += len(body["Properties"]["PolicyDocument"]["Statement"]) * len(
                    body["Properties"]["Roles"]
                )
            if body["Type"] == "AWS::IAM::Role":
                total += sum(
                    len(p["PolicyDocument"]["Statement"]) for p in body["Properties"].get("Policies", [])
                )
    return total


def test_every_bucket_shows_its_key(full):
    app, _, text, _ = full
    rows = {(r.stack, r.name): r for r in security_review_stores.stores(app) if r.kind == "S3 bucket"}
    buckets = [
        (s, lid, b)
        for s, t in app.templates.items()
        for lid, b in t["Resources"].items()
        if b["Type"] == "AWS::S3::Bucket"
    ]
    assert len(rows) == len(buckets) > 0
    for stack, lid, body in buckets:
        row = rows[(stack, app.name((stack, lid), stack))]
        default = body["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]
        if "KMSMasterKeyID" in default:
            key_lid = default["KMSMasterKeyID"]["Fn::GetAtt"][0]
            assert row.key == f"<{app.name((stack, key_lid), stack)}.Arn>", row
        else:
            assert row.key.startswith(default["SSEAlgorithm"]), row
        assert f"| {stack} | S3 bucket | `{row.name}` | `{row.key}` |" in text


def test_every_security_group_lists_its_egress_rules(full):
    app, _, text, counts = full
    groups = security_review_network.security_groups(app)
    raw = [
        (s, lid)
        for s, t in app.templates.items()
        for lid, b in t["Resources"].items()
        if b["Type"] == "AWS::EC2::SecurityGroup"
    ]
    assert counts["security groups"] == len(raw) > 0
    for stack, lid in raw:
        group = groups[(stack, lid)]
        written = sg_egress_count(app.templates[stack], lid)
        assert len(group.egress) == max(written, 1), f"{stack} {lid}"
        section = text.split(f"#### {stack}: {group.name}\n", 1)[1].split("\n#### ", 1)[0]
        egress = section.split("Egress:", 1)[1]
        for rule in group.egress:
            assert f"| `{rule.peer}` | {rule.ports} |" in egress, f"{stack} {lid}: {rule}"


def test_every_suppression_in_the_nag_reports_appears_in_the_review(full, full_app):
    _, _, text, counts = full
    rows = text.splitlines()
    per_pack: dict[str, int] = {}
    for path in full_app.out_dir.glob("*-NagReport.json"):
        pack = path.name.split("-", 1)[0]
        for line in json.loads(path.read_text())["lines"]:
            if line["compliance"] != "Suppressed":
                continue
            per_pack[pack] = per_pack.get(pack, 0) + 1
            reason = line["exceptionReason"]
            finding = ""
            if reason.startswith("[") and "] " in reason:
                finding, reason = reason[1:].split("] ", 1)
            applies_to = f"`{finding}`" if finding else "(whole rule)"
            expected = (
                f"| `{line['resourceId']}` | {line['ruleId']} | {applies_to} | "
                + reason.replace("|", "\\|").replace("\n", " ")
                + " |"
            )
            assert any(row.endswith(expected) for row in rows), expected
    assert per_pack, "the full app has suppressions"
    for pack, count in per_pack.items():
        assert counts[f"suppressions ({pack})"] == count


def test_with_matplotlib_the_diagram_is_a_png(full, tmp_path):
    pytest.importorskip("matplotlib")
    app = full[0]
    image = tmp_path / "architecture.png"
    assert security_review_diagram.draw(security_review_diagram.graph(app), app.stack_order(), image) is None
    data = image.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1500 and height > 600, (width, height)
    assert len(data) > 100_000, "a blank image would be far smaller"


def test_without_matplotlib_the_review_says_why_and_keeps_everything_else(full_app, tmp_path, monkeypatch):
    for path in [*full_app.out_dir.glob("*.template.json"), *full_app.out_dir.glob("*-NagReport.json")]:
        shutil.copy(path, tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    counts = security_review.write_review(tmp_path, [], [])
    text = (tmp_path / "README.md").read_text()
    assert "Diagram not drawn because matplotlib is not installed" in text
    assert not (tmp_path / security_review.DIAGRAM_FILE).exists()
    assert "](architecture.png)" not in text
    for heading in ("## IAM roles", "## Data stores and their keys", "## Network exposure", "## cdk-nag"):
        assert heading in text
    assert counts["roles"] > 0


# `make synth`: the Makefile line, and the tool run from cdk.json's own (four-stack) configuration.


def test_make_synth_runs_the_review_after_the_cdk_synth():
    recipe = re.search(r"^synth:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    lines = [line.strip() for line in recipe[1].splitlines()]
    review = lines.index("$(BIN)/python -m tools.security_review cdk.out")
    assert any("$(CDK) synth" in line for line in lines[:review])


def test_the_tool_writes_a_review_of_all_seven_stacks_from_the_default_configuration(tmp_path, capsys):
    enabled = [s for s in ("hyperpod", "inference", "notebook") if CDK_JSON_CONTEXT["llmft"][s]["enabled"]]
    assert security_review.main(["security_review", str(tmp_path)]) == 0
    folder = tmp_path / security_review.REVIEW_FOLDER
    stacks = {p.name.removesuffix(".template.json").split("-", 1)[1] for p in folder.glob("*.template.json")}
    assert stacks == ALL_SEVEN, f"cdk.json enables {enabled or 'no optional stack'}"
    text = (folder / "README.md").read_text()
    for stack in ALL_SEVEN:
        assert f"-{stack}" in text.split("## Summary", 1)[1].split("\n\n", 2)[1]
    assert "7 stacks" in capsys.readouterr().out


def test_the_tool_fails_clearly_when_it_cannot_write(tmp_path, capsys):
    blocker = tmp_path / "cdk.out"
    blocker.write_text("a file where the folder should be")
    assert security_review.main(["security_review", str(blocker)]) == 1
    assert (
        f"security review: cannot write {blocker / security_review.REVIEW_FOLDER}" in capsys.readouterr().err
    )
