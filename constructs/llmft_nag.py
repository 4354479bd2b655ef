"""Helpers for cdk-nag suppressions that name one resource's findings exactly."""

from aws_cdk import Stack

from constructs import Construct


def logical_id(construct: Construct) -> str:
    """The CloudFormation logical ID of a construct's resource, as cdk-nag writes it in `applies_to`
    (`Resource::<LogicalId.Arn>/...`), also for a resource of another stack."""
    resource = construct.node.default_child or construct
    return Stack.of(resource).resolve(resource.logical_id)
