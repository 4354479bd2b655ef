"""Network exposure: VPCs, subnets and their default routes, NAT gateways, security groups with every rule,
VPC endpoints, and which compute can reach the internet."""

from dataclasses import dataclass, field

from tools.security_review_cfn import App, Resource
from tools.security_review_md import cell, code, plain, table

ANYWHERE = ("0.0.0.0/0", "::/0")
RULE_TYPES = ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
# Resources that name a group without being placed in it.
NOT_MEMBERS = (
    "AWS::EC2::SecurityGroup",
    *RULE_TYPES,
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::Role",
)
# Resources that name subnets or groups without running anything in them.
NOT_COMPUTE = (
    *NOT_MEMBERS,
    "AWS::EC2::VPCEndpoint",
    "AWS::EC2::NatGateway",
    "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::EC2::Route",
)
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


@dataclass
class Rule:
    peer: str
    ports: str
    description: str
    origin: str
    internet: bool


@dataclass
class Group:
    stack: str
    name: str
    description: str
    ingress: list[Rule] = field(default_factory=list)
    egress: list[Rule] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Subnet:
    stack: str
    name: str
    kind: str
    cidr: str
    zone: str
    public_ip: bool
    default_route: str


@dataclass
class Endpoint:
    stack: str
    service: str
    kind: str
    private_dns: str
    groups: list[str]
    placement: str
    policy: str


@dataclass
class Placement:
    stack: str
    resource: str
    groups: list[str]
    subnets: list[str]
    internet: str


@dataclass
class Network:
    vpcs: list[str]
    subnets: list[Subnet]
    nats: list[str]
    groups: list[Group]
    endpoints: list[Endpoint]
    placements: list[Placement]


def ports(rule: dict) -> str:
    protocol = str(rule.get("IpProtocol"))
    if protocol == "-1":
        return "all traffic"
    name = PROTOCOLS.get(protocol, protocol)
    low, high = rule.get("FromPort"), rule.get("ToPort")
    if name.startswith("icmp"):
        return f"{name} type {low} code {high}"
    if low in (None, -1) or (low == 0 and high == 65535):
        return f"{name} all ports"
    return f"{name} {low}" if low == high else f"{name} {low}-{high}"


def rule(app: App, stack: str, raw: dict, origin: str, home: str) -> Rule:
    peer, internet = "", False
    for name in ("CidrIp", "CidrIpv6"):
        if name in raw:
            peer = app.text(stack, raw[name])
            internet = peer in ANYWHERE
            peer += " (anywhere)" if internet else ""
    for name in ("SourceSecurityGroupId", "DestinationSecurityGroupId"):
        if name in raw:
            key = app.target(stack, raw[name])
            peer = f"group {app.name(key, home) if key else app.text(stack, raw[name])}"
    for name in ("SourcePrefixListId", "DestinationPrefixListId"):
        if name in raw:
            peer = f"prefix list {app.text(stack, raw[name])}"
    return Rule(peer, ports(raw), str(raw.get("Description", "")), origin, internet)


def _label(app: App, res: Resource, home: str | None = None) -> str:
    return f"{res.type.removeprefix('AWS::')} {app.name(res.key, home or res.stack)}"


def _tag(res: Resource, key: str) -> str | None:
    return next((t["Value"] for t in res.props.get("Tags", []) if t.get("Key") == key), None)


def security_groups(app: App) -> dict[tuple[str, str], Group]:
    """Every security group with its inline and separate rules, and the resources placed in it."""
    groups = {}
    for res in app.resources("AWS::EC2::SecurityGroup"):
        group = Group(res.stack, app.name(res.key, res.stack), str(res.props.get("GroupDescription", "")))
        group.ingress = [
            rule(app, res.stack, r, "inline", res.stack) for r in res.props.get("SecurityGroupIngress", [])
        ]
        group.egress = [
            rule(app, res.stack, r, "inline", res.stack) for r in res.props.get("SecurityGroupEgress", [])
        ]
        groups[res.key] = group
    for res in app.resources(*RULE_TYPES):
        key = app.target(res.stack, res.props.get("GroupId"))
        if key is None or key not in groups:
            name = app.text(res.stack, res.props.get("GroupId"))
            key = ("(outside the app)", name)
            groups.setdefault(key, Group(key[0], name, "a group not defined in these templates"))
        rules = groups[key].ingress if res.type.endswith("Ingress") else groups[key].egress
        rules.append(rule(app, res.stack, res.props, app.name(res.key, res.stack), key[0]))
    for key, group in groups.items():
        own = app.resource(key)
        if own is not None and not group.egress:
            default = "EC2's default for a group created without egress rules"
            group.egress.append(Rule("0.0.0.0/0 (anywhere)", "all traffic", default, "not in template", True))
        elif own is not None and "SecurityGroupEgress" not in own.props:
            group.note = (
                "Egress only through separate AWS::EC2::SecurityGroupEgress resources: EC2 gives a group "
                "created without egress rules an allow-all rule; check that the deployed group lost it "
                "(`aws ec2 describe-security-group-rules`)."
            )
        group.members = sorted(
            _label(app, member, key[0])
            for member_key in app.referenced_by.get(key, ())
            if (member := app.resource(member_key)) is not None and member.type not in NOT_MEMBERS
        )
    return groups


