"""The architecture diagram: the resources that matter as nodes in one column per stack, and an edge for
every reference between them (IAM grants, roles run as, security group rules, routes, keys, targets)."""

from dataclasses import dataclass
from pathlib import Path

from tools.security_review_cfn import App

# Resource type -> the node's kind, in the order nodes are stacked within a column.
NODE_KINDS = {
    "AWS::EC2::VPC": "VPC",
    "AWS::EC2::Subnet": "subnet",
    "AWS::EC2::InternetGateway": "internet gateway",
    "AWS::EC2::NatGateway": "NAT gateway",
    "AWS::EC2::SecurityGroup": "security group",
    "AWS::EC2::VPCEndpoint": "VPC endpoint",
    "AWS::Events::Rule": "EventBridge rule",
    "AWS::StepFunctions::StateMachine": "state machine",
    "AWS::Lambda::Function": "Lambda function",
    "AWS::CodeBuild::Project": "CodeBuild project",
    "AWS::SageMaker::NotebookInstance": "notebook",
    "AWS::SageMaker::Cluster": "HyperPod cluster",
    "AWS::SageMaker::Endpoint": "SageMaker endpoint",
    "AWS::SageMaker::EndpointConfig": "endpoint config",
    "AWS::SageMaker::Model": "SageMaker model",
    "AWS::IAM::Role": "IAM role",
    "AWS::S3::Bucket": "S3 bucket",
    "AWS::KMS::Key": "KMS key",
    "AWS::ECR::Repository": "ECR repository",
    "AWS::FSx::FileSystem": "FSx file system",
    "AWS::SNS::Topic": "SNS topic",
}
NETWORK = ("AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::EC2::NatGateway", "AWS::EC2::InternetGateway")
EDGE_COLOURS = {
    "IAM grant": "#1f5fbf",
    "runs as": "#7a7a7a",
    "network": "#2e8b57",
    "encrypted by": "#d2691e",
    "references": "#8b1a1a",
}


@dataclass(frozen=True)
class Node:
    key: tuple[str, str]
    kind: str
    label: str


@dataclass(frozen=True)
class Edge:
    source: tuple[str, str]
    target: tuple[str, str]
    kind: str


@dataclass
class Graph:
    nodes: dict[tuple[str, str], Node]
    edges: list[Edge]


def _statements(document) -> list[dict]:
    found = (document or {}).get("Statement", [])
    return found if isinstance(found, list) else [found]


