"""IAM as the templates grant it: every role (trust, managed policies, every statement), every resource
policy."""

from collections import defaultdict
from dataclasses import dataclass, field

from tools.security_review_cfn import App, Resource
from tools.security_review_md import cell, inline, table

POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
# Resource type -> (policy document property, property naming what it protects, or None for itself).
RESOURCE_POLICIES = {
    "AWS::S3::BucketPolicy": ("PolicyDocument", "Bucket"),
    "AWS::SNS::TopicPolicy": ("PolicyDocument", "Topics"),
    "AWS::SQS::QueuePolicy": ("PolicyDocument", "Queues"),
    "AWS::SecretsManager::ResourcePolicy": ("ResourcePolicy", "SecretId"),
    "AWS::KMS::Key": ("KeyPolicy", None),
    "AWS::EC2::VPCEndpoint": ("PolicyDocument", None),
    "AWS::ECR::Repository": ("RepositoryPolicyText", None),
}


@dataclass
class Statement:
    source: str
    effect: str
    actions: list[str]
    resources: list[str]
    conditions: list[str]
    principals: list[str] = field(default_factory=list)


@dataclass
class Role:
    stack: str
    name: str
    description: str
    trust: list[Statement]
    managed: list[str]
    statements: list[Statement]
    used_by: list[str]


@dataclass
class ResourcePolicy:
    stack: str
    protects: str
    kind: str
    statements: list[Statement]


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def conditions(app: App, stack: str, condition: dict) -> list[str]:
    """`Operator key = value or value` per condition key."""
    out = []
    for operator, tests in (condition or {}).items():
        for key, values in tests.items():
            out.append(f"{operator} {key} = " + " or ".join(str(app.text(stack, v)) for v in _listed(values)))
    return out


def principals(app: App, stack: str, principal) -> list[str]:
    if principal in (None, ""):
        return []
    if not isinstance(principal, dict):
        return [f"anyone ({principal})"] if principal == "*" else [app.text(stack, principal)]
    return [
        f"{kind}: {app.text(stack, value)}" for kind, values in principal.items() for value in _listed(values)
    ]


def statements(app: App, stack: str, document: dict, source: str) -> list[Statement]:
    """Every statement of a policy document, each value readable."""
    out = []
    for raw in _listed((document or {}).get("Statement", [])):
        actions = [str(a) for a in _listed(app.render(stack, raw.get("Action", [])))]
        actions += [f"NOT {a}" for a in _listed(app.render(stack, raw.get("NotAction", [])))]
        resources = [str(r) for r in _listed(app.render(stack, raw.get("Resource", [])))]
        resources += [f"NOT {r}" for r in _listed(app.render(stack, raw.get("NotResource", [])))]
        who = principals(app, stack, raw.get("Principal"))
        who += [f"NOT {p}" for p in principals(app, stack, raw.get("NotPrincipal"))]
        out.append(
            Statement(
                source=source,
                effect=raw.get("Effect", ""),
                actions=actions,
                resources=resources,
                conditions=conditions(app, stack, raw.get("Condition")),
                principals=who,
            )
        )
    return out


def _label(app: App, res: Resource, home: str) -> str:
    return f"{res.type.removeprefix('AWS::')} {app.name(res.key, home)}"


def roles(app: App) -> list[Role]:
    """Every AWS::IAM::Role with its trust, managed policies and the statements of every attached policy."""
    attached: dict[tuple[str, str], list[Resource]] = defaultdict(list)
    for policy in app.resources(*POLICY_TYPES):
        for role in policy.props.get("Roles", []):
            if (key := app.target(policy.stack, role)) is not None:
                attached[key].append(policy)
    out = []
    for role in app.resources("AWS::IAM::Role"):
        props = role.props
        managed, chosen = [], list(attached[role.key])
        for arn in props.get("ManagedPolicyArns", []):
            key = app.target(role.stack, arn)
            found = app.resource(key) if key else None
            if found is not None and found.type == "AWS::IAM::ManagedPolicy":
                chosen += [found] if found not in chosen else []
            managed.append(app.text(role.stack, arn))
        granted = []
        for own in props.get("Policies", []):
            granted += statements(app, role.stack, own["PolicyDocument"], f"inline {own['PolicyName']}")
        for policy in chosen:
            source = app.name(policy.key, role.stack)
            granted += statements(app, policy.stack, policy.props["PolicyDocument"], source)
        users = [
            _label(app, user, role.stack)
            for key in sorted(app.referenced_by.get(role.key, ()))
            if (user := app.resource(key)) is not None and user.type not in (*POLICY_TYPES, "AWS::IAM::Role")
        ]
        out.append(
            Role(
                stack=role.stack,
                name=app.name(role.key, role.stack),
                description=str(props.get("Description", "")),
                trust=statements(app, role.stack, props.get("AssumeRolePolicyDocument"), "trust"),
                managed=managed,
                statements=granted,
                used_by=users,
            )
        )
    return out


