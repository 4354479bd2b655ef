"""Fixtures for the training entrypoint tests: a fake /opt/ml tree and a tiny local model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jobtree import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
TRAINING_IMAGE = REPO / "training_image"


@pytest.fixture(autouse=True)
def llamafactory_logs_reach_every_tests_capture():
    """LLaMA-Factory binds its log handler to the sys.stdout of its first use, which under pytest is one
    test's (or collection's) capture; later tests would never see its log lines. Rebind it, before and
    after each test, to the process's stdout (fd 1), which every test's capture sees."""
    _rebind_llamafactory_handler()
    yield
    _rebind_llamafactory_handler()


def _rebind_llamafactory_handler() -> None:
    lf_logging = sys.modules.get("llamafactory.extras.logging")
    handler = getattr(lf_logging, "_default_handler", None)
    if handler is not None:
        handler.setStream(sys.__stdout__)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def train_env(root: Path, home: Path) -> dict[str, str]:
    """The environment of a CPU run: no hub access, caches inside the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HF_TOKEN"))}
    env.update(
        LLMFT_OPT_ML=str(root),
        LLMFT_GPUS_PER_NODE="0",
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


def train_script() -> str:
    """The installed `train` console script, which SageMaker's `docker run <image> train` runs."""
    train = shutil.which("train", path=str(Path(sys.executable).parent))
    assert train, f"`train` console script not found next to {sys.executable}"
    return train


def run_train_command(env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [train_script()], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_train_command(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [train_script()], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
