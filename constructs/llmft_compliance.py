"""Suppressions for the HIPAA Security, NIST 800-53 rev 5 and PCI DSS 3.2.1 packs, one resource and one
rule at a time.

The packs share these rule names (`<pack>-<rule>`); a rule that does not fit this design is suppressed on
the one resource it flags, in every pack that has it, with the reason it does not fit there.
"""

from aws_cdk import Names, aws_ec2
from cdk_nag import (
    HIPAASecurityChecks,
    NagPackSuppression,
    NagSuppressions,
    NIST80053R5Checks,
    PCIDSS321Checks,
)

from constructs import Construct

# Pack name (the prefix of its rule ids) -> the pack, which app.py runs on every synth.
COMPLIANCE_PACKS = {
    "HIPAA.Security": HIPAASecurityChecks,
    "NIST.800.53.R5": NIST80053R5Checks,
    "PCI.DSS.321": PCIDSS321Checks,
}


def suppress_in_packs(resource: Construct, rule: str, reason: str) -> None:
    """`rule` (as both packs name it, e.g. 'IAMNoInlinePolicy') on `resource`, in each pack."""
    NagSuppressions.add_resource_suppressions(
        resource, [NagPackSuppression(id=f"{pack}-{rule}", reason=reason) for pack in COMPLIANCE_PACKS]
    )


def inline_policy(policy: Construct, what: str) -> None:
    """IAMNoInlinePolicy on a policy attached to exactly one role: `what` says what the role does."""
    suppress_in_packs(
        policy,
        "IAMNoInlinePolicy",
        f"{what}. The statements are this one role's and are created and deleted with it; a customer "
        "managed policy would be a separate object that other roles could attach, which nothing should.",
    )


def lambda_rules(function: Construct, *, does: str, invoked: str, concurrency: str, network: str) -> None:
    """LambdaDLQ, LambdaConcurrency and LambdaInsideVPC on one function: `does` names the function."""
    suppress_in_packs(function, "LambdaDLQ", f"{does}. {invoked}")
    suppress_in_packs(function, "LambdaConcurrency", f"{does}. {concurrency}")
    suppress_in_packs(function, "LambdaInsideVPC", f"{does}. {network}")


def all_traffic_from_itself(group: aws_ec2.SecurityGroup, reason: str) -> None:
    """EC2RestrictedCommonPorts on the rule by which `group` admits all traffic from its own members."""
    suppress_in_packs(
        group.node.find_child(f"from {Names.unique_id(group)}:ALL TRAFFIC"),
        "EC2RestrictedCommonPorts",
        reason,
    )
