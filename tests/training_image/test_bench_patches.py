"""The premises of the benchmark's patches (`bench_lora.apply_patches`), checked on the CPU in fp32.

gpu_mask and flex: with attention_mask=None, transformers rebuilds LLaMA-Factory's block-diagonal causal mask
from the packed rows' position_ids (sdpa: a dense mask on the device; flex: a BlockMask that skips masked
tiles), so every packed row sees exactly what it would see alone.
no_input_cast: skipping PEFT's bf16 -> fp32 copy of an adapter's input under bf16 autocast changes no value.
"""

from __future__ import annotations

import pytest
import torch
from llamafactory.data.collator import prepare_4d_attention_mask
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

LENGTHS, PAD = (5, 7, 3), 2


@pytest.fixture(scope="module")
def packed():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="sdpa",
        use_cache=False,  # as in training (LLaMA-Factory turns the cache off)
    )
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 97, (1, sum(LENGTHS) + PAD))
    # LLaMA-Factory's neat packing: segment numbers from 1, 0 for padding; positions restart in every row.
    segments = torch.tensor([[i + 1 for i, n in enumerate(LENGTHS) for _ in range(n)] + [0] * PAD])
    positions = torch.tensor([[p for n in LENGTHS for p in range(n)] + [0] * PAD])
    with torch.no_grad():
        alone, start = [], 0
        for n in LENGTHS:
            alone.append(model(input_ids=ids[:, start : start + n]).logits)
            start += n
    return model, ids, segments, positions, torch.cat(alone, dim=1)


def logits(model, ids, mask, positions):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, : sum(LENGTHS)]


def test_position_ids_give_the_same_block_diagonal_mask_as_llamafactory(packed):
    model, ids, segments, positions, alone = packed
    host_mask = prepare_4d_attention_mask(segments, torch.float32)
    torch.testing.assert_close(logits(model, ids, host_mask, positions), alone)
    torch.testing.assert_close(logits(model, ids, None, positions), alone)  # the gpu_mask patch


def test_flex_attention_builds_the_same_mask_from_position_ids(packed):
    # The flex patch: a BlockMask from the packed rows' position_ids (forward only: no CPU flex backward).
    model, ids, _, positions, alone = packed
    model.set_attn_implementation("flex_attention")
    try:
        torch.testing.assert_close(logits(model, ids, None, positions), alone)
    finally:
        model.set_attn_implementation("sdpa")


def test_a_plain_causal_mask_would_leak_across_rows(packed):
    # The negative control: rows attending to earlier rows in the pack change the logits.
    model, ids, _, positions, alone = packed
    leaked = logits(model, ids, torch.ones_like(ids), positions)
    assert (leaked - alone).abs().max() > 0.05


def lora_step(cast_input: bool):
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False)).to(torch.bfloat16)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, target_modules=["0"], init_lora_weights=False)
    )
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LLaMA-Factory's fp32 adapters on one GPU
    for m in model.modules():
        if hasattr(m, "cast_input_dtype_enabled"):
            m.cast_input_dtype_enabled = cast_input
    x = torch.randn(4, 16, 64, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().square().sum().backward()
    return [y, x.grad, *(p.grad for p in model.parameters() if p.requires_grad)]


def test_skipping_the_adapter_input_cast_changes_no_value_under_autocast():
    with_cast, without = lora_step(True), lora_step(False)
    assert len(with_cast) == 4  # output, input gradient, lora_A and lora_B gradients
    for a, b in zip(with_cast, without, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
