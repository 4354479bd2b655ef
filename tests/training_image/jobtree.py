"""Build a fake /opt/ml tree and a tiny local model; shared by the tests and `gpu_smoke.py`.

No pytest import here: the GPU smoke script runs where pytest may not be installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


def preference_rows(count: int = 16) -> list[dict]:
    """Preference pairs (alpaca layout, as LLaMA-Factory's dpo demo in alpaca form): the right answer
    chosen, another row's answer rejected."""
    rows = alpaca_rows(count)
    return [
        {
            "instruction": row["instruction"],
            "input": "",
            "chosen": row["output"],
            "rejected": rows[(i + 3) % len(rows)]["output"],
        }
        for i, row in enumerate(rows)
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
