"""Where the SageMaker training contract puts things, under a root that tests can move."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "LLMFT_OPT_ML"
DEFAULT_ROOT = "/opt/ml"


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobPaths:
        return cls(Path(env.get(ROOT_ENV) or DEFAULT_ROOT))

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def resource_config(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def input_data_config(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def work_dir(self) -> Path:
        """Files the entrypoint writes for LLaMA-Factory (normalised data, resolved config)."""
        return self.root / "work"
