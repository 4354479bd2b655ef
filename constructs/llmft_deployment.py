"""Files deployed into the data bucket at `cdk deploy` (notebook examples, HyperPod lifecycle scripts)."""

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy

from constructs import Construct
from constructs.llmft_logs import encrypted_log_group

# The upload's own logs matter only around a deploy.
LOG_RETENTION_DAYS = 90


def fenced_deployment(
    scope: Construct,
    construct_id: str,
    *,
    sources: Sequence[s3deploy.ISource],
    data_bucket: s3.IBucket,
    prefix: str,
    key: kms.IKey,
    prune: bool = True,
) -> s3deploy.BucketDeployment:
    """A BucketDeployment into `prefix` of the data bucket that can change nothing outside it.

    aws-cdk-lib grants its handler read-write on the whole destination bucket; a Deny statement beside
    those grants limits every write and delete to the prefix, so datasets, models and adapters are safe.
    """
    deployment = s3deploy.BucketDeployment(
        scope,
        construct_id,
        sources=list(sources),
        destination_bucket=data_bucket,
        destination_key_prefix=prefix,
        prune=prune,
        log_group=encrypted_log_group(
            scope, f"{construct_id}Logs", key=key, retention_days=LOG_RETENTION_DAYS
        ),
    )
    deployment.handler_role.add_to_principal_policy(
        iam.PolicyStatement(
            effect=iam.Effect.DENY,
            actions=["s3:PutObject*", "s3:DeleteObject*", "s3:Abort*"],
            not_resources=[data_bucket.arn_for_objects(f"{prefix}*")],
        )
    )
    return deployment
