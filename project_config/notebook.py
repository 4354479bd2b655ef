"""Notebook settings: the SageMaker notebook instance, its LLaMA-Factory environment and idle auto-stop."""

import re
from dataclasses import dataclass
from typing import Any

from project_config import checks

VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class NotebookConfig:
    # Off by default: a GPU notebook instance costs money for every hour it runs.
    enabled: bool = False
    instance_type: str = "ml.g5.2xlarge"
    volume_size_gb: int = 100
    root_access: bool = False
    # 0 switches auto-stop off; otherwise the instance stops after this many idle minutes.
    idle_timeout_minutes: int = 60
    llamafactory_version: str = "0.9.5"

    @property
    def auto_stop(self) -> bool:
        return self.idle_timeout_minutes > 0


def parse_notebook(raw: Any, key: str = "llmft.notebook") -> NotebookConfig:
    get = checks.section_fields(raw, key, NotebookConfig)
    return NotebookConfig(
        enabled=checks.boolean(f"{key}.enabled", get("enabled")),
        # The notebook's LLaMA-Factory kernel and its QLoRA example train on the instance's GPU.
        instance_type=checks.instance_type(
            f"{key}.instance_type", get("instance_type"), use="notebook", gpu=True
        ),
        volume_size_gb=checks.integer(
            f"{key}.volume_size_gb",
            get("volume_size_gb"),
            minimum=5,
            maximum=16384,
        ),
        root_access=checks.boolean(f"{key}.root_access", get("root_access")),
        idle_timeout_minutes=checks.integer(
            f"{key}.idle_timeout_minutes",
            get("idle_timeout_minutes"),
            minimum=0,
            maximum=1440,
        ),
        llamafactory_version=checks.string(
            f"{key}.llamafactory_version",
            get("llamafactory_version"),
            pattern=VERSION_PATTERN,
            rule="expected an exact release such as 0.9.5 (the environment is pinned)",
        ),
    )
