"""The training image: an ECR repository and a cloud-side build of `training_image/` on every deploy.

No Docker is needed on the deploying machine: the source goes up as an S3 asset, CodeBuild builds and
pushes it, and a custom resource holds the deploy until the build has finished. The tag is the asset's
content hash, so an unchanged source means an unchanged resource and no build.
"""

from pathlib import Path

from aws_cdk import Aws, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from cdk_nag import NagSuppressions

from constructs import Construct
from constructs import llmft_compliance as compliance
from constructs.llmft_logs import encrypted_log_group
from constructs.llmft_nag import ANY_PARTITION
from project_config.training import TrainingConfig

ROOT = Path(__file__).resolve().parent.parent
HANDLER_DIR = ROOT / "image_build"
# Left out of the uploaded build context: tests and local caches never go into the image.
SOURCE_EXCLUDES = [
    "tests",
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "*.egg-info",
    ".venv*",
]
# The AWS PyTorch training deep learning container is the image's base (training_image/Dockerfile).
DLC_BASE_REPOSITORY = "pytorch-training"
# CloudFormation waits for a custom resource at most one hour (its ServiceTimeout maximum), and so
# does the provider framework (its total_timeout maximum).
MAX_DEPLOY_WAIT = Duration.hours(1)

BUILD_SPEC = {
    "version": "0.2",
    "env": {"shell": "bash"},
    "phases": {
        "pre_build": {
            "commands": [
                "LOGIN='docker login --username AWS --password-stdin'",
                'aws ecr get-login-password | $LOGIN "$DLC_REGISTRY"',
                'aws ecr get-login-password | $LOGIN "${REPOSITORY_URI%%/*}"',
            ]
        },
        "build": {
            "commands": [
                # The Dockerfile's base: pytorch-training from the DLC registry of this region, its
                # host in the partition's domain (amazonaws.com, amazonaws.com.cn, ...).
                'docker build --build-arg BASE_REGISTRY="$DLC_REGISTRY" --tag "$REPOSITORY_URI:$IMAGE_TAG" .',
                # Pushed in the build phase: post_build would also run after a failed build.
                'docker push "$REPOSITORY_URI:$IMAGE_TAG"',
            ]
        },
    },
}