def graph(app: App) -> Graph:
    """Nodes and edges, from the templates only."""
    nodes = {
        res.key: Node(res.key, NODE_KINDS[res.type], app.name(res.key, res.stack))
        for res in app.resources(*NODE_KINDS)
    }
    edges: set[Edge] = set()

    def add(source, target, kind):
        if source in nodes and target in nodes and source != target:
            edges.add(Edge(source, target, kind))

    for key, targets in app.references.items():
        for target in targets:
            target_type = app.resource(target).type
            if target_type == "AWS::EC2::VPC":
                continue  # everything in the network sits in the VPC: the column says it already
            kind = {"AWS::IAM::Role": "runs as", "AWS::KMS::Key": "encrypted by"}.get(
                target_type, "references"
            )
            add(key, target, "network" if target_type in NETWORK else kind)
    # IAM grants: the role that a policy is attached to, towards every resource its Allow statements name.
    for policy in app.resources("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        roles = [app.target(policy.stack, r) for r in policy.props.get("Roles", [])]
        for statement in _statements(policy.props.get("PolicyDocument")):
            if statement.get("Effect") == "Allow":
                for target in app.refs(policy.stack, statement.get("Resource", [])):
                    for role in roles:
                        add(role, target, "IAM grant")
    for role in app.resources("AWS::IAM::Role"):
        for inline in role.props.get("Policies", []):
            for statement in _statements(inline.get("PolicyDocument")):
                if statement.get("Effect") == "Allow":
                    for target in app.refs(role.stack, statement.get("Resource", [])):
                        add(role.key, target, "IAM grant")
    # Security group rules: from the group that sends to the group that receives.
    for rule in app.resources("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
        group = app.target(rule.stack, rule.props.get("GroupId"))
        if rule.type.endswith("Ingress"):
            add(app.target(rule.stack, rule.props.get("SourceSecurityGroupId")), group, "network")
        else:
            add(group, app.target(rule.stack, rule.props.get("DestinationSecurityGroupId")), "network")
    # Default routes: from a subnet to its NAT or internet gateway.
    tables = {}
    for assoc in app.resources("AWS::EC2::SubnetRouteTableAssociation"):
        table = app.target(assoc.stack, assoc.props.get("RouteTableId"))
        tables.setdefault(table, []).append(app.target(assoc.stack, assoc.props.get("SubnetId")))
    for route in app.resources("AWS::EC2::Route"):
        for hop in app.refs(route.stack, {k: v for k, v in route.props.items() if k != "RouteTableId"}):
            for subnet in tables.get(app.target(route.stack, route.props.get("RouteTableId")), []):
                add(subnet, hop, "network")
    # Gateway endpoints reach subnets through their route tables.
    for endpoint in app.resources("AWS::EC2::VPCEndpoint"):
        for table in endpoint.props.get("RouteTableIds", []):
            for subnet in tables.get(app.target(endpoint.stack, table), []):
                add(endpoint.key, subnet, "network")
    return Graph(nodes, sorted(edges, key=lambda e: (e.kind, e.source, e.target)))


def layout(g: Graph, stacks: list[str]) -> dict[tuple[str, str], tuple[float, float]]:
    """One column per stack, nodes in NODE_KINDS order from the top."""
    order = list(NODE_KINDS.values())
    positions = {}
    for column, stack in enumerate(stacks):
        members = sorted(
            (n for n in g.nodes.values() if n.key[0] == stack), key=lambda n: (order.index(n.kind), n.label)
        )
        for row, node in enumerate(members):
            positions[node.key] = (float(column), -float(row))
    return positions


def draw(g: Graph, stacks: list[str], path: Path) -> str | None:
    """Writes the PNG; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
        from matplotlib.lines import Line2D
    except ImportError as error:
        return f"matplotlib is not installed ({error})"
    positions = layout(g, stacks)
    rows = max((-y for _, y in positions.values()), default=0) + 1
    figure, axes = pyplot.subplots(figsize=(3.4 * max(len(stacks), 1), 0.42 * rows + 1.6))
    for edge in g.edges:
        (x1, y1), (x2, y2) = positions[edge.source], positions[edge.target]
        axes.annotate(
            "",
            xy=(x2, y2),
            xytext=(x1, y1),
            arrowprops={
                "arrowstyle": "-|>",
                "color": EDGE_COLOURS[edge.kind],
                "alpha": 0.45,
                "lw": 0.7,
                "shrinkA": 9,
                "shrinkB": 9,
                "connectionstyle": f"arc3,rad={0.25 if x1 == x2 else 0.08}",
            },
            zorder=1,
        )
    for key, (x, y) in positions.items():
        node = g.nodes[key]
        label = node.label if len(node.label) <= 34 else node.label[:32] + "…"
        axes.text(
            x,
            y,
            f"{node.kind}\n{label}",
            ha="center",
            va="center",
            fontsize=6,
            zorder=2,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#f7f7f7", "edgecolor": "#555555", "lw": 0.6},
        )
    for column, stack in enumerate(stacks):
        axes.text(column, 1.0, stack, ha="center", va="bottom", fontsize=9, fontweight="bold")
    axes.legend(
        handles=[Line2D([0], [0], color=colour, lw=2, label=kind) for kind, colour in EDGE_COLOURS.items()],
        loc="lower right",
        fontsize=7,
    )
    axes.set_xlim(-0.6, len(stacks) - 0.4)
    axes.set_ylim(-rows, 1.6)
    axes.axis("off")
    axes.set_title(
        f"{len(g.nodes)} resources, {len(g.edges)} references, from the synthesized templates", fontsize=9
    )
    figure.savefig(path, dpi=130, bbox_inches="tight")
    pyplot.close(figure)
    return None
