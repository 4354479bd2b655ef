"""Registers each trained adapter on the endpoint: manifest event -> state machine -> adapter component."""

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions

from constructs import Construct
from constructs import llmft_compliance as compliance
from constructs.llmft_execution_data import STARTS, grant_execution_data
from constructs.llmft_logs import encrypted_log_group
from constructs.llmft_nag import arn_in_this_account, arn_of_other_stack, logical_id

PLANNER_SOURCE = Path(__file__).resolve().parent.parent / "inference"
MANIFEST_PATTERN = "adapters/*/manifest.json"
# What the release copies, as inference/registration.py plans it: a job's archive under training/, to
# adapters/<adapter>/<job>/model.tar.gz.
TRAINED_ARCHIVE_PATTERN = "training/*.tar.gz"
RELEASED_ARCHIVE_PATTERN = "adapters/*/model.tar.gz"
POLL_SECONDS = 30
# Retry names, each one an error its call raises. The aws-sdk integration names an error
# `<Service>.<Shape>Exception` when the service model lists it (botocore: CreateInferenceComponent's and
# UpdateInferenceComponent's ResourceLimitExceeded), and `<Service>.<Service>Exception` for the rest, such as
# throttling and S3's SlowDown (the naming Step Functions uses and LocalStack's and moto's interpreters
# reproduce: state_task_service_aws_sdk.py).
S3_ERRORS = ["S3.S3Exception"]
SAGEMAKER_ERRORS = ["SageMaker.SageMakerException"]
SAGEMAKER_QUOTA = ["SageMaker.ResourceLimitExceededException"]
# What DescribeInferenceComponent answers for a component that does not exist yet.
NOT_FOUND = "*Could not find*"
RERUN = "python -m inference.register <adapter_name>"


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
        endpoint_arn: str,
        base_component_name: str,
        served_model: str,
        component_prefix: str,
        notifications: sns.ITopic,
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
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # Named: the execution role's key grant is conditioned on the machine's ARN (CDK builds it from
            # the name), and a generated name is not known to the template.
            state_machine_name=f"{Stack.of(self).stack_name}-AdapterRegistration",
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
                    notifications=notifications,
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
            # Execution inputs, outputs and state data at rest under the project key, not AWS's.
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(key),
            # Loading an adapter takes seconds to minutes; an hour means something is stuck.
            timeout=Duration.hours(1),
            comment="Registers a trained LoRA adapter on the LMI endpoint from its manifest",
        )

        # The topic is encrypted with the project key: publishing needs its data-key actions too.
        notifications.grant_publish(self.state_machine)

        # The rule's own role: it starts this machine, whose execution data is under the project key.
        events_role = iam.Role(self, "EventsRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"))
        self.events_role = events_role
        grant_execution_data(events_role, key, self.state_machine.state_machine_arn, STARTS)
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
            targets=[targets.SfnStateMachine(self.state_machine, role=events_role)],
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
        notifications: sns.ITopic,
    ) -> sfn.IChainable:
        failed = sfn.Fail(
            self, "RegistrationFailed", error_path="$.failure.error", cause_path="$.failure.cause"
        )
        notify = tasks.SnsPublish(
            self,
            "NotifyFailure",
            topic=notifications,
            subject="LLM fine-tuning: adapter not registered",
            message=sfn.TaskInput.from_json_path_at("States.JsonToString($.failure)"),
            result_path=sfn.JsonPath.DISCARD,
        )
        # States.TaskFailed: any error of the publish; a notification is safe to send again.
        notify.add_retry(errors=["States.TaskFailed"], interval=Duration.seconds(10), max_attempts=3)
        notify.add_catch(failed, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        notify.next(failed)
        report = sfn.Pass(
            self,
            "FailureReport",
            comment="The adapter, what failed and why, and how to register it again",
            parameters={
                "manifest.$": "States.Format('s3://{}/{}', $.detail.bucket.name, $.detail.object.key)",
                "error.$": "$.error.Error",
                "cause.$": "$.error.Cause",
                "register_again": RERUN,
                "execution_arn.$": "$$.Execution.Id",
            },
            result_path="$.failure",
        ).next(notify)

        def guarded(task: sfn.TaskStateBase, errors: list[str]) -> sfn.TaskStateBase:
            task.add_retry(errors=errors, interval=Duration.seconds(5), max_attempts=4, backoff_rate=2.0)
            task.add_catch(report, errors=["States.ALL"], result_path="$.error")
            return task

        read_manifest = guarded(
            tasks.CallAwsService(
                self,
                "ReadManifest",
                service="s3",
                action="getObject",
                iam_action="s3:GetObject",
                iam_resources=[data_bucket.arn_for_objects(MANIFEST_PATTERN)],
                additional_iam_statements=[
                    iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key.key_arn])
                ],
                parameters={
                    "Bucket.$": "$.detail.bucket.name",
                    "Key.$": "$.detail.object.key",
                },
                result_selector={"manifest.$": "States.StringToJson($.Body)"},
                result_path="$.read",
            ),
            S3_ERRORS,
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
            # Lambda's transient errors (aws-cdk-lib's list, from Step Functions' Lambda best practices).
            retry_on_service_exceptions=True,
            result_path="$.plan",
        )
        # ManifestError (the planner's) and anything else: reported with the adapter, not retried.
        plan.add_catch(report, errors=["States.ALL"], result_path="$.error")
        release = guarded(
            tasks.CallAwsService(
                self,
                "ReleaseAdapter",
                comment="Copy the training output under adapters/, the one adapter prefix the endpoint reads",
                service="s3",
                action="copyObject",
                iam_action="s3:GetObject",
                iam_resources=[data_bucket.arn_for_objects(TRAINED_ARCHIVE_PATTERN)],
                additional_iam_statements=[
                    iam.PolicyStatement(
                        actions=["s3:PutObject"],
                        resources=[data_bucket.arn_for_objects(RELEASED_ARCHIVE_PATTERN)],
                    ),
                    iam.PolicyStatement(
                        actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
                    ),
                ],
                parameters={
                    "Bucket.$": "$.detail.bucket.name",
                    "CopySource.$": "$.plan.copy_source",
                    "Key.$": "$.plan.artifact_key",
                },
                result_path=sfn.JsonPath.DISCARD,
            ),
            S3_ERRORS,
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
        find_existing.add_retry(
            errors=SAGEMAKER_ERRORS, interval=Duration.seconds(5), max_attempts=2, backoff_rate=2.0
        )
        adapter_spec = {
            "BaseInferenceComponentName": base_component_name,
            "Container": {"ArtifactUrl.$": "$.plan.artifact_url"},
        }
        create = guarded(
            tasks.CallAwsService(
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
            ),
            SAGEMAKER_ERRORS + SAGEMAKER_QUOTA,
        )
        update = guarded(
            tasks.CallAwsService(
                self,
                "UpdateAdapterComponent",
                comment="A new training run of a registered adapter: point its component at the new artifact",
                service="sagemaker",
                action="updateInferenceComponent",
                iam_resources=[component_arn],
                parameters={
                    "InferenceComponentName.$": "$.plan.component_name",
                    "Specification": adapter_spec,
                },
                result_path=sfn.JsonPath.DISCARD,
            ),
            SAGEMAKER_ERRORS + SAGEMAKER_QUOTA,
        )
        wait = sfn.Wait(self, "WaitForComponent", time=sfn.WaitTime.duration(Duration.seconds(POLL_SECONDS)))
        check = guarded(
            tasks.CallAwsService(
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
            ),
            SAGEMAKER_ERRORS,
        )
        component_failed = sfn.Pass(
            self,
            "ComponentFailed",
            parameters={"Error": "AdapterComponentFailed", "Cause.$": "$.component.reason"},
            result_path="$.error",
        ).next(report)
        done = sfn.Succeed(self, "AdapterInService", comment="The adapter answers through its component")

        # A component not found is new: create it; any other failure to look it up is reported.
        find_existing.add_catch(
            sfn.Choice(self, "ComponentExists")
            .when(sfn.Condition.string_matches("$.error.Cause", NOT_FOUND), create)
            .otherwise(report),
            errors=["States.ALL"],
            result_path="$.error",
        )
        poll = wait.next(check).next(
            sfn.Choice(self, "ComponentStatus")
            .when(sfn.Condition.string_equals("$.component.status", "InService"), done)
            .when(sfn.Condition.string_equals("$.component.status", "Failed"), component_failed)
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
                    reason="The workflow reads manifests of any adapter, copies a job's model archive "
                    "(training/*.tar.gz) and releases it as adapters/<adapter>/<job>/model.tar.gz: adapter "
                    "and job names are only known when a training run ends.",
                    applies_to=[
                        arn_of_other_stack(data_bucket, f"/{MANIFEST_PATTERN}"),
                        arn_of_other_stack(data_bucket, f"/{TRAINED_ARCHIVE_PATTERN}"),
                        arn_of_other_stack(data_bucket, f"/{RELEASED_ARCHIVE_PATTERN}"),
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The workflow creates, describes and updates one inference component per "
                    f"trained adapter, {component_prefix.lower()}-<adapter>, named when its manifest "
                    "arrives; the pattern also matches the base model's component "
                    f"({component_prefix.lower()}--base), which the workflow never changes.",
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
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="A failed registration is notified on the project's topic, which the project key "
                    "encrypts: publishing needs the key's data-key actions (GenerateDataKey*) on that key.",
                    applies_to=["Action::kms:GenerateDataKey*"],
                ),
            ],
        )
        self._suppress_compliance_findings(planner_role)

    def _suppress_compliance_findings(self, planner_role: iam.Role) -> None:
        """HIPAA, NIST 800-53 and PCI DSS rules that do not fit the registration, with reasons."""
        compliance.inline_policy(
            planner_role.node.find_child("DefaultPolicy"),
            "The registration planner's role: write its own logs, nothing else",
        )
        compliance.inline_policy(
            self.state_machine.role.node.find_child("DefaultPolicy"),
            "The registration state machine's role: read manifests, release adapter archives, create and "
            "update this deployment's adapter inference components, notify",
        )
        compliance.inline_policy(
            self.events_role.node.find_child("DefaultPolicy"),
            "The manifest rule's role: start the registration state machine",
        )
        compliance.lambda_rules(
            self.planner,
            does="The registration planner turns an adapter manifest into component names and S3 keys",
            invoked="Invoked synchronously by the registration state machine's Task, whose Catch reports "
            "a bad manifest on the project's topic. A dead-letter queue only receives asynchronous "
            "invocations, so it would never get one.",
            concurrency="Runs once per adapter manifest written; it computes names from the manifest in "
            "milliseconds, and a reservation would take capacity from every other function in the account.",
            network="Makes no network call at all: it plans the registration from its input (pure code), "
            "so there is nothing a VPC would contain.",
        )
