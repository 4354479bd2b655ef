#!/usr/bin/env python3
"""Side-by-side LLaMA-Factory throughput benchmark: our shipped recipes vs LLaMA-Factory's stock LoRA example.

One invocation (`all`) does, on one GPU:
  1. builds a randomly initialised Llama-3-8B-shaped model (hidden 4096, 32 layers, 32 heads, 8 KV heads,
     intermediate 14336, vocab 128256) on the GPU and saves it as safetensors (no download);
  2. builds a local word-level tokenizer with Llama-3's 128000 + 256 special-token layout (every synthetic
     word is exactly one token, so row lengths in tokens are known);
  3. writes synthetic alpaca-style rows (instruction / optional input / output) with a long-tailed length mix;
  4. trains every requested config in its own subprocess through `llamafactory.train.tuner.run_exp` for a
     fixed number of optimizer steps and measures, after the warm-up steps:
       tokens/s  = non-padding input tokens of the timed steps / wall time of the timed steps
                   (tokens counted on every micro-batch the Trainer fetches: input_ids != pad id; the
                   pad token never occurs in the data; wall time between the ends of optimizer steps,
                   CUDA-synchronised, so data loading, collation, optimizer and logging are all inside)
       peak GiB  = torch.cuda.max_memory_reserved() over the whole run (model load included)
       MFU       = 4 * N * tokens/s / 989e12, N = base-model parameters used in a matmul per token
                   (all parameters minus the input embedding table; the LoRA adapters' own FLOPs, the
                   attention score/value FLOPs and gradient-checkpointing recomputation are NOT counted;
                   4 = forward 2 + input-gradient backward 2, no weight gradients for the frozen base;
                   989e12 = H100 SXM dense bf16 peak).

Usage (see benchmarks/run_h100.sh for the exact device command):
  python benchmarks/bench_lora.py all --out OUT --run 'stock|benchmarks/configs/stock_llama3_lora_sft.yaml' \
      --run 'default|training_image/llmft_train/recipes/lora.yaml' ...
  A run spec is NAME|CONFIG_YAML[|key=value,key=value][|steps=N,warmup=W[,profile=1]]; the key=values
  override the config (values parsed as YAML), used only for ablations, never for the rows that claim to be
  "what ships".
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
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
# keys that bench_lora.py sets on every config; everything else comes from the YAML as shipped
BENCH_OVERRIDES_DOC = (
    "model_name_or_path, dataset, dataset_dir, template=llama3, output_dir, max_samples, max_steps, "
    "save_strategy=no, report_to=none, plot_loss=false, logging_steps, overwrite_output_dir, "
    "(deepspeed/fsdp keys dropped: single-GPU run)"
)


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
    from tokenizers import Tokenizer, decoders, pre_tokenizers
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
    from tokenizers import AddedToken

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
        pad_token_id=128004,
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


def build_data(data_dir: Path, n_rows: int, seed: int = 1234) -> dict:
    """Alpaca-style rows; lengths in tokens (1 word = 1 token) drawn from log-normals with a long tail.

    instruction ~ LogN(median 18, sigma 0.6) in [3, 256]
    input       ~ present in 40% of rows, LogN(median 40, sigma 1.0) in [1, 768]
    output      ~ LogN(median 160, sigma 0.9) in [1, 1536]
    Rows are capped so that the templated sequence stays under 2000 tokens (no truncation / dropping
    differences between packed and unpacked configs).
    """
    rng = random.Random(seed)
    rows, totals = [], []
    for _ in range(n_rows):
        ni = _lognormal_int(rng, 18, 0.6, 3, 256)
        nin = _lognormal_int(rng, 40, 1.0, 1, 768) if rng.random() < 0.4 else 0
        no = _lognormal_int(rng, 160, 0.9, 1, 1536)
        no = min(no, 1980 - ni - nin)
        words = lambda n: " ".join(f"w{rng.randrange(N_WORDS)}" for _ in range(n))  # noqa: E731
        rows.append({"instruction": words(ni), "input": words(nin) if nin else "", "output": words(no)})
        totals.append(ni + nin + no + 12)  # + llama3 template tokens (bos, headers, eot)
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
def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import torch
    from transformers import Trainer, TrainerCallback

    counted = {"tokens": 0, "micro_batches": 0}
    pad_id = spec["pad_id"]
    orig = Trainer.get_batch_samples

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = orig(self, epoch_iterator, num_batches, device)
        for b in batch_samples:
            counted["tokens"] += int((b["input_ids"] != pad_id).sum())
            counted["micro_batches"] += 1
        return batch_samples, num_items

    Trainer.get_batch_samples = get_batch_samples
    cuda = torch.cuda.is_available()

    class Meter(TrainerCallback):
        def __init__(self):
            self.marks = []
            self.losses = []

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append((state.global_step, round(float(logs["loss"]), 4)))

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.marks.append(
                (state.global_step, time.perf_counter(), counted["tokens"], counted["micro_batches"])
            )

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.gc = bool(getattr(model, "is_gradient_checkpointing", False))
            self.attn = getattr(getattr(model, "config", None), "_attn_implementation", None)

    meter = Meter()
    callbacks = [meter]
    if spec.get(
        "profile"
    ):  # torch.profiler over two optimizer steps after the warm-up; table -> profile file

        class Prof(TrainerCallback):
            def __init__(self):
                self.p = None
                self.first = spec["warmup"] + 1

            def on_step_begin(self, args, state, control, **kw):
                if state.global_step + 1 == self.first:
                    from torch.profiler import ProfilerActivity, profile

                    self.p = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                    self.p.__enter__()

            def on_step_end(self, args, state, control, **kw):
                if self.p is not None and state.global_step == self.first + 1:
                    if cuda:
                        torch.cuda.synchronize()
                    self.p.__exit__(None, None, None)
                    ka = self.p.key_averages()
                    try:
                        table = ka.table(
                            sort_by="self_device_time_total", row_limit=40, max_name_column_width=90
                        )
                    except Exception:  # noqa: BLE001
                        table = ka.table(
                            sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90
                        )
                    Path(spec["profile"]).write_text(
                        f"profile of optimizer steps {self.first}-{self.first + 1}\n{table}"
                    )
                    self.p = None

        callbacks.append(Prof())
    from llamafactory.train.tuner import run_exp

    t0 = time.perf_counter()
    run_exp(spec["args"], callbacks=callbacks)
    total_s = time.perf_counter() - t0
    w = spec["warmup"]
    marks = meter.marks
    res = {"name": spec["name"], "steps_done": len(marks), "total_wall_s": round(total_s, 1)}
    i0 = max(w, 1) - 1  # timed window: end of optimizer step max(w,1) -> end of the last step
    if len(marks) > i0 + 1:
        (_, ta, ka, ma), (_, tb, kb, mb) = marks[i0], marks[-1]
        n = len(marks) - 1 - i0
        dt = tb - ta
        res.update(
            timed_steps=n,
            timed_s=round(dt, 3),
            timed_tokens=kb - ka,
            timed_micro_batches=mb - ma,
            tokens_per_s=round((kb - ka) / dt, 1),
            s_per_step=round(dt / n, 4),
            tokens_per_step=round((kb - ka) / n, 1),
        )
    res["losses"] = meter.losses
    res["gradient_checkpointing"] = getattr(meter, "gc", None)
    res["attn_implementation"] = getattr(meter, "attn", None)
    if cuda:
        res["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        res["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    Path(spec["result"]).write_text(json.dumps(res))


# --------------------------------------------------------------------------------------------- driver
def load_config(path: str, work: Path) -> dict:
    """A plain LLaMA-Factory YAML, or one of our recipes resolved exactly as the entrypoint resolves it."""
    cfg = yaml.safe_load(Path(path).read_text())
    if "llamafactory" in cfg:  # training_image/llmft_train/recipes/<name>.yaml
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training_image"))
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


def parse_spec(s: str) -> tuple[str, str, dict, dict]:
    parts = s.split("|")
    name, cfg = parts[0], parts[1]
    over, ctl = {}, {}
    for part, dst in ((parts[2] if len(parts) > 2 else "", over), (parts[3] if len(parts) > 3 else "", ctl)):
        for kv in filter(None, part.split(",")):
            k, v = kv.split("=", 1)
            dst[k.strip()] = yaml.safe_load(v)
    return name, cfg, over, ctl


def run_all(a) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    model_dir, data_dir = work / "model", work / "data"
    shape = TINY_SHAPE if a.tiny else LLAMA3_8B_SHAPE
    device = "cpu" if a.tiny else "cuda"
    t = time.perf_counter()
    if not (model_dir / "config.json").exists():
        model_dir.mkdir(parents=True, exist_ok=True)
        build_model(model_dir, shape, device)
        build_tokenizer(model_dir)
    stats = build_data(data_dir, a.rows)
    print(f"[bench] assets ready in {time.perf_counter() - t:.1f}s; data {stats}", flush=True)
    n_all, n_mm = matmul_params(shape)
    results_path = out / "results.jsonl"
    rows = []
    for s in a.run:
        name, cfg_path, over, ctl = parse_spec(s)
        args = load_config(cfg_path, work)
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
        if a.tiny:
            args.update(bf16=False, enable_liger_kernel=False)
            args.pop("quantization_bit", None)
        spec = {
            "name": name,
            "args": args,
            "warmup": int(ctl.get("warmup", a.warmup)),
            "pad_id": 128004,
            "result": str(work / f"{name}.result.json"),
        }
        if ctl.get("profile"):
            spec["profile"] = str(out / f"profile_{name}.txt")
        spec_path = work / f"{name}.spec.json"
        spec_path.write_text(json.dumps(spec))
        print(f"[bench] === {name}: {cfg_path} overrides={over} ===", flush=True)
        print(yaml.safe_dump(args, sort_keys=False), flush=True)
        log = work / f"{name}.log"
        t = time.perf_counter()
        with open(log, "w") as fh:
            p = subprocess.run(
                [sys.executable, __file__, "child", str(spec_path)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=a.run_timeout,
            )
        res = (
            json.loads(Path(spec["result"]).read_text())
            if p.returncode == 0
            else {"name": name, "rc": p.returncode}
        )
        if p.returncode != 0:
            tail = Path(log).read_text().splitlines()[-25:]
            print("\n".join(tail), flush=True)
        with open(out / "runs.log", "a") as fh:
            fh.write(f"\n\n######## {name} ({cfg_path}, overrides {over}) ########\n")
            fh.write(Path(log).read_text())
        res.update(config=cfg_path, overrides=over, wall_s=round(time.perf_counter() - t, 1))
        if "tokens_per_s" in res:
            res["mfu"] = round(4 * n_mm * res["tokens_per_s"] / H100_BF16_DENSE_PEAK, 4)
        rows.append(res)
        with open(results_path, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(f"[bench] result {json.dumps(res)}", flush=True)
    base = next((r.get("tokens_per_s") for r in rows if r["name"] == "stock"), None)
    print(f"\nN (all params) = {n_all:,}; N (matmul params, used in MFU) = {n_mm:,}")
    print("MFU = 4 * N * tokens_per_s / 989e12\n")
    head = ("config", "tok/s", "peak GiB", "MFU", "vs stock", "s/step", "tok/step")
    print("{:<22}{:>10}{:>10}{:>8}{:>10}{:>9}{:>10}  GC".format(*head))
    for r in rows:
        tps = r.get("tokens_per_s")
        ratio = f"{tps / base:.2f}x" if tps and base else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        cells = (r["name"], tps or "FAIL", r.get("peak_reserved_gib", "-"), mfu, ratio)
        cells += (r.get("s_per_step", "-"), r.get("tokens_per_step", "-"), r.get("gradient_checkpointing"))
        print("{:<22}{:>10}{:>10}{:>8}{:>10}{:>9}{:>10}  {}".format(*cells))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child")
    c.add_argument("spec")
    r = sub.add_parser("all")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/bench")
    r.add_argument("--run", action="append", required=True)
    r.add_argument("--rows", type=int, default=4000)
    r.add_argument("--steps", type=int, default=20)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--run-timeout", type=int, default=420)
    r.add_argument("--tiny", action="store_true", help="CPU smoke test with a tiny model")
    a = ap.parse_args()
    if a.cmd == "child":
        child(a.spec)
    else:
        run_all(a)


if __name__ == "__main__":
    main()