def resource_policies(app: App) -> list[ResourcePolicy]:
    """Bucket, topic, queue, secret, key, endpoint and repository policies, and Lambda invoke permissions."""
    out = []
    for res in app.resources(*RESOURCE_POLICIES):
        document_property, protects = RESOURCE_POLICIES[res.type]
        if document_property not in res.props:
            continue
        targets = _listed(res.props[protects]) if protects else [{"Ref": res.id}]
        out.append(
            ResourcePolicy(
                stack=res.stack,
                protects=", ".join(app.text(res.stack, t) for t in targets),
                kind=res.type.removeprefix("AWS::"),
                statements=statements(
                    app, res.stack, res.props[document_property], app.name(res.key, res.stack)
                ),
            )
        )
    for res in app.resources("AWS::Lambda::Permission"):
        props = res.props
        condition = [
            f"source {app.text(res.stack, props[k])}" for k in ("SourceArn", "SourceAccount") if k in props
        ]
        out.append(
            ResourcePolicy(
                stack=res.stack,
                protects=app.text(res.stack, props.get("FunctionName")),
                kind="Lambda::Permission",
                statements=[
                    Statement(
                        source=app.name(res.key, res.stack),
                        effect="Allow",
                        actions=[str(props.get("Action"))],
                        resources=[app.text(res.stack, props.get("FunctionName"))],
                        conditions=condition,
                        principals=[app.text(res.stack, props.get("Principal"))],
                    )
                ],
            )
        )
    return out


def _rows(items: list[Statement], with_principal: bool) -> list[list[str]]:
    return [
        ([cell(s.principals)] if with_principal else [])
        + [s.effect, cell(s.actions), cell(s.resources), cell(s.conditions), cell([s.source])]
        for s in items
    ]


def section(role_rows: list[Role], policies: list[ResourcePolicy]) -> list[str]:
    count = sum(len(role.statements) for role in role_rows)
    out = [
        "## IAM roles",
        "",
        "From every `AWS::IAM::Role`, and every `AWS::IAM::Policy` / `AWS::IAM::ManagedPolicy` whose "
        f"`Roles` name it, in the templates. {len(role_rows)} roles, {count} statements attached to them.",
        "",
    ]
    for stack in dict.fromkeys(role.stack for role in role_rows):
        out += [f"### {stack}", ""]
        for role in (r for r in role_rows if r.stack == stack):
            out += [f"#### {role.name}", ""]
            if role.description:
                out += [f"{role.description}", ""]
            trust = [
                f"{', '.join(s.principals) or '(no principal)'} may {', '.join(s.actions)}"
                + (f" when {'; '.join(s.conditions)}" if s.conditions else "")
                for s in role.trust
            ]
            out.append(f"- Assumed by: {inline(trust)}")
            out.append(
                f"- Used by: {inline(role.used_by) if role.used_by else '(no resource in the app names it)'}"
            )
            out.append(f"- Managed policies: {inline(role.managed) if role.managed else 'none'}")
            out.append("")
            if role.statements:
                out += table(
                    ["effect", "actions", "resources", "conditions", "policy"], _rows(role.statements, False)
                )
            else:
                out.append("No statements.")
            out.append("")
    count = sum(len(p.statements) for p in policies)
    out += [
        "## Resource policies",
        "",
        "From bucket, topic, queue and secret policies, key policies, VPC endpoint and ECR repository "
        f"policies, and `AWS::Lambda::Permission`. {len(policies)} policies, {count} statements.",
        "",
    ]
    for policy in policies:
        out += [f"### {policy.stack}: {policy.kind} on {inline([policy.protects])}", ""]
        out += table(
            ["principal", "effect", "actions", "resources", "conditions", "policy"],
            _rows(policy.statements, True),
        )
        out.append("")
    return out
