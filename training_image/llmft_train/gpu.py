"""Reading the GPU's memory for the memory plan (`memory.plan_memory`). This module acts; the plan is pure."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from llmft_train.hyperparams import ConfigError

GPU_MEMORY_ENV = "LLMFT_GPU_MEMORY_GIB"
MIB_PER_GIB = 1024


def parse_nvidia_smi_memory(text: str) -> float | None:
    """The smallest `memory.total` in GiB, from
    `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`."""
    values = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            values.append(float(line) / MIB_PER_GIB)
        except ValueError:
            return None
    return min(values) if values else None


def _nvidia_smi_gib() -> float | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvidia_smi_memory(done.stdout) if done.returncode == 0 else None


def _torch_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(count)) / 2**30


def detect_gpu_memory_gib(env: Mapping[str, str], gpus: int) -> float | None:
    """Total memory of the smallest GPU on this node in GiB; None without GPUs or when it cannot be read.

    `LLMFT_GPU_MEMORY_GIB` overrides the reading. nvidia-smi comes first: it leaves no CUDA context in
    the launcher, which stays alive beside the training processes; torch is the fallback.
    """
    if env.get(GPU_MEMORY_ENV):
        value = env[GPU_MEMORY_ENV]
        try:
            gib = float(value)
        except ValueError:
            gib = -1.0
        if not 0 < gib < float("inf"):
            raise ConfigError(f"{GPU_MEMORY_ENV}={value!r} must be a number of GiB greater than 0")
        return gib
    if gpus <= 0:
        return None
    return _nvidia_smi_gib() or _torch_gib()