def subnets(app: App) -> dict[tuple[str, str], Subnet]:
    """Every subnet with its default route (through its route table association)."""
    tables = {}
    for assoc in app.resources("AWS::EC2::SubnetRouteTableAssociation"):
        tables[app.target(assoc.stack, assoc.props.get("SubnetId"))] = app.target(
            assoc.stack, assoc.props.get("RouteTableId")
        )
    routes: dict = {}
    for route in app.resources("AWS::EC2::Route"):
        destination = route.props.get("DestinationCidrBlock", route.props.get("DestinationIpv6CidrBlock"))
        if destination not in ANYWHERE:
            continue
        hop = next((route.props[k] for k in route.props if k.endswith("Id") and k != "RouteTableId"), None)
        hop_key = app.target(route.stack, hop)
        hop_res = app.resource(hop_key) if hop_key else None
        label = _label(app, hop_res) if hop_res else app.text(route.stack, hop)
        routes.setdefault(app.target(route.stack, route.props.get("RouteTableId")), []).append(
            f"{destination} -> {label}"
        )
    out = {}
    for res in app.resources("AWS::EC2::Subnet"):
        props = res.props
        out[res.key] = Subnet(
            stack=res.stack,
            name=_tag(res, "Name") or app.name(res.key, res.stack),
            kind=_tag(res, "aws-cdk:subnet-type") or "",
            cidr=app.text(res.stack, props.get("CidrBlock", "")),
            zone=app.text(res.stack, props.get("AvailabilityZone", "")),
            public_ip=props.get("MapPublicIpOnLaunch") is True,
            default_route="; ".join(routes.get(tables.get(res.key), [])) or "none",
        )
    return out


def endpoints(app: App) -> list[Endpoint]:
    out = []
    for res in app.resources("AWS::EC2::VPCEndpoint"):
        props = res.props
        service = app.text(res.stack, props.get("ServiceName", "")).replace(
            "com.amazonaws.<AWS::Region>.", ""
        )
        groups = [
            app.name(k, res.stack)
            for v in props.get("SecurityGroupIds", [])
            if (k := app.target(res.stack, v))
        ]
        placement = (
            f"{len(props['SubnetIds'])} subnets"
            if "SubnetIds" in props
            else f"{len(props.get('RouteTableIds', []))} route tables"
        )
        document = props.get("PolicyDocument")
        policy = (
            f"custom ({len(document.get('Statement', []))} statements)" if document else "none: full access"
        )
        kind = props.get("VpcEndpointType", "Gateway")
        private_dns = {True: "on", False: "off"}.get(
            props.get("PrivateDnsEnabled"), "n/a" if kind == "Gateway" else "off"
        )
        out.append(Endpoint(res.stack, service, kind, private_dns, groups, placement, policy))
    return out


def network(app: App) -> Network:
    """The whole network picture, from the templates."""
    groups = security_groups(app)
    subnet_rows = subnets(app)
    placements = []
    for res in app.resources():
        if res.type in NOT_COMPUTE:
            continue
        refs = app.references.get(res.key, set())
        in_groups = [groups[k] for k in sorted(refs) if k in groups]
        in_subnets = [subnet_rows[k] for k in sorted(refs) if k in subnet_rows]
        outside = (
            res.type in ("AWS::Lambda::Function", "AWS::CodeBuild::Project") and "VpcConfig" not in res.props
        )
        if not (in_groups or in_subnets or outside):
            continue
        open_ports = sorted({r.ports for g in in_groups for r in g.egress if r.internet})
        routed = sorted({s.default_route for s in in_subnets if s.default_route != "none"})
        if outside:
            verdict = "yes: outside the VPC, on the AWS-managed network"
        elif (
            res.type == "AWS::SageMaker::NotebookInstance"
            and res.props.get("DirectInternetAccess") != "Disabled"
        ):
            verdict = "yes: direct internet access through SageMaker's network"
        elif open_ports and routed:
            verdict = f"yes: {', '.join(open_ports)} through {'; '.join(routed)}"
        elif open_ports:
            verdict = f"no route: egress allows {', '.join(open_ports)} but no subnet has a default route"
        else:
            verdict = "no: no egress rule to the internet" if in_groups else "no security group named"
        inbound = sorted({r.ports for g in in_groups for r in g.ingress if r.internet})
        verdict += f"; inbound from anywhere: {', '.join(inbound)}" if inbound else ""
        placements.append(
            Placement(
                stack=res.stack,
                resource=_label(app, res),
                groups=[g.name if g.stack == res.stack else f"{g.stack}:{g.name}" for g in in_groups],
                subnets=[s.name for s in in_subnets],
                internet=verdict,
            )
        )
    vpcs = []
    for res in app.resources("AWS::EC2::VPC"):
        users = [app.resource(k) for k in app.referenced_by.get(res.key, ())]
        logs = [u for u in users if u and u.type == "AWS::EC2::FlowLog"]
        restricted = any(u and u.type == "Custom::VpcRestrictDefaultSG" for u in users)
        flow = ", ".join(
            f"{u.props.get('TrafficType')} to {u.props.get('LogDestinationType', 'cloud-watch-logs')}"
            for u in logs
        )
        cidr = app.text(res.stack, res.props.get("CidrBlock", ""))
        vpcs.append(
            f"{res.stack}: {app.name(res.key, res.stack)} {cidr}; "
            f"flow logs: {flow or 'none'}; default security group "
            + (
                "emptied of rules (Custom::VpcRestrictDefaultSG)"
                if restricted
                else "left with its default rules"
            )
        )
    nats = [
        f"{res.stack}: {app.name(res.key, res.stack)} ({res.props.get('ConnectivityType', 'public')}) in "
        + (
            subnet_rows[k].name
            if (k := app.target(res.stack, res.props.get("SubnetId"))) in subnet_rows
            else "?"
        )
        for res in app.resources("AWS::EC2::NatGateway")
    ]
    return Network(vpcs, list(subnet_rows.values()), nats, list(groups.values()), endpoints(app), placements)


