"""Helpers for cdk-nag suppressions that name one resource's findings exactly."""

import re

from aws_cdk import Stack
from cdk_nag import RegexAppliesTo

from constructs import Construct


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
