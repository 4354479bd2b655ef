"""Helpers for cdk-nag suppressions that name one resource's findings exactly."""

import re

from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from constructs import Construct
from constructs import llmft_compliance as compliance

# A partition in findings: a pseudo parameter (env-agnostic) or a literal (fixed environment).
ANY_PARTITION = "(<AWS::Partition>|aws[a-z-]*)"


def logical_id(construct: Construct) -> str:
    """The CloudFormation logical ID of a construct's resource, as cdk-nag writes it in `applies_to`
    (`Resource::<LogicalId.Arn>/...`)."""
    resource = construct.node.default_child or construct
    return Stack.of(resource).resolve(resource.logical_id)


def arn_of_other_stack(construct: Construct, suffix: str) -> RegexAppliesTo:
    """The finding `Resource::<arn of a resource in another stack><suffix>`, exactly this resource.

    cdk-nag checks twice: before cross-stack references are resolved the ARN reads `<Id.Arn>`, after
    it is an `Fn::GetStackOutput` of an output named after the same logical ID.
    """
    resource_id = re.escape(logical_id(construct))
    before = rf"<{resource_id}\.Arn>"
    after = (
        rf'\{{"Fn::GetStackOutput":.*"OutputName":"PublishOutputFnGetAtt{resource_id}Arn[0-9A-F]{{8}}"\}}\}}'
    )
    return RegexAppliesTo(regex=f"/^Resource::({before}|{after}){re.escape(suffix)}$/")


def arn_in_this_account(service: str, resource: str) -> RegexAppliesTo:
    """The finding `Resource::arn:<partition>:<service>:<region>:<account>:<resource>`, whether region and
    account are pseudo parameters (env-agnostic) or literals (fixed environment)."""
    env = rf"(<AWS::Partition>|[a-z-]+):{service}:(<AWS::Region>|[a-z0-9-]+):(<AWS::AccountId>|\d{{12}})"
    return RegexAppliesTo(regex=f"/^Resource::arn:{env}:{re.escape(resource)}$/")


def suppress_bucket_deployment(stack: Stack, data_bucket: s3.IBucket, *, copies: str) -> None:
    """The findings on aws-cdk-lib's BucketDeployment handler (one per stack), each with its reason.

    `copies` says what the stack's deployment writes into the data bucket, for the reviewers' report.
    """
    handler = next(
        child for child in stack.node.children if child.node.id.startswith("Custom::CDKBucketDeployment")
    )
    role = handler.node.find_child("ServiceRole")
    NagSuppressions.add_resource_suppressions(
        role,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="aws-cdk-lib's BucketDeployment handler role carries AWSLambdaBasicExecutionRole "
                "(create and write any log group), though the handler logs only to its own encrypted "
                f"group; it runs only while the stack deploys and {copies}.",
                applies_to=[
                    RegexAppliesTo(
                        regex=f"/^Policy::arn:{ANY_PARTITION}:iam::aws:policy\\/service-role"
                        "\\/AWSLambdaBasicExecutionRole$/"
                    )
                ],
            )
        ],
    )
    NagSuppressions.add_resource_suppressions(
        role.node.find_child("DefaultPolicy"),
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="aws-cdk-lib's BucketDeployment grants: GetObject*/GetBucket*/List* on the whole "
                "bootstrap asset bucket (it needs this stack's zip only) and read-write on the whole data "
                "bucket with the project key's encrypt and decrypt actions; a Deny beside them limits "
                f"puts, deletes and aborts to its prefix, reads are not fenced. The handler {copies}.",
                applies_to=[
                    "Action::s3:GetBucket*",
                    "Action::s3:GetObject*",
                    "Action::s3:List*",
                    "Action::s3:Abort*",
                    "Action::s3:DeleteObject*",
                    "Action::kms:GenerateDataKey*",
                    "Action::kms:ReEncrypt*",
                    arn_of_other_stack(data_bucket, "/*"),
                    # CDK's bootstrap asset bucket, whether account and region are tokens or literals.
                    RegexAppliesTo(
                        regex=f"/^Resource::arn:{ANY_PARTITION}:s3:::cdk-hnb659fds-assets-"
                        "(<AWS::AccountId>|\\d{12})-(<AWS::Region>|[a-z0-9-]+)\\/\\*$/"
                    ),
                ],
            )
        ],
    )
    NagSuppressions.add_resource_suppressions(
        handler,
        [
            NagPackSuppression(
                id="AwsSolutions-L1",
                reason="The BucketDeployment handler's runtime is pinned by aws-cdk-lib together with "
                "its bundled AWS CLI layer; it moves with aws-cdk-lib upgrades, not with this project. "
                f"The handler {copies}.",
            )
        ],
    )
    compliance.inline_policy(
        role.node.find_child("DefaultPolicy"),
        f"aws-cdk-lib's BucketDeployment handler role: it {copies}",
    )
    compliance.lambda_rules(
        handler,
        does=f"aws-cdk-lib's BucketDeployment handler {copies}",
        invoked="Invoked by CloudFormation for the deployment resource; CloudFormation waits for its answer "
        "and fails the deploy without one, which is where an operator looks. A dead-letter queue would "
        "hold an event nothing replays.",
        concurrency="Runs only while CloudFormation deploys this stack (once per changed deployment), so "
        "deploys bound its concurrency; a reservation would take capacity from every other function.",
        network="Copies from CDK's bootstrap asset bucket, which the VPC's S3 endpoint policy does not "
        "admit (it admits the project's data bucket and AWS's read-only buckets): inside the VPC the copy "
        "would be refused.",
    )