def _rule_rows(rules: list[Rule]) -> list[list[str]]:
    return [
        [code(r.peer), r.ports, plain(r.description), code(r.origin), "**internet**" if r.internet else ""]
        for r in rules
    ]


def section(net: Network) -> list[str]:
    open_groups = [g for g in net.groups if any(r.internet for r in g.egress)]
    inbound = [g for g in net.groups if any(r.internet for r in g.ingress)]
    routed = [f"{s.name} ({s.default_route})" for s in net.subnets if s.default_route != "none"]
    public = [s.name for s in net.subnets if s.public_ip]
    out = [
        "## Network exposure",
        "",
        "From VPCs, subnets, route table associations and routes, NAT gateways, security groups and their "
        "inline and separate rules, VPC endpoints, and every resource that names a subnet or a group, in the "
        f"templates. {len(net.groups)} security groups, {len(net.endpoints)} VPC endpoints, "
        f"{len(net.subnets)} subnets, {len(net.nats)} NAT gateways.",
        "",
        "### What can reach the internet",
        "",
        f"- Subnets with a default route out: {', '.join(routed) or 'none'}.",
        f"- Public subnets (public IP on launch): {', '.join(public) or 'none'}.",
        f"- Groups allowing egress to anywhere: {', '.join(g.name for g in open_groups) or 'none'}.",
        f"- Groups allowing ingress from anywhere: {', '.join(g.name for g in inbound) or 'none'}.",
        "",
    ]
    out += table(
        ["stack", "resource", "security groups", "subnets", "reaches the internet"],
        [
            [p.stack, code(p.resource), cell(p.groups), cell(p.subnets), plain(p.internet)]
            for p in net.placements
        ],
    )
    out += ["", "### VPC", ""] + [f"- {line}" for line in net.vpcs] + [""]
    out += ["### Subnets", ""]
    out += table(
        ["stack", "subnet", "type", "CIDR", "zone", "public IP on launch", "default route"],
        [
            [
                s.stack,
                code(s.name),
                s.kind,
                code(s.cidr),
                code(s.zone),
                "yes" if s.public_ip else "no",
                code(s.default_route),
            ]
            for s in net.subnets
        ],
    )
    out += ["", "### NAT gateways", ""] + ([f"- {line}" for line in net.nats] or ["None."]) + [""]
    out += ["### Security groups", ""]
    for group in net.groups:
        out += [f"#### {group.stack}: {group.name}", "", plain(group.description), ""]
        out.append(
            f"Placed here: {', '.join(code(m, False) for m in group.members) or 'nothing in the app'}."
        )
        out.append("")
        headers = ["peer", "ports", "description", "rule", "anywhere"]
        out += ["Ingress:", ""] + table(headers, _rule_rows(group.ingress)) + [""]
        out += ["Egress:", ""] + table(headers, _rule_rows(group.egress)) + [""]
        if group.note:
            out += [f"Note: {group.note}", ""]
    out += ["### VPC endpoints", ""]
    out += table(
        ["stack", "service", "type", "private DNS", "security groups", "placed in", "endpoint policy"],
        [
            [e.stack, code(e.service), e.kind, e.private_dns, cell(e.groups), e.placement, e.policy]
            for e in net.endpoints
        ],
    )
    out.append("")
    return out
