#!/usr/bin/env python3
"""Side-by-side LLaMA-Factory throughput benchmark that also checks each row trains the same way.

One invocation (`all`) does, on one GPU:
  1. builds a randomly initialised Llama-3-8B-shaped model (hidden 4096, 32 layers, 32 heads, 8 KV heads,
     intermediate 14336, vocab 128256) on the GPU and saves it as safetensors (no download);
  2. builds a local word-level tokenizer with Llama-3's 128000 + 256 special-token layout (every synthetic
     word is exactly one token, so row lengths in tokens are known);
  3. writes a learnable alpaca-style task with a long-tailed length mix (`build_data`): each answer is
     key, value, key, value, ... where a key is drawn uniformly from TASK_KEYS words and its value is a
     fixed function of the key. A causal model can learn the values but never the keys, so the loss has a
     floor, `loss_floor`: a row below it saw tokens it must not see (a mask leak);
  4. trains every requested config in its own subprocess through `llamafactory.train.tuner.run_exp` for a
     fixed number of optimizer steps on the same data, seed and order, and measures, after the warm-up:
       tokens/s  = non-padding input tokens of the timed steps / wall time of the timed steps (counted on
                   the GPU without a host sync; the clock is CUDA-synchronised only at the window's two
                   ends, so the bench adds no stall; data loading, collation, optimizer and logging are in)
       peak GiB  = torch.cuda.max_memory_reserved() over the whole run (model load included)
       MFU       = 4 * N * tokens/s / 989e12, N = base-model parameters used in a matmul per token
                   (all parameters minus the input embedding table; LoRA FLOPs, attention score/value FLOPs
                   and checkpointing recomputation NOT counted; 989e12 = H100 SXM dense bf16 peak)
       loss      = every optimizer step's training loss (the sum of its micro-batches' losses, as the
                   Trainer logs it), compared with the row named by `ref=` (`parity_verdict`).

Usage (see benchmarks/run_h100.sh for the device command):
  python benchmarks/bench_lora.py all --out OUT --run 'default|training_image/llmft_train/recipes/lora.yaml' \
      --run 'nocast|training_image/llmft_train/recipes/lora.yaml||ref=default,tol=exact,patch=no_input_cast'
  A run spec is NAME|CONFIG_YAML[|key=value,...][|steps=N,warmup=W,ref=ROW,tol=exact|reduced,patch=A+B,
  profile=1]; the key=values override the resolved config (values parsed as YAML). `patch` names bench-side
  stand-ins for entrypoint changes (PATCHES); a row that uses one does not describe what ships today.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

H100_BF16_DENSE_PEAK = 989e12
LLAMA3_8B_SHAPE = dict(
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
)
TINY_SHAPE = dict(  # CPU smoke test of the script itself, never reported
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=128256,
)
N_WORDS = 128000 - 4  # ordinary vocabulary ids 0..127995; 4 role words take the rest below 128000
ROLE_WORDS = ["system", "user", "assistant", "ipython"]
PAD_TOKEN = "<|finetune_right_pad_id|>"
PAD_ID = 128004
# Keys w0..w255, values w256..w511 (a fixed permutation of the keys), prompts from the rest of the vocabulary.
TASK_KEYS = 256
# Largest relative gap between a row's per-step loss and its reference row's, same data, seed and order.
# exact: same math in another order (kernels, compilation, attention, host-side changes): bf16 rounding only.
# reduced: lower-precision arithmetic (fp8 matmuls, bf16 master weights) may drift further.
TOLERANCES = {"exact": 0.02, "reduced": 0.05}
# A loss this far (relative) under the task's floor cannot come from a causal, per-row mask.
FLOOR_MARGIN = 0.02
# The LLaMA-Factory keys that change the tokenized, packed data set.
DATA_KEYS = ("cutoff_len", "packing", "neat_packing", "template", "train_on_prompt", "max_samples", "dataset")
# Bench-side stand-ins for entrypoint changes (see `apply_patches`).
PATCHES = ("no_input_cast", "gpu_mask", "compile_layers", "flex")
ENTRYPOINT_DIR = Path(__file__).resolve().parents[1] / "training_image"


# --------------------------------------------------------------------------------------------- pure parts
@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str
    max_rel_diff: float | None = None


def loss_floor(key_tokens: int, label_tokens: int, n_keys: int = TASK_KEYS) -> float:
    """Mean loss per label token no causal model can beat: every key costs at least ln(n_keys) nats."""
    return key_tokens * math.log(n_keys) / label_tokens


def parity_verdict(
    losses: list, reference: list | None, tol: float, floor: float, margin: float = FLOOR_MARGIN
) -> Verdict:
    """Is `losses` ([step, loss] per optimizer step) the same training as `reference` on the same data?"""
    if not losses:
        return Verdict(False, "FAIL: no losses recorded")
    bad = [(s, v) for s, v in losses if not math.isfinite(v)]
    if bad:
        return Verdict(False, f"FAIL: loss {bad[0][1]} at step {bad[0][0]}")
    low = [(s, v) for s, v in losses if v < floor * (1 - margin)]
    if low:
        s, v = low[0]
        return Verdict(
            False, f"FAIL: loss {v:.3f} at step {s} is below the task floor {floor:.3f} (mask leak)"
        )
    if reference is None:
        return Verdict(True, "no reference row; above the task floor")
    ref = dict((s, v) for s, v in reference)
    if sorted(ref) != sorted(s for s, _ in losses):
        return Verdict(False, "FAIL: steps differ from the reference row's")
    gaps = [(abs(v - ref[s]) / ref[s], s) for s, v in losses]
    worst, at = max(gaps)
    if worst > tol:
        return Verdict(
            False, f"FAIL: parts from the reference by {worst:.2%} at step {at} (> {tol:.0%})", worst
        )
    return Verdict(True, f"pass: within {worst:.2%} of the reference (<= {tol:.0%})", worst)


def parse_spec(s: str) -> tuple[str, str, dict, dict]:
    """NAME|CONFIG[|key=value,...][|control=value,...] -> (name, config, overrides, controls)."""
    parts = s.split("|")
    name, cfg = parts[0], parts[1]
    over, ctl = {}, {}
    for part, dst in ((parts[2] if len(parts) > 2 else "", over), (parts[3] if len(parts) > 3 else "", ctl)):
        for kv in filter(None, part.split(",")):
            k, v = kv.split("=", 1)
            dst[k.strip()] = yaml.safe_load(v)
    if ctl.get("tol", "exact") not in TOLERANCES:
        raise ValueError(f"{name}: tol={ctl['tol']!r}; allowed: {', '.join(TOLERANCES)}")
    unknown = sorted(set(patch_names(ctl)) - set(PATCHES))
    if unknown:
        raise ValueError(f"{name}: unknown patch {unknown}; allowed: {', '.join(PATCHES)}")
    return name, cfg, over, ctl


def patch_names(ctl: dict) -> list[str]:
    return [p for p in str(ctl.get("patch") or "").split("+") if p]


# --------------------------------------------------------------------------------------------- assets
def special_tokens() -> dict[str, int]:
    named = {
        128000: "<|begin_of_text|>",
        128001: "<|end_of_text|>",
        128004: PAD_TOKEN,
        128006: "<|start_header_id|>",
        128007: "<|end_header_id|>",
        128008: "<|eom_id|>",
        128009: "<|eot_id|>",
        128010: "<|python_tag|>",
    }
    out = {}
    reserved = 0
    for i in range(128000, 128256):
        if i in named:
            out[named[i]] = i
        else:
            out[f"<|reserved_special_token_{reserved}|>"] = i
            reserved += 1
    return out


def build_tokenizer(model_dir: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = special_tokens()
    vocab = {f"w{i}": i for i in range(N_WORDS)}
    for j, w in enumerate(ROLE_WORDS):
        vocab[w] = N_WORDS + j
    vocab.update(specials)
    unk = "<|reserved_special_token_247|>"
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token=PAD_TOKEN,
        unk_token=unk,
        model_max_length=8192,
    )
    fast.save_pretrained(model_dir)


def build_model(model_dir: Path, shape: dict, device: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        **shape,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=128000,
        eos_token_id=128009,
        pad_token_id=PAD_ID,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(prev)
    model.save_pretrained(model_dir, max_shard_size="5GB")
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _lognormal_int(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, round(rng.lognormvariate(math.log(median), sigma)))))


def task_values(seed: int, n_keys: int = TASK_KEYS) -> list[int]:
    """value word id of key i: a fixed permutation of the keys, shifted past them."""
    perm = list(range(n_keys))
    random.Random(seed).shuffle(perm)
    return [n_keys + p for p in perm]


def build_data(data_dir: Path, n_rows: int, seed: int = 1234) -> dict:
    """Alpaca-style rows; lengths in tokens (1 word = 1 token) drawn from log-normals with a long tail.

    instruction ~ LogN(median 18, sigma 0.6) in [3, 256], random words (never labels)
    input       ~ present in 40% of rows, LogN(median 40, sigma 1.0) in [1, 768], random words
    output      ~ LogN(median 160, sigma 0.9) in [1, 1536]: key, value(key), key, value(key), ...
    Rows are capped so that the templated sequence stays under 2000 tokens (no truncation / dropping
    differences between packed and unpacked configs). Labels are the output words plus <|eot_id|>.
    """
    rng = random.Random(seed)
    values = task_values(seed)
    prompt_words = range(2 * TASK_KEYS, N_WORDS)
    rows, totals, keys, labels = [], [], 0, 0
    for _ in range(n_rows):
        ni = _lognormal_int(rng, 18, 0.6, 3, 256)
        nin = _lognormal_int(rng, 40, 1.0, 1, 768) if rng.random() < 0.4 else 0
        no = _lognormal_int(rng, 160, 0.9, 1, 1536)
        no = min(no, 1980 - ni - nin)
        words = lambda n: " ".join(f"w{rng.choice(prompt_words)}" for _ in range(n))  # noqa: E731
        answer = []
        for _ in range((no + 1) // 2):
            key = rng.randrange(TASK_KEYS)
            answer += [f"w{key}", f"w{values[key]}"]
        rows.append(
            {"instruction": words(ni), "input": words(nin) if nin else "", "output": " ".join(answer[:no])}
        )
        totals.append(ni + nin + no + 12)  # + llama3 template tokens (bos, headers, eot)
        keys += (no + 1) // 2
        labels += no + 1
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "bench_alpaca.json").write_text(json.dumps(rows))
    (data_dir / "dataset_info.json").write_text(
        json.dumps({"bench_alpaca": {"file_name": "bench_alpaca.json"}})
    )
    s = sorted(totals)
    stats = {
        "rows": n_rows,
        "mean_tokens": round(sum(s) / len(s), 1),
        "p50": s[len(s) // 2],
        "p90": s[int(len(s) * 0.9)],
        "p99": s[int(len(s) * 0.99)],
        "max": s[-1],
        "task_keys": TASK_KEYS,
        "loss_floor": round(loss_floor(keys, labels), 4),
    }
    (data_dir / "stats.json").write_text(json.dumps(stats))
    return stats


def matmul_params(shape: dict) -> tuple[int, int]:
    h, L, i, V = (
        shape["hidden_size"],
        shape["num_hidden_layers"],
        shape["intermediate_size"],
        shape["vocab_size"],
    )
    hd = h // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * hd
    per_layer = h * h + 2 * h * kv + h * h + 3 * h * i + 2 * h  # q, k, v, o, gate/up/down, 2 norms
    total = V * h + L * per_layer + h + V * h  # embed + layers + final norm + lm_head
    return total, total - V * h  # (all params, params used in a matmul per token)


# --------------------------------------------------------------------------------------------- one run
def apply_patches(names: list[str]):
    """Bench-side changes; E1 (no_input_cast) and E2 (flex) run the entrypoint's own llmft_train.speedups.

    Returns a callback that finishes them on the model.
    """
    sys.path.insert(0, str(ENTRYPOINT_DIR))  # the child process imports the entrypoint's package too
    from llmft_train import speedups
    from transformers import TrainerCallback

    shipped = [name for name in names if name in (speedups.NO_INPUT_CAST, speedups.FLEX)]
    speedups.prepare(shipped)
    if "gpu_mask" in names:
        # The mask from position_ids on the GPU, with SDPA (E2 without flex).
        speedups.prepare([speedups.FLEX])
    entrypoint = speedups.speedup_callback(shipped)

    class Patch(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            entrypoint.on_train_begin(args, state, control, model=model, **kw)
            if "compile_layers" in names:  # compile each decoder layer; the mask is built outside, eagerly
                for m in model.modules():
                    if type(m).__name__.endswith("DecoderLayer"):
                        m.compile()

    return Patch()


def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import torch
    from transformers import Trainer, TrainerCallback

    cuda = torch.cuda.is_available()
    counted = {"tokens": 0, "micro_batches": 0}
    step_losses = []
    orig_batches, orig_step = Trainer.get_batch_samples, Trainer.training_step

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = orig_batches(self, epoch_iterator, num_batches, device)
        for b in batch_samples:  # summed on the device: no host sync
            counted["tokens"] = counted["tokens"] + (b["input_ids"] != PAD_ID).sum()
            counted["micro_batches"] += 1
        return batch_samples, num_items

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = orig_step(self, model, inputs, num_items_in_batch)
        step_losses.append((self.state.global_step + 1, loss))  # a device tensor, read after training
        return loss

    Trainer.get_batch_samples, Trainer.training_step = get_batch_samples, training_step
    max_steps = spec["args"]["max_steps"]
    first = max(spec["warmup"], 1)

    class Meter(TrainerCallback):
        def __init__(self):
            self.marks = {}

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (first, max_steps):  # only the window's ends wait for the GPU
                if cuda:
                    torch.cuda.synchronize()
                self.marks[state.global_step] = (
                    time.perf_counter(),
                    int(counted["tokens"]),
                    counted["micro_batches"],
                )

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.gc = bool(getattr(model, "is_gradient_checkpointing", False))
            self.attn = getattr(getattr(model, "config", None), "_attn_implementation", None)

    meter = Meter()
    callbacks = [apply_patches(spec.get("patches", [])), meter]
    if spec.get("profile"):
        callbacks.append(profiler_callback(spec, TrainerCallback, cuda))
    from llamafactory.train.tuner import run_exp

    t0 = time.perf_counter()
    run_exp(spec["args"], callbacks=callbacks)
    total_s = time.perf_counter() - t0
    per_step: dict[int, float] = {}
    for step, loss in step_losses:
        per_step[step] = per_step.get(step, 0.0) + float(loss)
    res = {"name": spec["name"], "steps_done": len(per_step), "total_wall_s": round(total_s, 1)}
    if first in meter.marks and max_steps in meter.marks and max_steps > first:
        (ta, ka, ma), (tb, kb, mb) = meter.marks[first], meter.marks[max_steps]
        n, dt = max_steps - first, tb - ta
        res.update(
            timed_steps=n,
            timed_s=round(dt, 3),
            timed_tokens=kb - ka,
            timed_micro_batches=mb - ma,
            tokens_per_s=round((kb - ka) / dt, 1),
            s_per_step=round(dt / n, 4),
            tokens_per_step=round((kb - ka) / n, 1),
        )
    res["losses"] = [[s, round(v, 5)] for s, v in sorted(per_step.items())]
    res["gradient_checkpointing"] = getattr(meter, "gc", None)
    res["attn_implementation"] = getattr(meter, "attn", None)
    if cuda:
        res["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        res["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    Path(spec["result"]).write_text(json.dumps(res))


def profiler_callback(spec: dict, TrainerCallback, cuda: bool):
    """torch.profiler over two optimizer steps after the warm-up; the table goes to spec['profile']."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    class Prof(TrainerCallback):
        def __init__(self):
            self.p, self.first = None, spec["warmup"] + 1

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step + 1 == self.first:
                self.p = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self.p.__enter__()

        def on_step_end(self, args, state, control, **kw):
            if self.p is not None and state.global_step == self.first + 1:
                if cuda:
                    torch.cuda.synchronize()
                self.p.__exit__(None, None, None)
                table = self.p.key_averages().table(
                    sort_by="self_device_time_total", row_limit=40, max_name_column_width=90
                )
                Path(spec["profile"]).write_text(
                    f"profile of optimizer steps {self.first}-{self.first + 1}\n{table}"
                )
                self.p = None

    return Prof()


