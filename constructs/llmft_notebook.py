"""A SageMaker notebook instance with a ready LLaMA-Factory environment, example notebooks and idle auto-stop.

The lifecycle scripts are real files in `notebook/lifecycle/`; `lifecycle_scripts` renders them (pure, no
CDK), and the construct puts the result into the lifecycle configuration.
"""

import base64
import re
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import ArnFormat, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from constructs import Construct
from constructs import llmft_compliance as compliance
from constructs.llmft_deployment import fenced_deployment
from constructs.llmft_execution_data import READS, STARTS, grant_execution_data
from constructs.llmft_nag import (
    ANY_PARTITION,
    arn_in_this_account,
    arn_of_other_stack,
    suppress_bucket_deployment,
)
from project_config.notebook import NotebookConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE_DIR = REPO_ROOT / "notebook" / "lifecycle"
EXAMPLES_DIR = REPO_ROOT / "notebook" / "examples"
# Where the stack deploys the examples in the data bucket; on-start copies them from there.
EXAMPLES_PREFIX = "notebooks/examples/"

# What the notebook's role may read, and what it may write: prepared data and the model.tar.gz of an
# adapter trained in the notebook (never a training job's output); under adapters/ only new objects, so
# it publishes an adapter and its manifest but never replaces one, nor an archive the endpoint serves.
READ_PREFIXES = ("datasets/", "models/", "adapters/", "training/", EXAMPLES_PREFIX)
WRITE_PREFIXES = ("datasets/", "training/notebook-")
CREATE_ONLY_PREFIXES = ("adapters/",)

