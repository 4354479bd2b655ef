"""Use of the project key on one state machine's execution data, for a role that starts or reads it."""

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

# Step Functions' encryption context for a state machine's data ("Data at rest encryption", Step
# Functions Developer Guide); CDK conditions the execution role's own key use on it the same way.
EXECUTION_CONTEXT = "kms:EncryptionContext:aws:states:stateMachineArn"
# DescribeExecution's callers need kms:Decrypt (botocore's Step Functions model, `includedData`). The
# model does not say whether StartExecution's callers need a data key: roles that start get one, so a
# start never fails on the key.
STARTS = ("kms:GenerateDataKey",)
READS = ("kms:Decrypt",)


def grant_execution_data(
    grantee: iam.IGrantable, key: kms.IKey, state_machine_arn: str, actions: Sequence[str]
) -> None:
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=list(actions),
            resources=[key.key_arn],
            conditions={"StringEquals": {EXECUTION_CONTEXT: state_machine_arn}},
        )
    )