# --------------------------------------------------------------------------------------------- driver
def load_config(path: str) -> dict:
    """A plain LLaMA-Factory YAML, or one of our recipes resolved exactly as the entrypoint resolves it."""
    cfg = yaml.safe_load(Path(path).read_text())
    if "llamafactory" in cfg:  # training_image/llmft_train/recipes/<name>.yaml
        sys.path.insert(0, str(ENTRYPOINT_DIR))
        import os

        from llmft_train.gpu import detect_gpu_memory_gib
        from llmft_train.recipes import (
            RunInputs,
            memory_plan,
            parse_hyperparameters,
            parse_recipe,
            resolve_llamafactory_config,
        )

        name = Path(path).stem
        recipe = parse_recipe(name, cfg)
        settings = parse_hyperparameters({"recipe": name}, {name: recipe})
        # The entrypoint's own GPU reading and memory plan (memory_tiers / batch_sizing=auto), as in a job.
        inputs = RunInputs(
            model_path="(bench)",
            dataset_dir="(bench)",
            has_validation=False,
            output_dir="(bench)",
            resume_from=None,
            world_size=1,
            has_gpu=True,
            gpu_memory_gib=detect_gpu_memory_gib(os.environ, 1),
        )
        plan = memory_plan(settings, inputs)
        print(
            f"[bench] {name}: memory plan {plan.describe() if plan else 'none (recipe values)'}", flush=True
        )
        cfg = resolve_llamafactory_config(settings, inputs)
    return {k: v for k, v in cfg.items() if k not in ("deepspeed", "fsdp", "fsdp_config")}