# Amazon Linux 2023, JupyterLab 4: the newest platform CloudFormation accepts.
PLATFORM_IDENTIFIER = "notebook-al2023-v1"
# SageMaker's limit for each lifecycle script, counted on its base64 form.
MAX_SCRIPT_CHARS = 16384
# Deploy-time values are sized at their longest when the script size is checked.
SIZE_CHECK_STAND_INS = {"data_bucket": "b" * 63, "state_machine_arn": "a" * 256}
PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
# SageMaker writes lifecycle script output here with the notebook's role.
LIFECYCLE_LOG_GROUP = "/aws/sagemaker/NotebookInstances"


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with every @@NAME@@ replaced; a missing or unused value is an error."""
    names = set(PLACEHOLDER.findall(template))
    if names != set(values):
        raise ValueError(f"placeholders {sorted(names)} do not match the values {sorted(values)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _embeddable(text: str, delimiter: str) -> str:
    """Text to put inside a quoted here-document; it must not contain the closing delimiter."""
    if delimiter in text.splitlines():
        raise ValueError(f"the embedded file contains its here-document delimiter {delimiter}")
    return text.rstrip("\n")


def lifecycle_scripts(*, config: NotebookConfig, data_bucket: str, state_machine_arn: str) -> dict[str, str]:
    """The on-create and on-start scripts with the configuration substituted."""

    def read(name: str) -> str:
        return (LIFECYCLE_DIR / name).read_text()

    install_env = render(read("install-env.sh"), {"LLAMAFACTORY_VERSION": config.llamafactory_version})
    on_create = render(read("on-create.sh"), {"INSTALL_ENV_SH": _embeddable(install_env, "INSTALL_ENV_SH")})
    on_start = render(
        read("on-start.sh"),
        {
            "DATA_BUCKET": data_bucket,
            "EXAMPLES_PREFIX": EXAMPLES_PREFIX,
            "TRAINING_STATE_MACHINE_ARN": state_machine_arn,
            "IDLE_TIMEOUT_MINUTES": str(config.idle_timeout_minutes),
            "IDLE_CHECK_PY": _embeddable(read("idle_check.py"), "IDLE_CHECK_PY"),
        },
    )
    return {"on-create": on_create, "on-start": on_start}


def encoded_size(script: str) -> int:
    return len(base64.b64encode(script.encode()))


def check_script_sizes(scripts: Mapping[str, str]) -> None:
    for name, script in scripts.items():
        size = encoded_size(script)
        if size > MAX_SCRIPT_CHARS:
            raise ValueError(
                f"lifecycle script {name} is {size} characters in base64; SageMaker allows {MAX_SCRIPT_CHARS}"
            )


class LlamaFactoryNotebook(Construct):
    """Notebook instance in a private subnet, its role, lifecycle configuration and example notebooks."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NotebookConfig,
        subnet: ec2.ISubnet,
        security_group: ec2.ISecurityGroup,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        training_state_machine: sfn.StateMachine | None = None,
        inference_endpoint_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        # Prune deletes examples no longer shipped; the handler can change nothing outside the prefix.
        self.examples = fenced_deployment(
            self,
            "Examples",
            sources=[s3deploy.Source.asset(str(EXAMPLES_DIR))],
            data_bucket=data_bucket,
            prefix=EXAMPLES_PREFIX,
            key=key,
        )

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="LLaMA-Factory notebook instance: project data prefixes and the training pipeline",
        )
        # A separate policy the instance waits for: on-start already reads S3 and writes its logs.
        self.access_policy = iam.Policy(
            self,
            "AccessPolicy",
            roles=[self.role],
            statements=_data_access_statements(stack, data_bucket, key),
        )
        if training_state_machine is not None:
            training_state_machine.grant_start_execution(self.role)
            # Built from the machine's name: grant_execution splits the ARN, which cfn-lint cannot
            # check once the ARN arrives from another stack as Fn::GetStackOutput.
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["states:DescribeExecution"],
                    resources=[
                        stack.format_arn(
                            service="states",
                            resource="execution",
                            resource_name=f"{training_state_machine.state_machine_name}:*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    ],
                )
            )
            # The machine's execution data is under the project key: start and read it, for that machine only.
            grant_execution_data(self.role, key, training_state_machine.state_machine_arn, STARTS + READS)
        if inference_endpoint_arn is not None:
            # Example 04 calls the adapters served by the project's endpoint, and no other endpoint.
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[inference_endpoint_arn])
            )

        scripts = lifecycle_scripts(
            config=config,
            data_bucket=data_bucket.bucket_name,
            state_machine_arn=training_state_machine.state_machine_arn if training_state_machine else "",
        )
        check_script_sizes(
            lifecycle_scripts(
                config=config,
                data_bucket=SIZE_CHECK_STAND_INS["data_bucket"],
                state_machine_arn=SIZE_CHECK_STAND_INS["state_machine_arn"],
            )
        )
        self.lifecycle = sagemaker.CfnNotebookInstanceLifecycleConfig(
            self,
            "Lifecycle",
            on_create=[{"content": Fn.base64(scripts["on-create"])}],
            on_start=[{"content": Fn.base64(scripts["on-start"])}],
        )

        imds_v2_only = sagemaker.CfnNotebookInstance.InstanceMetadataServiceConfigurationProperty(
            minimum_instance_metadata_service_version="2"
        )
        self.instance = sagemaker.CfnNotebookInstance(
            self,
            "Instance",
            instance_type=config.instance_type,
            volume_size_in_gb=config.volume_size_gb,
            role_arn=self.role.role_arn,
            subnet_id=subnet.subnet_id,
            security_group_ids=[security_group.security_group_id],
            direct_internet_access="Disabled",
            root_access="Enabled" if config.root_access else "Disabled",
            kms_key_id=key.key_arn,
            platform_identifier=PLATFORM_IDENTIFIER,
            instance_metadata_service_configuration=imds_v2_only,
            lifecycle_config_name=self.lifecycle.attr_notebook_instance_lifecycle_config_name,
        )
        # On its first start the instance copies the examples and writes its logs: both must exist.
        self.instance.node.add_dependency(self.access_policy, self.examples)

        # Only this instance, and only to stop it: the idle check's one SageMaker call.
        self.self_stop_policy = iam.Policy(
            self,
            "SelfStopPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    actions=["sagemaker:StopNotebookInstance"],
                    resources=[self.instance.attr_notebook_instance_arn],
                )
            ],
        )
        self._suppress_findings(data_bucket)

    def _suppress_findings(self, data_bucket: s3.IBucket) -> None:
        """cdk-nag findings this construct accepts, each on one resource, naming the exact wildcards."""
        NagSuppressions.add_resource_suppressions(
            self.access_policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Object access is limited to the named data prefixes (read datasets/, models/, "
                    "adapters/, training/, notebooks/examples/; write datasets/, training/notebook-; create "
                    "only, never replace, under adapters/); object keys under a prefix are chosen by users, "
                    "so only the key part is a wildcard.",
                    applies_to=[
                        arn_of_other_stack(data_bucket, f"/{prefix}*")
                        for prefix in sorted({*READ_PREFIXES, *WRITE_PREFIXES, *CREATE_ONLY_PREFIXES})
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="SageMaker writes every notebook instance's lifecycle logs to the account-wide "
                    "/aws/sagemaker/NotebookInstances group, in streams named after the instance, whose "
                    "name CloudFormation generates: the statement covers every stream of that group.",
                    applies_to=[arn_in_this_account("logs", f"log-group:{LIFECYCLE_LOG_GROUP}:*")],
                ),
            ],
        )
        grants = self.role.node.try_find_child("DefaultPolicy")
        if grants is not None:
            NagSuppressions.add_resource_suppressions(
                grants,
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM5",
                        reason="DescribeExecution is granted on the executions of the one training state "
                        "machine (execution:<its name>:*); execution names are generated per run.",
                        applies_to=[
                            RegexAppliesTo(
                                regex=f"/^Resource::arn:{ANY_PARTITION}:states:.*:execution:.*:\\*$/"
                            )
                        ],
                    )
                ],
            )
        # The examples upload runs in aws-cdk-lib's own BucketDeployment handler; its shape is CDK's.
        suppress_bucket_deployment(
            Stack.of(self),
            data_bucket,
            copies="copies the example notebooks to notebooks/examples/",
        )
        compliance.inline_policy(
            self.access_policy,
            "The notebook role's data access: read the project's data prefixes, write datasets/ and its own "
            "archives, create under adapters/, write its lifecycle logs",
        )
        compliance.inline_policy(
            self.self_stop_policy, "The notebook role's idle stop: stop this one notebook instance"
        )
        if grants is not None:
            compliance.inline_policy(
                grants,
                "The notebook role's other grants: start and read the training state machine's executions, "
                "call the project's endpoint",
            )


def _data_access_statements(stack: Stack, bucket: s3.IBucket, key: kms.IKey) -> list[iam.PolicyStatement]:
    log_group_arn = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name=f"{LIFECYCLE_LOG_GROUP}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    return [
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in READ_PREFIXES]}},
        ),
        iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in READ_PREFIXES],
        ),
        iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in WRITE_PREFIXES],
        ),
        # Only requests that carry If-None-Match, which S3 refuses when the key exists (S3 User Guide,
        # "Enforce conditional writes"); single PUTs, as multipart parts cannot carry the header.
        iam.PolicyStatement(
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in CREATE_ONLY_PREFIXES],
            conditions={"Null": {"s3:if-none-match": "false"}},
        ),
        # The project key only through S3: objects are encrypted with it (bucket key on).
        iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
        ),
        iam.PolicyStatement(
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[log_group_arn],
        ),
    ]
