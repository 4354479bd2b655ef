"""The stateful store: the project key, the data bucket and its access-log bucket."""

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from constructs import Construct
from constructs import llmft_compliance as compliance
from project_config.data import DataConfig

# The data bucket's layout; training, serving and HyperPod all rely on these prefixes.
DATA_PREFIXES = {
    "datasets/": "training and validation datasets (alpaca or sharegpt, JSON or JSON Lines)",
    "models/": "base model files (Hugging Face layout), one folder per model",
    "training/": "training job outputs (model.tar.gz, metrics) written by SageMaker",
    "checkpoints/": "training checkpoints synced by SageMaker, for resume",
    "adapters/": "released LoRA adapters, one folder per adapter name, read by inference",
}


class DataStore(Construct):
    """Key and buckets, all retained when the stack is deleted."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DataConfig) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "ProjectKey",
            description="Encrypts the LLM fine-tuning project's data, volumes and logs",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Log groups of every stack (flow logs, state machine, builds) are encrypted with this key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            # S3 server access logging can only deliver to SSE-S3 buckets, not SSE-KMS.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.access_log_expiration_days),
                    noncurrent_version_expiration=Duration.days(config.noncurrent_version_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(
                        config.abort_incomplete_upload_days
                    ),
                )
            ],
        )
        self.data_bucket = s3.Bucket(
            self,
            "DataBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="data-bucket/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-uploads-and-expire-old-versions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_version_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(
                        config.abort_incomplete_upload_days
                    ),
                )
            ],
        )
        # Object events (e.g. a new adapter manifest) drive workflows through EventBridge; set on the
        # resource itself because `event_bridge_enabled` deploys a notification-handler Lambda.
        cfn_data_bucket: s3.CfnBucket = self.data_bucket.node.default_child
        cfn_data_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )
        self._suppress_compliance_findings()

    def _suppress_compliance_findings(self) -> None:
        """HIPAA, NIST 800-53 and PCI DSS rules that do not fit the store, with reasons."""
        compliance.suppress_in_packs(
            self.access_log_bucket,
            "S3DefaultEncryptionKMS",
            "S3 server access logging delivers only to a bucket encrypted with SSE-S3 (S3 User Guide, "
            "'Enabling Amazon S3 server access logging'); the logs hold request metadata, no object data.",
        )
        compliance.suppress_in_packs(
            self.data_bucket,
            "S3BucketReplicationEnabled",
            "Replication needs a second bucket and key in another Region, which decides where training data "
            "and adapters may live (data residency): the operator's choice, not a default. The bucket is "
            "versioned and retained, so no object is lost by an overwrite or a stack deletion.",
        )
        compliance.suppress_in_packs(
            self.access_log_bucket,
            "S3BucketReplicationEnabled",
            "Holds the data bucket's access logs for the configured days and is retained with the stack; "
            "whether they also live in a second Region follows the operator's choice for the data bucket.",
        )