def run_one(a, spec_str: str, model_dir: Path, data_dir: Path) -> dict:
    work, out = Path(a.work), Path(a.out)
    name, cfg_path, over, ctl = parse_spec(spec_str)
    args = load_config(cfg_path)
    args.update(over)
    args.update(
        model_name_or_path=str(model_dir),
        dataset="bench_alpaca",
        dataset_dir=str(data_dir),
        template="llama3",
        output_dir=str(work / "out" / name),
        max_samples=a.rows,
        max_steps=int(ctl.get("steps", a.steps)),
        save_strategy="no",
        report_to="none",
        plot_loss=False,
        logging_steps=5,
        overwrite_output_dir=True,
    )
    args.pop("save_steps", None)
    if a.tiny:  # CPU smoke test: fp32, short packs, one preprocessing process; figures never reported
        args.update(bf16=False, enable_liger_kernel=False, cutoff_len=256, per_device_train_batch_size=1)
        args.update(gradient_accumulation_steps=2, preprocessing_num_workers=None)
        args.pop("quantization_bit", None)
    # Rows with the same data keys share one tokenized copy: the first row saves it, the rest load it.
    data_key = json.dumps({k: args.get(k) for k in DATA_KEYS}, sort_keys=True)
    args["tokenized_path"] = str(work / "tokenized" / hashlib.sha1(data_key.encode()).hexdigest()[:12])
    spec = {
        "name": name,
        "args": args,
        "warmup": int(ctl.get("warmup", a.warmup)),
        "patches": patch_names(ctl),
        "result": str(work / f"{name}.result.json"),
    }
    if ctl.get("profile"):
        spec["profile"] = str(out / f"profile_{name}.txt")
    spec_path = work / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    print(f"[bench] === {name}: {cfg_path} overrides={over} controls={ctl} ===", flush=True)
    print(yaml.safe_dump(args, sort_keys=False), flush=True)
    log = work / f"{name}.log"
    t = time.perf_counter()
    Path(spec["result"]).unlink(missing_ok=True)
    try:
        with open(log, "w") as fh:
            rc = subprocess.run(
                [sys.executable, __file__, "child", str(spec_path)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=a.run_timeout,
            ).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    res = json.loads(Path(spec["result"]).read_text()) if rc == 0 else {"name": name, "rc": rc}
    if rc != 0:
        print("\n".join(log.read_text().splitlines()[-25:]), flush=True)
    with open(out / "runs.log", "a") as fh:
        fh.write(f"\n\n######## {name} ({cfg_path}, overrides {over}, controls {ctl}) ########\n")
        fh.write(log.read_text())
    res.update(config=cfg_path, overrides=over, controls=ctl, wall_s=round(time.perf_counter() - t, 1))
    return res


def judge(res: dict, rows: list[dict], floor: float) -> None:
    """Adds the parity verdict against the row named by ref= (the same data, seed and order)."""
    if "losses" not in res:
        res["parity"] = "FAIL: the run did not finish"
        return
    ref_name = res["controls"].get("ref")
    ref = next((r for r in rows if r["name"] == ref_name), None)
    if ref_name and (ref is None or "losses" not in ref):
        res["parity"] = f"FAIL: reference row {ref_name!r} has no losses"
        return
    tol = TOLERANCES[res["controls"].get("tol", "exact")]
    v = parity_verdict(res["losses"], ref["losses"] if ref else None, tol, floor)
    res["parity"], res["parity_ok"], res["parity_max_rel_diff"] = v.text, v.ok, v.max_rel_diff


def run_all(a) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = work / "model", work / "data"
    shape = TINY_SHAPE if a.tiny else LLAMA3_8B_SHAPE
    t = time.perf_counter()
    if not (model_dir / "config.json").exists():
        model_dir.mkdir(parents=True, exist_ok=True)
        build_model(model_dir, shape, "cpu" if a.tiny else "cuda")
        build_tokenizer(model_dir)
    stats = build_data(data_dir, a.rows)
    shutil.rmtree(work / "tokenized", ignore_errors=True)  # tokenized copies of an earlier call's data
    floor = stats["loss_floor"]
    print(f"[bench] assets ready in {time.perf_counter() - t:.1f}s; data {stats}", flush=True)
    n_all, n_mm = matmul_params(shape)
    for s in a.run:
        parse_spec(s)  # a typo in the last spec fails now, not after the first runs
    rows = []
    for s in a.run:
        res = run_one(a, s, model_dir, data_dir)
        if "tokens_per_s" in res:
            res["mfu"] = round(4 * n_mm * res["tokens_per_s"] / H100_BF16_DENSE_PEAK, 4)
        judge(res, rows, floor)
        rows.append(res)
        with open(out / "results.jsonl", "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(f"[bench] result {json.dumps(res)}", flush=True)
    print(f"\nN (all params) = {n_all:,}; N (matmul params, used in MFU) = {n_mm:,}")
    print(f"MFU = 4 * N * tokens_per_s / 989e12; task loss floor = {floor} nats/label token\n")
    print(table(rows))


def table(rows: list[dict]) -> str:
    stock = next((r.get("tokens_per_s") for r in rows if r["name"] == "stock"), None)
    by_name = {r["name"]: r for r in rows}
    head = ("config", "tok/s", "peak GiB", "MFU", "vs stock", "vs ref", "s/step", "loss 1st>last", "parity")
    lines = ["{:<24}{:>10}{:>10}{:>7}{:>10}{:>8}{:>8}{:>15}  {}".format(*head)]
    for r in rows:
        tps = r.get("tokens_per_s")
        ref = by_name.get(r.get("controls", {}).get("ref"), {}).get("tokens_per_s")
        loss = r.get("losses") or [[0, float("nan")]]
        cells = (
            r["name"],
            tps or "FAIL",
            r.get("peak_reserved_gib", "-"),
            f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-",
            f"{tps / stock:.2f}x" if tps and stock else "-",
            f"{tps / ref:.3f}" if tps and ref else "-",
            r.get("s_per_step", "-"),
            f"{loss[0][1]:.2f}>{loss[-1][1]:.2f}",
            r.get("parity", "-"),
        )
        lines.append("{:<24}{:>10}{:>10}{:>7}{:>10}{:>8}{:>8}{:>15}  {}".format(*cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child")
    c.add_argument("spec")
    t = sub.add_parser("table", help="print the table of a results.jsonl")
    t.add_argument("results")
    r = sub.add_parser("all")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/bench")
    r.add_argument("--run", action="append", required=True)
    r.add_argument("--rows", type=int, default=1500)
    r.add_argument("--steps", type=int, default=20)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--run-timeout", type=int, default=420)
    r.add_argument("--tiny", action="store_true", help="CPU smoke test with a tiny model")
    a = ap.parse_args()
    if a.cmd == "child":
        child(a.spec)
    elif a.cmd == "table":
        print(table([json.loads(line) for line in Path(a.results).read_text().splitlines() if line.strip()]))
    else:
        run_all(a)


if __name__ == "__main__":
    main()