class TrainingImageBuild(Construct):
    """ECR repository + CodeBuild project + a custom resource that builds `<repo>:<source hash>`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TrainingConfig,
        key: kms.IKey,
        source_dir: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"keep the newest {config.image_keep_count} images",
                    max_image_count=config.image_keep_count,
                )
            ],
        )
        source = s3_assets.Asset(self, "Source", path=str(source_dir), exclude=SOURCE_EXCLUDES)
        self.image_tag = source.asset_hash
        tagged_uri = self.repository.repository_uri_for_tag(self.image_tag)

        dlc_registry = f"{config.dlc_registry_account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}"
        self.build_logs = encrypted_log_group(
            self, "BuildLogs", key=key, retention_days=config.log_retention_days
        )
        # Outside the VPC on purpose: the build installs Python packages from PyPI and pulls the base
        # image, and the VPC may have no NAT (isolated); it touches nothing private, only S3 and ECR.
        self.project = codebuild.Project(
            self,
            "Build",
            description="Builds the LLaMA-Factory training image and pushes it to ECR",
            source=codebuild.Source.s3(bucket=source.bucket, path=source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(BUILD_SPEC),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                # The GPU base image is large: the large type has the disk and memory to build it.
                compute_type=codebuild.ComputeType.LARGE,
                # docker build needs it; the project runs only our buildspec on our own source asset.
                privileged=True,
                environment_variables={
                    "REPOSITORY_URI": codebuild.BuildEnvironmentVariable(
                        value=self.repository.repository_uri
                    ),
                    "DLC_REGISTRY": codebuild.BuildEnvironmentVariable(value=dlc_registry),
                    "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=self.image_tag),
                },
            ),
            encryption_key=key,
            timeout=Duration.minutes(config.build_timeout_minutes),
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.build_logs)
            ),
        )
        self.repository.grant_pull_push(self.project)
        self.project.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[
                    stack.format_arn(
                        service="ecr",
                        account=config.dlc_registry_account,
                        resource="repository",
                        resource_name=DLC_BASE_REPOSITORY,
                    )
                ],
            )
        )
        NagSuppressions.add_resource_suppressions(
            self.project.role.node.find_child("DefaultPolicy"),
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "aws-cdk-lib's Project grants: GetObject* on the one source zip and "
                    "GetBucket*/List* on the asset bucket; the project key's encrypt and decrypt set "
                    "(GenerateDataKey*, ReEncrypt*); CodeBuild's default /aws/codebuild/<project> log group "
                    "and <project>-* report groups, unused here (logs go to BuildLogs, no reports); and "
                    "ecr:GetAuthorizationToken, which takes no resource",
                    "appliesTo": [
                        "Action::s3:GetBucket*",
                        "Action::s3:GetObject*",
                        "Action::s3:List*",
                        "Action::kms:GenerateDataKey*",
                        "Action::kms:ReEncrypt*",
                        "Resource::*",
                        {"regex": f"/^Resource::arn:{ANY_PARTITION}:codebuild:.*:report-group/.*-\\*$/"},
                        {"regex": f"/^Resource::arn:{ANY_PARTITION}:logs:.*:log-group:/aws/codebuild/.*$/"},
                    ],
                }
            ],
        )

        self.build = self._build_resource(config=config, key=key, tagged_uri=tagged_uri)
        # `<repo uri>:<tag>`, read from the build resource: it exists only once the image is pushed, and
        # other stacks get one plain string rather than pieces of the repository ARN.
        self.image_uri = self.build.get_att_string("ImageUri")

    def _build_resource(self, *, config: TrainingConfig, key: kms.IKey, tagged_uri: str) -> CustomResource:
        code = lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["**/__pycache__"])
        start = self._handler("StartBuild", "handler.on_event", code, key, config)
        check = self._handler("CheckBuild", "handler.is_complete", code, key, config)
        start.add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:StartBuild"], resources=[self.project.project_arn])
        )
        start.add_to_role_policy(
            iam.PolicyStatement(actions=["ecr:DescribeImages"], resources=[self.repository.repository_arn])
        )
        check.add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:BatchGetBuilds"], resources=[self.project.project_arn])
        )
        # The framework's own functions log here; their roles get write access to it and nothing managed.
        framework_logs = encrypted_log_group(
            self, "ProviderLogs", key=key, retention_days=config.log_retention_days
        )
        on_event_role = _lambda_role(self, "ProviderOnEventRole", framework_logs)
        waiter_role = _lambda_role(self, "ProviderWaiterRole", framework_logs)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=start,
            is_complete_handler=check,
            query_interval=Duration.minutes(1),
            total_timeout=MAX_DEPLOY_WAIT,
            log_group=framework_logs,
            framework_on_event_role=on_event_role,
            framework_complete_and_timeout_role=waiter_role,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=encrypted_log_group(
                    self, "WaiterLogs", key=key, retention_days=config.log_retention_days
                ),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
        )
        _trace_waiter(provider)
        self._suppress_provider_findings(provider, [on_event_role, waiter_role])
        self._suppress_compliance_findings(
            provider, start=start, check=check, framework_roles=[on_event_role, waiter_role]
        )
        return CustomResource(
            self,
            "Image",
            service_token=provider.service_token,
            resource_type="Custom::TrainingImageBuild",
            service_timeout=MAX_DEPLOY_WAIT,
            properties={
                "ProjectName": self.project.project_name,
                "RepositoryName": self.repository.repository_name,
                "ImageTag": self.image_tag,
                "ImageUri": tagged_uri,
            },
        )

    def _suppress_compliance_findings(
        self,
        provider: cr.Provider,
        *,
        start: lambda_.Function,
        check: lambda_.Function,
        framework_roles: list[iam.Role],
    ) -> None:
        """HIPAA, NIST 800-53 and PCI DSS rules that do not fit the image build, with reasons."""
        compliance.suppress_in_packs(
            self.project,
            "CodeBuildProjectSourceRepoUrl",
            "The build's source is the image's build context, staged by CDK as a zip in the bootstrap asset "
            "bucket (source type S3). The rule asks GitHub and Bitbucket sources to use OAuth; there is no "
            "repository connection here to authenticate.",
        )
        compliance.inline_policy(
            self.project.role.node.find_child("DefaultPolicy"),
            "The image build's role: read its source zip, pull the DLC base image, push to the repository",
        )
        deploy_only = (
            "Runs only while CloudFormation deploys this stack (one image build per deploy), so deploys "
            "bound its concurrency; a reservation would take capacity from every other function in the "
            "account."
        )
        outside_vpc = (
            "Calls only the CodeBuild and ECR APIs about this stack's own project and repository, with no "
            "project data; the build itself runs outside the VPC too, as the VPC may have no NAT."
        )
        for function, role_does, does, invoked in (
            (
                start,
                "The build starter's role: start this project's build, look up the image tag in ECR",
                "The build starter starts the image build unless the tag is in ECR already",
                "Invoked synchronously by the provider framework's onEvent function; a failure fails the "
                "deploy with its message. A dead-letter queue only receives asynchronous invocations.",
            ),
            (
                check,
                "The build checker's role: read this project's build status",
                "The build checker reports whether the image build has finished",
                "Invoked synchronously by the provider framework's isComplete function once a minute; a "
                "failure fails the deploy with its message. A dead-letter queue only receives asynchronous "
                "invocations.",
            ),
        ):
            compliance.inline_policy(function.role.node.find_child("DefaultPolicy"), role_does)
            compliance.lambda_rules(
                function, does=does, invoked=invoked, concurrency=deploy_only, network=outside_vpc
            )
        framework = (
            (
                "framework-onEvent",
                "aws-cdk-lib's provider framework onEvent function hands the build resource's events to "
                "the build starter",
                "Invoked by CloudFormation for the resource's create, update and delete; CloudFormation "
                "waits for its answer and fails the deploy without one, which is where an operator looks. "
                "A dead-letter queue would hold an event nothing replays.",
            ),
            (
                "framework-isComplete",
                "aws-cdk-lib's provider framework isComplete function asks the build checker whether the "
                "build is done",
                "Invoked synchronously by the framework's waiter state machine, whose own retries and logs "
                "cover a failure. A dead-letter queue only receives asynchronous invocations.",
            ),
            (
                "framework-onTimeout",
                "aws-cdk-lib's provider framework onTimeout function ends a build wait that ran too long",
                "Invoked synchronously by the waiter state machine; it reports the failure to "
                "CloudFormation. A dead-letter queue only receives asynchronous invocations.",
            ),
        )
        for name, does, invoked in framework:
            compliance.lambda_rules(
                provider.node.find_child(name),
                does=does,
                invoked=invoked,
                concurrency=deploy_only,
                network="It calls Lambda, Step Functions (onEvent only) and CloudFormation's response URL "
                "about this stack's build only, with no project data.",
            )
        on_event_role, waiter_role = framework_roles
        waiter_machine_role = provider.node.find_child("waiter-state-machine").node.find_child("Role")
        for role, does in (
            (
                on_event_role,
                "The provider framework onEvent function's role: invoke the build handlers, start the "
                "waiter state machine, log",
            ),
            (
                waiter_role,
                "The provider framework's isComplete and onTimeout functions' role: invoke the build "
                "handlers, log",
            ),
            (
                waiter_machine_role,
                "The provider framework's waiter state machine's role: invoke isComplete "
                "and onTimeout, log, trace",
            ),
        ):
            compliance.inline_policy(role.node.find_child("DefaultPolicy"), does)

    def _handler(
        self, construct_id: str, handler: str, code: lambda_.Code, key: kms.IKey, config: TrainingConfig
    ) -> lambda_.Function:
        log_group = encrypted_log_group(
            self, f"{construct_id}Logs", key=key, retention_days=config.log_retention_days
        )
        return lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler=handler,
            code=code,
            timeout=Duration.minutes(1),
            log_group=log_group,
            role=_lambda_role(self, f"{construct_id}Role", log_group),
        )

    def _suppress_provider_findings(self, provider: cr.Provider, roles: list[iam.Role]) -> None:
        """Findings on what aws-cdk-lib's provider framework generates, each with why it is right here."""
        # The framework may invoke any version of the handler functions it was given: `<fn arn>:*`.
        function_versions = {"regex": "/^Resource::<[A-Za-z0-9]+\\.Arn>:\\*$/"}
        waiter = provider.node.find_child("waiter-state-machine")
        for role, uses in zip(
            roles, ("onEvent calls the starter", "isComplete calls the checker"), strict=True
        ):
            NagSuppressions.add_resource_suppressions(
                role.node.find_child("DefaultPolicy"),
                [
                    {
                        "id": "AwsSolutions-IAM5",
                        "reason": "aws-cdk-lib's Provider grants each framework function invoke on both "
                        "handlers, the build starter and checker, under any version (<function arn>:*); of "
                        f"the functions with this role, {uses}",
                        "appliesTo": [function_versions],
                    }
                ],
            )
        NagSuppressions.add_resource_suppressions(
            waiter.node.find_child("Role").node.find_child("DefaultPolicy"),
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "the waiter invokes versions of the framework's own functions (<arn>:*); on "
                    "*, aws-cdk-lib's statement grants the log-delivery actions for its ALL-level log and "
                    "X-Ray's trace actions, which take no resource, and logs:CreateLogStream/PutLogEvents, "
                    "which could be held to its log group but are fixed in aws-cdk-lib's statement",
                    "appliesTo": [function_versions, "Resource::*"],
                }
            ],
        )


def _trace_waiter(provider: cr.Provider) -> None:
    """X-Ray tracing on the provider framework's waiter state machine, which aws-cdk-lib leaves off."""
    waiter = provider.node.find_child("waiter-state-machine")
    waiter.node.default_child.tracing_configuration = sfn.CfnStateMachine.TracingConfigurationProperty(
        enabled=True
    )
    # What a traced state machine's role needs (the actions CDK grants for `tracing_enabled`).
    waiter.node.find_child("Role").add_to_principal_policy(
        iam.PolicyStatement(
            actions=[
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ],
            resources=["*"],
        )
    )


def _lambda_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup) -> iam.Role:
    """A Lambda role that may write only to its own log group (no AWS managed policy)."""
    role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    log_group.grant_write(role)
    return role
