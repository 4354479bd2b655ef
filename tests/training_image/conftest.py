"""Fixtures for the training entrypoint tests: a fake /opt/ml tree and a tiny local model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAINING_IMAGE = REPO / "training_image"
sys.path.insert(0, str(TRAINING_IMAGE))

WORDS = (
    "what is the capital of france paris germany berlin italy rome spain madrid "
    "add two and three five four one six seven name a colour red blue green say hello world "
    "translate cat chat dog chien yes no please thanks answer question"
).split()


def alpaca_rows(count: int = 20) -> list[dict]:
    """Small, varied instruction rows over the tiny tokenizer's vocabulary."""
    pairs = [
        ("what is the capital of france", "paris"),
        ("what is the capital of germany", "berlin"),
        ("what is the capital of italy", "rome"),
        ("what is the capital of spain", "madrid"),
        ("add two and three", "five"),
        ("name a colour", "red blue green"),
        ("say hello", "hello world"),
        ("translate cat", "chat"),
        ("translate dog", "chien"),
        ("answer yes or no", "yes"),
    ]
    return [
        {"instruction": pairs[i % len(pairs)][0], "input": "", "output": pairs[i % len(pairs)][1]}
        for i in range(count)
    ]


def build_tiny_model(target: Path) -> Path:
    """A random two-layer Llama and a word-level tokenizer, saved like a Hub checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {
        token: index for index, token in enumerate([*specials, *WORDS, ":", "Human", "Assistant", "System"])
    }
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def write_job(
    root: Path,
    hyperparameters: dict,
    train_rows: list[dict] | None = None,
    model_dir: Path | None = None,
    resource_config: dict | None = None,
) -> Path:
    """Lay out /opt/ml under `root` as SageMaker does before starting the container."""
    config_dir = root / "input" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channels = {"train": {"TrainingInputMode": "File"}}
    if train_rows is not None:
        train_dir = root / "input" / "data" / "train"
        train_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row) + "\n" for row in train_rows)
        (train_dir / "data.jsonl").write_text(text)
    if model_dir is not None:
        shutil.copytree(model_dir, root / "input" / "data" / "model", dirs_exist_ok=True)
        channels["model"] = {"TrainingInputMode": "File"}
    (config_dir / "inputdataconfig.json").write_text(json.dumps(channels))
    resource = resource_config or {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
        "network_interface_name": "eth0",
    }
    (config_dir / "resourceconfig.json").write_text(json.dumps(resource))
    return root


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
