"""Network settings: VPC range, NAT gateways, flow-log retention, VPC endpoints."""

import re
from dataclasses import dataclass
from typing import Any

from project_config import checks

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653)

# Interface endpoints a private SageMaker workload may need; the names are the service suffixes.
INTERFACE_ENDPOINTS = (
    "ecr.api",
    "ecr.dkr",
    "kms",
    "logs",
    "monitoring",
    "sagemaker.api",
    "sagemaker.runtime",
    "secretsmanager",
    "sns",
    "ssm",
    "ssmmessages",
    "states",
    "sts",
)
DEFAULT_INTERFACE_ENDPOINTS = ["sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "sts"]
AZ_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str = "10.20.0.0/16"
    nat_gateways: int = 1
    flow_log_retention_days: int = 90
    interface_endpoints: tuple[str, ...] = tuple(DEFAULT_INTERFACE_ENDPOINTS)
    # Pre-seeded zones: with an explicit account/region, CDK would otherwise look them up in AWS.
    availability_zones: tuple[str, ...] = ()

    @property
    def isolated(self) -> bool:
        """No NAT gateway: subnets reach AWS only through VPC endpoints."""
        return self.nat_gateways == 0


def parse_network(raw: Any, key: str = "llmft.network") -> NetworkConfig:
    default = NetworkConfig()
    values = checks.section(raw, key, NetworkConfig.__dataclass_fields__)
    vpc = checks.ipv4_network(
        f"{key}.vpc_cidr", values.get("vpc_cidr", default.vpc_cidr), min_prefix=16, max_prefix=22
    )
    zones = checks.string_list(
        f"{key}.availability_zones", values.get("availability_zones", list(default.availability_zones))
    )
    for zone in zones:
        if not AZ_PATTERN.fullmatch(zone):
            raise checks.ConfigError(
                f"{key}.availability_zones", zone, "expected zone names such as eu-west-1a"
            )
    if zones and len(zones) != 2:
        raise checks.ConfigError(f"{key}.availability_zones", list(zones), "expected exactly 2 zones")
    retention = checks.choice(
        f"{key}.flow_log_retention_days",
        values.get("flow_log_retention_days", default.flow_log_retention_days),
        LOG_RETENTION_DAYS,
    )
    return NetworkConfig(
        vpc_cidr=str(vpc),
        nat_gateways=checks.integer(
            f"{key}.nat_gateways", values.get("nat_gateways", default.nat_gateways), minimum=0, maximum=2
        ),
        flow_log_retention_days=retention,
        interface_endpoints=checks.string_list(
            f"{key}.interface_endpoints",
            values.get("interface_endpoints", list(default.interface_endpoints)),
            allowed=INTERFACE_ENDPOINTS,
        ),
        availability_zones=zones,
    )
