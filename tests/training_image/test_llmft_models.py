"""Quantized base models: trained where the image can, refused with the reason where it cannot."""

from __future__ import annotations

import json

import pytest
from conftest import train_env
from jobtree import alpaca_rows, write_job
from llmft_train import cli
from llmft_train.models import model_problem, quant_method

AWQ = {"model_type": "llama", "quantization_config": {"quant_method": "awq", "bits": 4}}
GPTQ = {"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4}}
BNB = {"model_type": "llama", "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
FP8 = {"model_type": "llama", "quantization_config": {"quant_method": "fp8"}}


@pytest.mark.parametrize(
    ("config", "finetuning_type", "sharded", "words"),
    [
        (AWQ, "lora", False, "AWQ-quantized (config.json quantization_config.quant_method): LLaMA-Factory"),
        (AWQ, "lora", False, "only with autoawq"),
        (GPTQ, "lora", False, "only with gptqmodel>=2.0"),
        ({"quantization_config": {"quant_method": "hqq"}}, "lora", False, "adapters on bitsandbytes, fp8"),
        (BNB, "full", False, "a full fine-tune would train its quantized weights; use a LoRA recipe"),
        (BNB, "lora", True, "refuses DeepSpeed ZeRO-3 and FSDP with quantized weights"),
        (BNB, "lora", True, "set the hyperparameter distributed=ddp"),
        ([], "lora", False, "config.json is not a JSON object"),
    ],
)
def test_quantized_models_the_image_cannot_train_are_refused_with_the_reason(
    config, finetuning_type, sharded, words
):
    problem = model_problem(config, finetuning_type=finetuning_type, sharded=sharded)
    assert problem and words in problem, problem
    if config in (AWQ, GPTQ):
        assert "qlora_4bit recipe quantizes it on the fly" in problem


@pytest.mark.parametrize(
    ("config", "finetuning_type", "sharded"),
    [({"model_type": "llama"}, "full", True), (BNB, "lora", False), (FP8, "full", True), (FP8, "lora", True)],
)
def test_models_the_image_trains_are_accepted(config, finetuning_type, sharded):
    assert model_problem(config, finetuning_type=finetuning_type, sharded=sharded) is None


def test_the_method_is_read_from_older_bitsandbytes_configs_too():
    assert quant_method({"quantization_config": {"load_in_4bit": True}}) == "bitsandbytes"
    assert quant_method({"torch_dtype": "bfloat16"}) is None


def test_an_awq_model_channel_is_refused_before_llamafactory_loads_it(tmp_path, tiny_model, monkeypatch):
    root = write_job(tmp_path / "opt_ml", {"recipe": "lora"}, alpaca_rows(2), tiny_model)
    config_path = root / "input" / "data" / "model" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **AWQ}))
    for key, value in train_env(root, tmp_path).items():
        monkeypatch.setenv(key, value)
    assert cli.main() == 1
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("the base model is AWQ-quantized"), failure
    assert not (root / "checkpoints").exists() or not any((root / "checkpoints").iterdir())
