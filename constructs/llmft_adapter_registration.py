"""Registers each trained adapter on the endpoint: manifest event -> state machine -> adapter component."""

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions

from constructs import Construct
from constructs.llmft_logs import encrypted_log_group
from constructs.llmft_nag import arn_in_this_account, arn_of_other_stack, logical_id

PLANNER_SOURCE = Path(__file__).resolve().parent.parent / "inference"
MANIFEST_PATTERN = "adapters/*/manifest.json"
POLL_SECONDS = 30


class AdapterRegistration(Construct):
    """EventBridge rule on new manifests, and the state machine that makes the adapter callable."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data_bucket: s3.IBucket,
        key: kms.IKey,
        endpoint_name: str,
        base_component_name: str,
        served_model: str,
        component_prefix: str,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        planner_logs = encrypted_log_group(self, "PlannerLogs", key=key, retention_days=log_retention_days)
        planner_role = iam.Role(
            self,
            "PlannerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Adapter registration planner: writes its own logs, reads and calls nothing",
        )
        planner_role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{planner_logs.log_group_arn}:*"],
            )
        )
        # Pure planning (inference/registration.py + names.py): no AWS call, no network, no data access.
        self.planner = lambda_.Function(
            self,
            "Planner",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="registration.handler",
            code=lambda_.Code.from_asset(str(PLANNER_SOURCE), exclude=["*", "!registration.py", "!names.py"]),
            role=planner_role,
            log_group=planner_logs,
            timeout=Duration.seconds(10),
            memory_size=256,
            description="Checks an adapter manifest and plans its inference component",
        )

        component_arn = stack.format_arn(
            service="sagemaker", resource="inference-component", resource_name=f"{component_prefix.lower()}-*"
        )
        endpoint_arn = stack.format_arn(service="sagemaker", resource="endpoint", resource_name=endpoint_name)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(
                self._definition(
                    data_bucket=data_bucket,
                    key=key,
                    endpoint_name=endpoint_name,
                    base_component_name=base_component_name,
                    served_model=served_model,
                    component_prefix=component_prefix,
                    component_arn=component_arn,
                    endpoint_arn=endpoint_arn,
                )
            ),
            logs=sfn.LogOptions(
                destination=encrypted_log_group(
                    self, "StateMachineLogs", key=key, retention_days=log_retention_days
                ),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
            tracing_enabled=True,
            # Loading an adapter takes seconds to minutes; an hour means something is stuck.
            timeout=Duration.hours(1),
            comment="Registers a trained LoRA adapter on the LMI endpoint from its manifest",
        )

        self.rule = events.Rule(
            self,
            "ManifestCreated",
            description="A new adapter manifest in the data bucket starts its registration",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [data_bucket.bucket_name]},
                    "object": {"key": events.Match.wildcard(MANIFEST_PATTERN)},
                },
            ),
            targets=[targets.SfnStateMachine(self.state_machine)],
        )
        self._suppress(planner_role, planner_logs, data_bucket, component_prefix)

    def _definition(
        self,
        *,
        data_bucket: s3.IBucket,
        key: kms.IKey,
        endpoint_name: str,
        base_component_name: str,
        served_model: str,
        component_prefix: str,
        component_arn: str,
        endpoint_arn: str,
    ) -> sfn.IChainable:
        read_manifest = tasks.CallAwsService(
            self,
            "ReadManifest",
            service="s3",
            action="getObject",
            iam_action="s3:GetObject",
            iam_resources=[data_bucket.arn_for_objects(MANIFEST_PATTERN)],
            additional_iam_statements=[iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key.key_arn])],
            parameters={
                "Bucket.$": "$.detail.bucket.name",
                "Key.$": "$.detail.object.key",
            },
            result_selector={"manifest.$": "States.StringToJson($.Body)"},
            result_path="$.read",
        )
        plan = tasks.LambdaInvoke(
            self,
            "PlanRegistration",
            lambda_function=self.planner,
            payload=sfn.TaskInput.from_object(
                {
                    "manifest.$": "$.read.manifest",
                    "bucket.$": "$.detail.bucket.name",
                    "key.$": "$.detail.object.key",
                    "component_prefix": component_prefix,
                    "served_model": served_model,
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=True,
            result_path="$.plan",
        )
        release = tasks.CallAwsService(
            self,
            "ReleaseAdapter",
            comment="Copy the training output under adapters/, the only adapter prefix the endpoint reads",
            service="s3",
            action="copyObject",
            iam_action="s3:GetObject",
            iam_resources=[data_bucket.arn_for_objects("training/*")],
            additional_iam_statements=[
                iam.PolicyStatement(
                    actions=["s3:PutObject"], resources=[data_bucket.arn_for_objects("adapters/*")]
                ),
                iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]),
            ],
            parameters={
                "Bucket.$": "$.detail.bucket.name",
                "CopySource.$": "$.plan.copy_source",
                "Key.$": "$.plan.artifact_key",
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        find_existing = tasks.CallAwsService(
            self,
            "FindComponent",
            service="sagemaker",
            action="describeInferenceComponent",
            iam_resources=[component_arn],
            parameters={"InferenceComponentName.$": "$.plan.component_name"},
            result_selector={"status.$": "$.InferenceComponentStatus"},
            result_path="$.existing",
        )
        adapter_spec = {
            "BaseInferenceComponentName": base_component_name,
            "Container": {"ArtifactUrl.$": "$.plan.artifact_url"},
        }
        create = tasks.CallAwsService(
            self,
            "CreateAdapterComponent",
            service="sagemaker",
            action="createInferenceComponent",
            iam_resources=[component_arn, endpoint_arn],
            parameters={
                "InferenceComponentName.$": "$.plan.component_name",
                "EndpointName": endpoint_name,
                "Specification": adapter_spec,
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        update = tasks.CallAwsService(
            self,
            "UpdateAdapterComponent",
            comment="A new training run of a registered adapter: point its component at the new artifact",
            service="sagemaker",
            action="updateInferenceComponent",
            iam_resources=[component_arn],
            parameters={"InferenceComponentName.$": "$.plan.component_name", "Specification": adapter_spec},
            result_path=sfn.JsonPath.DISCARD,
        )
        wait = sfn.Wait(self, "WaitForComponent", time=sfn.WaitTime.duration(Duration.seconds(POLL_SECONDS)))
        check = tasks.CallAwsService(
            self,
            "CheckComponent",
            service="sagemaker",
            action="describeInferenceComponent",
            iam_resources=[component_arn],
            parameters={"InferenceComponentName.$": "$.plan.component_name"},
            result_selector={
                "status.$": "$.InferenceComponentStatus",
                "reason.$": "States.JsonToString($)",
            },
            result_path="$.component",
        )
        invalid = sfn.Fail(
            self,
            "InvalidManifest",
            error="InvalidManifest",
            cause_path="$.error.Cause",
        )
        failed = sfn.Fail(
            self,
            "RegistrationFailed",
            error="AdapterComponentFailed",
            cause_path="$.component.reason",
        )
        done = sfn.Succeed(self, "AdapterInService", comment="The adapter answers through its component")

        # The planner raises ManifestError with a message naming the field at fault.
        plan.add_catch(invalid, errors=["ManifestError"], result_path="$.error")
        find_existing.add_catch(create, errors=["States.TaskFailed"], result_path=sfn.JsonPath.DISCARD)
        poll = wait.next(check).next(
            sfn.Choice(self, "ComponentStatus")
            .when(sfn.Condition.string_equals("$.component.status", "InService"), done)
            .when(sfn.Condition.string_equals("$.component.status", "Failed"), failed)
            .otherwise(wait)
        )
        create.next(poll)
        update.next(poll)
        return read_manifest.next(plan).next(release).next(find_existing).next(update)

    def _suppress(
        self, planner_role: iam.Role, planner_logs: Construct, data_bucket: s3.IBucket, component_prefix: str
    ) -> None:
        NagSuppressions.add_resource_suppressions(
            planner_role.node.find_child("DefaultPolicy"),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Lambda names its log streams at run time; the policy is limited to the "
                    "planner's own log group.",
                    applies_to=[f"Resource::<{logical_id(planner_logs)}.Arn>:*"],
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.state_machine.role.node.find_child("DefaultPolicy"),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The workflow reads manifests of any adapter, copies any job's output from "
                    "training/ and releases it under adapters/: adapter and job names are only known when "
                    "a training run ends.",
                    applies_to=[
                        arn_of_other_stack(data_bucket, f"/{MANIFEST_PATTERN}"),
                        arn_of_other_stack(data_bucket, "/training/*"),
                        arn_of_other_stack(data_bucket, "/adapters/*"),
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Adapter inference components are created per trained adapter; the role "
                    "may manage only components named with this deployment's prefix "
                    f"({component_prefix.lower()}-).",
                    applies_to=[
                        arn_in_this_account("sagemaker", f"inference-component/{component_prefix.lower()}-*")
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="CDK grants invoke on the planner's versions and aliases (ARN:*) so that "
                    "a qualified invocation works; it is still this one function.",
                    applies_to=[f"Resource::<{logical_id(self.planner)}.Arn>:*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="X-Ray trace segments and the CloudWatch Logs delivery APIs the state machine "
                    "logs through support no resource-level permissions.",
                    applies_to=["Resource::*"],
                ),
            ],
        )
