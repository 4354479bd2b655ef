"""The entrypoint's exact-math speedups (E1, E2): when they apply, and what they change on the CPU."""

import pytest
from llmft_train import speedups

LORA_H100 = {"finetuning_type": "lora", "bf16": True, "neat_packing": True, "flash_attn": "sdpa"}


@pytest.mark.parametrize(
    ("config", "has_cuda", "world_size", "expected"),
    [
        (LORA_H100, True, 1, ("no_input_cast", "flex")),
        ({**LORA_H100, "flash_attn": "auto"}, True, 1, ("no_input_cast", "flex")),
        (LORA_H100, False, 1, ("no_input_cast",)),  # flex has no CPU backward
        ({**LORA_H100, "bf16": False}, True, 1, ("flex",)),  # without autocast the cast is needed
        ({**LORA_H100, "neat_packing": False}, True, 1, ("no_input_cast",)),
        ({**LORA_H100, "flash_attn": "fa2"}, True, 1, ("no_input_cast",)),
        (LORA_H100, True, 2, ()),  # measured on one process only
        ({**LORA_H100, "finetuning_type": "full"}, True, 1, ()),
    ],
)
def test_speedups_apply_only_where_they_were_measured(config, has_cuda, world_size, expected):
    assert speedups.planned_speedups(config, has_cuda=has_cuda, world_size=world_size) == expected


def test_flex_drops_the_host_side_mask_from_the_collator(monkeypatch):
    import llamafactory.data.collator as collator

    original = collator.prepare_4d_attention_mask
    monkeypatch.setattr(collator, "prepare_4d_attention_mask", original)
    speedups.prepare(("no_input_cast",))
    assert collator.prepare_4d_attention_mask is original, "E1 alone leaves the collator alone"
    speedups.prepare(("flex",))
    assert collator.prepare_4d_attention_mask("mask", "dtype") is None


def test_no_input_cast_switches_peft_s_round_trip_off_and_changes_no_output():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    tokens = torch.randint(0, 64, (1, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(tokens).logits
        speedups.speedup_callback(("no_input_cast",)).on_train_begin(None, None, None, model=model)
        after = model(tokens).logits
    flags = [m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert flags and not any(flags), "every LoRA layer skips the cast"
    assert torch.equal(before, after), "a lossless round trip: the same values"
