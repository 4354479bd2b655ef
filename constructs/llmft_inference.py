"""The LMI endpoint: a base-model inference component that LoRA adapter components attach to."""

from aws_cdk import Aws, CfnMapping, Duration, Fn, Stack, Token
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagPackSuppression, NagSuppressions

from constructs import Construct
from constructs import llmft_compliance as compliance
from constructs.llmft_logs import encrypted_log_group
from constructs.llmft_nag import arn_of_other_stack
from inference.lmi import lmi_environment, lmi_images, model_source
from inference.names import base_component_name
from project_config.inference import InferenceConfig
from project_config.instance_types import has_instance_storage

VARIANT_NAME = "AllTraffic"
# Where SageMaker writes an endpoint's container logs (SageMaker Developer Guide, "Log Amazon SageMaker
# AI events with Amazon CloudWatch").
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
# Prefixes of the data bucket the endpoint reads: base models and released adapters, nothing else.
# Released adapters, read by every endpoint; the base model's own folder is added when it is in the bucket.
ADAPTERS_PREFIX = "adapters/"


class LmiImageUri:
    """The pinned LMI image for the stack's region: a literal for a fixed region, else a region mapping."""

    def __init__(self, scope: Construct, version: str) -> None:
        stack = Stack.of(scope)
        images = lmi_images(version)
        if not Token.is_unresolved(stack.region):
            if stack.region not in images:
                raise ValueError(
                    f"LMI {version} has no image in {stack.region}; regions: {', '.join(images)}"
                )
            image = images[stack.region]
            self.uri, registry, repository = image.uri, image.registry, image.repository
        else:
            # Env-agnostic: the region is only known at deploy time, so every region's image is in the
            # template, taken from the SDK's registry at synth time.
            mapping = CfnMapping(
                stack,
                "LmiImages",
                mapping={
                    region: {"Uri": image.uri, "Registry": image.registry} for region, image in images.items()
                },
            )
            self.uri = mapping.find_in_map(Aws.REGION, "Uri")
            registry = mapping.find_in_map(Aws.REGION, "Registry")
            repository = next(iter(images.values())).repository
        self.repository_arn = stack.format_arn(
            service="ecr", account=registry, resource="repository", resource_name=repository
        )


