"""What the configured deployment costs while it sits idle, and per hour of training, from one price table.

Usage: `make cost` (or `.venv/bin/python -m tools.cost [--cdk-json PATH]`). Reads cdk.json as the app does
and prints the monthly cost of everything that bills by the hour whether or not anything runs. The prices
are us-east-1 list prices with their sources (PRICES, SOURCES); README.md "Costs and teardown" shows the
same table. Pure except `main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOURS_PER_MONTH = 730
PRICE_REGION = "us-east-1"
PRICES_READ = "2026-12-02"

# Where each figure comes from. The AWS pricing pages render their tables by script, so their stored
# copies hold no rates; where a figure is quoted from another source, that source is named.
SOURCES = {
    "vpc": "aws.amazon.com/vpc/pricing, as quoted for us-east-1 by cloudburn.io/blog/aws-nat-gateway-pricing "
    "(2026-02-24) and basavytix.com/blog/aws-nat-gateway-pricing",
    "privatelink": "aws.amazon.com/privatelink/pricing (billed per endpoint per zone-hour, $0.01/GB "
    "processed); the hourly rate as used by cloudcostkit.com's endpoint calculator (2026-01-29: 4,378 "
    "endpoint-hours = $43.78)",
    "kms": "aws.amazon.com/kms/pricing ($1/month per key, prorated hourly; each rotation's new backing key "
    "another $1/month)",
    "sagemaker": "the AWS Price List API's AmazonSageMaker offer for us-east-1 (training and hosting share "
    "the rate), as quoted in public code found with the project's search tool on 2026-12-02; lower "
    "confidence: check aws.amazon.com/sagemaker-ai/pricing",
}


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str
    hourly: bool = True


PRICES = {
    "nat_gateway": Price(0.045, "per NAT gateway-hour", "vpc"),
    "public_ipv4": Price(0.005, "per public IPv4 address-hour (one per NAT gateway)", "vpc"),
    "interface_endpoint": Price(0.01, "per interface endpoint per zone-hour", "privatelink"),
    "kms_key": Price(1.00, "per customer managed key-month", "kms", hourly=False),
}
# On-demand SageMaker instance-hours (training jobs and endpoints) where a figure was found.
INSTANCE_HOURLY = {
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.12xlarge": 7.09,
    "ml.g6e.2xlarge": 2.80,
    "ml.g6e.12xlarge": 13.12,
    "ml.p4d.24xlarge": 37.688,
}


@dataclass(frozen=True)
class Line:
    stack: str
    item: str
    count: float
    monthly_usd: float | None  # None: bills while idle, but no price in the table

    def render(self) -> str:
        cost = f"${self.monthly_usd:10,.2f}" if self.monthly_usd is not None else "  not priced"
        return f"{cost}  {self.stack:<17} {self.item}"


def _monthly(key: str, count: float) -> float:
    price = PRICES[key]
    return round(price.usd * count * (HOURS_PER_MONTH if price.hourly else 1), 2)


def _instance_monthly(instance_type: str, count: int) -> float | None:
    hourly = INSTANCE_HOURLY.get(instance_type)
    return None if hourly is None else round(hourly * count * HOURS_PER_MONTH, 2)


def idle_lines(config, zones: int = 2) -> list[Line]:
    """Everything of the configured deployment that bills by the hour (or month) with nothing running."""
    prefix = config.stack_prefix
    network = config.network
    endpoints = len(network.interface_endpoints)
    nats = network.nat_gateways
    lines = [
        Line(
            f"{prefix}-Data", "the project KMS key (+$1/month per yearly rotation)", 1, _monthly("kms_key", 1)
        ),
        Line(f"{prefix}-Network", f"{nats} NAT gateway(s)", nats, _monthly("nat_gateway", nats)),
        Line(
            f"{prefix}-Network",
            f"{nats} public IPv4 address(es) of them",
            nats,
            _monthly("public_ipv4", nats),
        ),
        Line(
            f"{prefix}-Network",
            f"{endpoints} interface endpoints x {zones} zones",
            endpoints * zones,
            _monthly("interface_endpoint", endpoints * zones),
        ),
    ]
    inference = config.inference
    if inference.enabled and not inference.scales_to_zero:
        lines.append(
            Line(
                f"{prefix}-Inference",
                f"1 endpoint instance {inference.instance_type} (min_copies >= 1 keeps one up)",
                1,
                _instance_monthly(inference.instance_type, 1),
            )
        )
    hyperpod = config.hyperpod
    if hyperpod.enabled:
        groups = [hyperpod.controller, *([hyperpod.login] if hyperpod.login else []), *hyperpod.workers]
        for group in groups:
            item = f"{group.count} x {group.instance_type} ({group.name}) at HyperPod's rate"
            lines.append(Line(f"{prefix}-HyperPod", item, group.count, None))
        lines.append(
            Line(f"{prefix}-HyperPod", f"FSx for Lustre {hyperpod.fsx.storage_gib} GiB PERSISTENT_2", 1, None)
        )
    notebook = config.notebook
    if notebook.enabled:
        state = "stopped when idle (auto-stop on)" if notebook.auto_stop else "running (auto-stop off)"
        lines.append(
            Line(
                f"{prefix}-Notebook",
                f"notebook {notebook.instance_type}, {state}; its {notebook.volume_size_gb} GB volume always",
                1,
                None,
            )
        )
    return lines


def training_lines(config) -> list[str]:
    """The hourly cost of a training job on each instance type a request may ask for."""
    rows = []
    for instance_type in config.training.allowed_instance_types:
        hourly = INSTANCE_HOURLY.get(instance_type)
        price = f"${hourly:8.3f} per instance-hour" if hourly is not None else "not priced here"
        rows.append(f"  {instance_type:<20} {price}")
    return rows


def report(config) -> str:
    lines = idle_lines(config)
    priced = sum(line.monthly_usd for line in lines if line.monthly_usd is not None)
    unpriced = [line for line in lines if line.monthly_usd is None]
    where = config.region or "env-agnostic (any region)"
    text = [
        f"Idle cost of the configured deployment, per month ({HOURS_PER_MONTH} hours), at {PRICE_REGION} "
        f"list prices read {PRICES_READ}; the deployment's region: {where}.",
        *(line.render() for line in lines),
        f"${priced:10,.2f}  total of the priced lines"
        + (f"; {len(unpriced)} line(s) not priced here, see README.md" if unpriced else ""),
        "Not included: storage (S3, ECR images, CloudWatch Logs, EBS), data the NAT gateway and endpoints "
        "process, requests: they grow with use, not with time.",
        "A training job, on demand (managed spot costs less):",
        *training_lines(config),
        "Sources: " + "; ".join(f"[{name}] {text}" for name, text in SOURCES.items()),
    ]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdk-json", type=Path, default=ROOT / "cdk.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from project_config import CONTEXT_KEY, ConfigError, load_config

    try:
        config = load_config(json.loads(args.cdk_json.read_text())["context"].get(CONTEXT_KEY))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    print(report(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