class LmiEndpoint(Construct):
    """SageMaker endpoint running LMI (DJL Serving + vLLM) with LoRA enabled, in the private subnets."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InferenceConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        component_prefix: str,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        image = LmiImageUri(self, config.lmi_version)
        self.served_model = model_source(config.base_model, data_bucket.bucket_name)
        # Named so the stack can own SageMaker's log group for it (/aws/sagemaker/Endpoints/<name>); the
        # head of the stack's UUID makes the name new for each stack instance, so a redeploy after a
        # deletion does not collide with the retained log group.
        stack_instance = Fn.select(0, Fn.split("-", Fn.select(2, Fn.split("/", Aws.STACK_ID))))
        self.endpoint_name = f"{component_prefix.lower()}-lmi-{stack_instance}"
        self.log_group = encrypted_log_group(
            self,
            "EndpointLogs",
            key=key,
            retention_days=log_retention_days,
            name=f"{ENDPOINT_LOG_GROUP_PREFIX}{self.endpoint_name}",
        )

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="LMI endpoint: reads base models and adapters, pulls the LMI image, runs in the VPC",
        )
        # The one base model it serves (a `models/...` folder) and the released adapters: nothing else.
        read_prefixes = ((config.base_model,) if config.base_model_in_bucket else ()) + (ADAPTERS_PREFIX,)
        policy = self._grant_execution(image, vpc, key, data_bucket, read_prefixes)

        subnet_ids = vpc.select_subnets(subnet_type=subnets.subnet_type).subnet_ids
        vpc_config = {"security_group_ids": [security_group.security_group_id], "subnets": subnet_ids}
        self.model = sagemaker.CfnModel(
            self,
            "BaseModel",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.uri,
                environment=lmi_environment(
                    model_id=self.served_model,
                    tensor_parallel_degree=config.tensor_parallel_degree,
                    max_model_len=config.max_model_len,
                    max_loras=config.max_loras,
                    max_cpu_loras=config.max_cpu_loras,
                    max_lora_rank=config.max_lora_rank,
                    model_loading_timeout=config.startup_health_check_timeout,
                ),
            ),
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(**vpc_config),
        )
        # SageMaker checks the role's permissions when it creates the model and the endpoint.
        self.model.node.add_dependency(policy)

        # SageMaker rejects a volume key for instances with NVMe instance storage (hardware-encrypted).
        volume_key = None if has_instance_storage(config.instance_type) else key.key_arn
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            execution_role_arn=self.role.role_arn,
            kms_key_id=volume_key,
            vpc_config=sagemaker.CfnEndpointConfig.VpcConfigProperty(**vpc_config),
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    instance_type=config.instance_type,
                    initial_instance_count=1,
                    # SageMaker adds and removes instances as inference component copies need them;
                    # a minimum of 0 lets an idle endpoint release its last instance.
                    managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                        status="ENABLED",
                        min_instance_count=0 if config.scales_to_zero else 1,
                        max_instance_count=config.max_instances,
                    ),
                    routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                        routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                    ),
                )
            ],
        )
        self.endpoint_config.node.add_dependency(policy)
        if volume_key is None:
            compliance.suppress_in_packs(
                self.endpoint_config,
                "SageMakerEndpointConfigurationKMSKeyConfigured",
                f"{config.instance_type} has NVMe instance storage, which SageMaker encrypts in hardware and "
                "for which CreateEndpointConfig rejects a KmsKeyId; the model and adapters it serves stay "
                "under the project key in S3.",
            )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        # The group exists, under the project key and with its retention, before SageMaker writes to it.
        self.endpoint.node.add_dependency(self.log_group)

        # The exact name (see base_component_name): scaling, metrics and adapter components refer to it.
        self.base_component_name = base_component_name(component_prefix)
        self.base_component = sagemaker.CfnInferenceComponent(
            self,
            "BaseComponent",
            inference_component_name=self.base_component_name,
            endpoint_name=self.endpoint.attr_endpoint_name,
            variant_name=VARIANT_NAME,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=self.model.attr_model_name,
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    container_startup_health_check_timeout_in_seconds=config.startup_health_check_timeout,
                    model_data_download_timeout_in_seconds=config.model_data_download_timeout,
                ),
                compute_resource_requirements=sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=config.tensor_parallel_degree,
                    min_memory_required_in_mb=config.min_memory_mb,
                ),
            ),
            # The stack waits for one loaded copy; autoscaling takes over from there (down to 0 if allowed).
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=max(config.min_copies, 1)
            ),
        )
        self._autoscale(config)

    def _grant_execution(
        self,
        image: LmiImageUri,
        vpc: ec2.IVpc,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        read_prefixes: tuple[str, ...],
    ) -> iam.Policy:
        objects = [data_bucket.arn_for_objects(f"{prefix}*") for prefix in read_prefixes]
        statements = [
            iam.PolicyStatement(sid="ReadModelsAndAdapters", actions=["s3:GetObject"], resources=objects),
            iam.PolicyStatement(
                sid="ListModelsAndAdapters",
                actions=["s3:ListBucket"],
                resources=[data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in read_prefixes]}},
            ),
            iam.PolicyStatement(sid="DecryptData", actions=["kms:Decrypt"], resources=[key.key_arn]),
            iam.PolicyStatement(
                sid="PullLmiImage",
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[image.repository_arn],
            ),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="EndpointLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            ),
            iam.PolicyStatement(
                sid="DescribeNetwork",
                actions=[
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeDhcpOptions",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="EndpointNetworkInterfaces",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=["*"],
                conditions={"ArnEquals": {"ec2:Vpc": vpc.vpc_arn}},
            ),
        ]
        policy = iam.Policy(self, "ExecutionPolicy", statements=statements, roles=[self.role])
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The endpoint reads the files of its one base model (its folder under models/, "
                    "when the model is in the bucket) and any released adapter under adapters/, whose names "
                    "are known only after deployment; no other prefix is readable.",
                    applies_to=[arn_of_other_stack(data_bucket, f"/{p}*") for p in read_prefixes],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="On *: ecr:GetAuthorizationToken and the EC2 Describe calls SageMaker makes to "
                    "attach the endpoint to the VPC, which take no resource, and the network interface "
                    "changes, whose interface IDs exist only once SageMaker creates them, held to this VPC "
                    "by ec2:Vpc (a condition key of every resource type those actions name).",
                    applies_to=["Resource::*"],
                ),
            ],
        )
        compliance.inline_policy(
            policy, "The LMI endpoint's role: read models and adapters, pull the LMI image, attach to the VPC"
        )
        return policy

    def _autoscale(self, config: InferenceConfig) -> None:
        stack = Stack.of(self)
        # Application Auto Scaling acts on SageMaker through this service-linked role; without it CDK
        # would create an unused role of its own.
        scaling_role = iam.Role.from_role_arn(
            self,
            "ScalingServiceRole",
            f"arn:{stack.partition}:iam::{stack.account}:role/aws-service-role/"
            "sagemaker.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        )
        target = appscaling.ScalableTarget(
            self,
            "CopyScaling",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"inference-component/{self.base_component_name}",
            scalable_dimension="sagemaker:inference-component:DesiredCopyCount",
            min_capacity=config.min_copies,
            max_capacity=config.max_copies,
            role=scaling_role,
        )
        target.scale_to_track_metric(
            "InvocationsPerCopy",
            target_value=config.target_invocations_per_copy,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_INVOCATIONS_PER_COPY,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(5),
        )
        if config.scales_to_zero:
            # Target tracking never scales out from 0 copies (there are no invocations per copy to
            # track); requests that find no capacity raise this metric, and one copy is added.
            target.scale_on_metric(
                "ScaleOutFromZero",
                metric=cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="NoCapacityInvocationFailures",
                    dimensions_map={"InferenceComponentName": self.base_component_name},
                    statistic="Maximum",
                    period=Duration.minutes(1),
                ),
                scaling_steps=[
                    appscaling.ScalingInterval(upper=0, change=0),
                    appscaling.ScalingInterval(lower=1, change=1),
                ],
                adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                evaluation_periods=1,
                cooldown=Duration.minutes(5),
            )
