#!/usr/bin/env python3
"""Scaling across GPUs (issue 14): each recipe on one GPU and on N, under each distributed mode that applies.

One invocation (`all`) does:
  1. builds bench_lora.py's assets once: the random Llama-3-8B-shaped model (or the tiny one), its tokenizer
     and the learnable key/value task with its loss floor;
  2. plans the grid (`plan_rows`): per recipe, a one-GPU row (one process: the entrypoint adds no distributed
     keys, so no mode applies) and, per GPU count N > 1 and per mode that applies (`not_applicable`), a row
     on one host (torchrun across its N GPUs) and/or on two hosts (SageMaker's algo-1/algo-2, N/2 GPUs each);
  3. runs every row as a SageMaker job: per host an /opt/ml tree (LLMFT_OPT_ML) with hyperparameters.json
     (recipe, distributed, max_steps, logging_steps=1, gradient_accumulation_steps, ...), the model and train
     channels and resourceconfig.json, then the real `train` command, which plans torchrun itself. Two-host
     rows start both hosts' `train` at once, each with its own GPUs;
  4. measures, from what the entrypoint writes:
       tok/s      = tokens of the steps after the warm-up / their time. Per step, the tokens are the rise of
                    `num_input_tokens_seen` (summed over ranks) in trainer_state.json's log history, and the
                    time is those tokens / the step's `train:tokens_per_second` progress line (rank 0 clock);
       per GPU    = tok/s / world size; scaling efficiency = per-GPU tok/s / the recipe's one-GPU tok/s;
       peak GiB   = per rank, the CUDA caching allocator's peak (scaling_site/sitecustomize.py, written at the
                    worker's exit), and per GPU nvidia-smi's memory.used sampled every 0.5 s (context and NCCL
                    buffers included);
       losses     = every step's `train:loss` progress line (the mean over ranks, as the Trainer logs it),
                    judged against the one-GPU row with bench_lora.parity_verdict.
     Every row of a recipe trains on the same global batch: the one-GPU row accumulates lcm(recipe's
     accumulation, GPU counts) micro-batches a step and a row on W GPUs 1/W of that, so an optimizer step
     sees the same sequences in every row (the sampler deals consecutive micro-batches to the ranks).

Usage (see benchmarks/calls/scaling.sh for the device command):
  python benchmarks/scaling.py all --out OUT --recipes lora,full_sft --modes ddp,deepspeed_zero3 --gpus 1,2 \
      --layouts single,two_host --set lora:learning_rate=1.0e-3
  --extra 'NAME|RECIPE|MODE|GPUS|LAYOUT|key=value,...' adds a row judged against its recipe's one-GPU row.
  --cpu: the CPU smoke test (tiny model, DDP over gloo, two hosts on loopback); its figures are not reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lora as bench  # noqa: E402

sys.path.insert(0, str(bench.ENTRYPOINT_DIR))
from llmft_train.progress import parse_metrics  # noqa: E402

RECIPES = ("lora", "qlora_4bit", "full_sft")
MODES = ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
LAYOUTS = ("single", "two_host")
SITE_DIR = Path(__file__).resolve().parent / "scaling_site"
MEM_ENV = "LLMFT_SCALING_MEM_DIR"
# DDP all-reduces the fp32 gradients of LLaMA-Factory's fp32 trainable weights: the same sums in another
# order. DeepSpeed's bf16 engine (bf16 model, fp32 only in the optimizer's master copy) and FSDP's bf16 mixed
# precision (reduce_dtype bf16) accumulate or reduce gradients in bf16: lower precision.
TOLERANCE = {
    None: "exact",
    "ddp": "exact",
    "deepspeed_zero2": "reduced",
    "deepspeed_zero3": "reduced",
    "fsdp": "reduced",
}
# Small keys for the CPU smoke test (two cores): short packs, one preprocessing process, no loader workers.
CPU_SETS = {
    "cutoff_len": 128,
    "per_device_train_batch_size": 1,
    "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0,
}


# --------------------------------------------------------------------------------------------- pure parts
@dataclass
class Row:
    name: str
    recipe: str
    mode: str | None  # None: one process, the entrypoint adds no distributed keys
    gpus: int  # processes in the job (GPUs, or CPU processes on loopback hosts)
    hosts: int  # 1, or 2: SageMaker's algo-1/algo-2 layout, gpus / 2 on each
    ref: str | None  # the recipe's one-GPU row
    tol: str  # key of bench_lora.TOLERANCES
    overrides: dict = field(default_factory=dict)
    skip: str | None = None


def one_gpu_name(recipe: str) -> str:
    return f"{recipe}/1gpu"


def row_name(recipe: str, mode: str, gpus: int, hosts: int) -> str:
    return f"{recipe}/{mode}/{gpus}gpu" if hosts == 1 else f"{recipe}/{mode}/2x{gpus // 2}gpu"


def not_applicable(mode: str | None, gpus: int, hosts: int, *, cpu: bool, quantized: bool) -> str | None:
    """Why a row cannot run as planned, or None.

    On GPUs every recipe takes every mode: LLaMA-Factory 0.9.5 loads a bitsandbytes 4-bit model for ZeRO-3 and
    FSDP with bnb_4bit_quant_storage in the compute dtype (so the packed weights shard like bf16 tensors) and
    places it on each rank's GPU for DDP and ZeRO-2 (model/model_utils/quantization.py); it refuses only 8-bit
    with ZeRO-3/FSDP and pure_bf16 with ZeRO-3, which no recipe sets. What does not fit in memory fails and is
    reported as a result.
    """
    if hosts == 2 and gpus % 2:
        return "two hosts need an even number of GPUs"
    if not cpu:
        return None
    if quantized:
        return "bitsandbytes 4-bit needs a CUDA GPU; the entrypoint refuses the recipe on a CPU"
    if hosts == 1 and gpus > 1:
        return "a host without GPUs runs one process; use the two-host layout"
    if mode in ("deepspeed_zero2", "deepspeed_zero3"):
        return "DeepSpeed is not in the CPU test environment (the image has it)"
    if mode == "fsdp":
        return "FSDP's bf16 mixed precision and sharded loading are GPU paths; not run on the CPU"
    return None


def plan_rows(
    recipes: list[str],
    modes: list[str],
    gpu_counts: list[int],
    layouts: list[str],
    *,
    cpu: bool,
    quantized: frozenset[str],
) -> list[Row]:
    """Per recipe: its one-GPU row first (the reference), then every (N > 1, layout, mode)."""
    rows = []
    for recipe in recipes:
        q = recipe in quantized
        one = one_gpu_name(recipe)
        rows.append(Row(one, recipe, None, 1, 1, None, TOLERANCE[None]))
        rows[-1].skip = not_applicable(None, 1, 1, cpu=cpu, quantized=q)
        for gpus in sorted(set(g for g in gpu_counts if g > 1)):
            for layout in layouts:
                hosts = 1 if layout == "single" else 2
                for mode in modes:
                    row = Row(
                        row_name(recipe, mode, gpus, hosts), recipe, mode, gpus, hosts, one, TOLERANCE[mode]
                    )
                    row.skip = not_applicable(mode, gpus, hosts, cpu=cpu, quantized=q)
                    rows.append(row)
    return rows


def check_grid(recipes: list[str], modes: list[str], gpu_counts: list[int], layouts: list[str]) -> None:
    """Every name known and every GPU count a positive whole number; raises ValueError otherwise."""
    for what, given, known in (
        ("recipe", recipes, RECIPES),
        ("mode", modes, MODES),
        ("layout", layouts, LAYOUTS),
    ):
        unknown = [g for g in given if g not in known]
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(known)}")
    if not gpu_counts or any(g < 1 for g in gpu_counts):
        raise ValueError(f"GPU counts {gpu_counts} must be whole numbers from 1")


def check_rows(rows: list[Row]) -> None:
    """Names unique, and every row's reference a row that runs before it."""
    seen: dict[str, Row] = {}
    for row in rows:
        if row.name in seen:
            raise ValueError(f"two rows are named {row.name!r}")
        if row.ref and not row.skip and (row.ref not in seen or seen[row.ref].skip):
            raise ValueError(f"row {row.name!r}: its reference {row.ref!r} does not run (add the recipe)")
        seen[row.name] = row


def parse_extra(spec: str, *, cpu: bool, quantized: frozenset[str]) -> Row:
    """NAME|RECIPE|MODE|GPUS|LAYOUT[|key=value,...]; MODE '-' for one process. Judged against its recipe's
    one-GPU row, at the tolerance of its mode."""
    parts = spec.split("|")
    if len(parts) not in (5, 6) or not parts[3].isdigit():
        raise ValueError(f"--extra {spec!r}: expected NAME|RECIPE|MODE|GPUS|LAYOUT[|key=value,...]")
    name, recipe, mode, gpus, layout = parts[:5]
    mode = None if mode == "-" else mode
    check_grid([recipe], [mode] if mode else [], [int(gpus)], [layout])
    hosts = 1 if layout == "single" else 2
    row = Row(name, recipe, mode, int(gpus), hosts, one_gpu_name(recipe), TOLERANCE[mode])
    row.overrides = parse_sets([parts[5]])[None] if len(parts) == 6 else {}
    row.skip = not_applicable(mode, row.gpus, hosts, cpu=cpu, quantized=recipe in quantized)
    return row


def parse_sets(specs: list[str]) -> dict[str | None, dict]:
    """'[RECIPE:]key=value,...' -> {recipe or None (every recipe): {key: value}}; values read as YAML."""
    out: dict[str | None, dict] = {None: {}}
    for spec in specs:
        recipe, _, body = spec.partition(":") if re.match(r"^\w+:", spec) else ("", "", spec)
        if recipe and recipe not in RECIPES:
            raise ValueError(f"--set {spec!r}: unknown recipe {recipe!r}; allowed: {', '.join(RECIPES)}")
        for kv in filter(None, body.split(",")):
            key, value = kv.split("=", 1)
            out.setdefault(recipe or None, {})[key.strip()] = yaml.safe_load(value)
    return out


def sets_for(recipe: str, sets: dict[str | None, dict]) -> dict:
    return {**sets.get(None, {}), **sets.get(recipe, {})}


def accumulation_at_one_gpu(recipe_accumulation: int, gpu_counts: list[int]) -> int:
    """Micro-batches per step on one GPU such that every GPU count in the grid divides them: the same global
    batch on 1 and N GPUs (N GPUs accumulate 1/N of it each)."""
    return math.lcm(recipe_accumulation, *gpu_counts)


def hyperparameters(row: Row, accumulation_one: int, steps: int, sets: dict) -> dict[str, str]:
    """hyperparameters.json of the row's job, strings as SageMaker writes them."""
    hp = {
        "recipe": row.recipe,
        "template": "llama3",
        "max_steps": steps,
        "logging_steps": 1,
        "save_steps": steps + 1,  # only the final save
        **sets,
        "gradient_accumulation_steps": accumulation_one // row.gpus,
        **row.overrides,
    }
    if row.mode:
        hp["distributed"] = row.mode
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in hp.items()}


def progress_lines(text: str) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) of every `llmft step=` progress line."""
    out = []
    for line in text.splitlines():
        if line.startswith("llmft step="):
            out.append((int(line.split()[1].split("=", 1)[1]), parse_metrics(line)))
    return out


def tokens_by_step(log_history: list[dict]) -> dict[int, int]:
    """Cumulative input tokens (all ranks) at each logged training step, from trainer_state.json."""
    return {e["step"]: int(e["num_input_tokens_seen"]) for e in log_history if "loss" in e and "step" in e}


def window(progress: list, cumulative: dict[int, int], warmup: int) -> dict | None:
    """Tokens and time of the steps after `warmup`: per step, its tokens and tokens / its progress tok/s."""
    tokens = seconds = 0.0
    steps = 0
    previous = 0
    for step, metrics in sorted(progress):
        if step not in cumulative:
            return None
        done = cumulative[step] - previous
        previous = cumulative[step]
        if step > warmup:
            rate = metrics.get("train:tokens_per_second")
            if not rate:
                return None
            tokens, seconds, steps = tokens + done, seconds + done / rate, steps + 1
    if not steps:
        return None
    return {"timed_steps": steps, "timed_tokens": int(tokens), "timed_s": round(seconds, 3)}


def efficiency(per_gpu: float | None, one_gpu: float | None) -> float | None:
    if not per_gpu or not one_gpu:
        return None
    return round(per_gpu / one_gpu, 4)


def parse_smi(line: str) -> tuple[int, float] | None:
    """`nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits` line -> (index, GiB)."""
    try:
        index, mib = (part.strip() for part in line.split(","))
        return int(index), float(mib) / 1024
    except ValueError:
        return None


def gpu_groups(row: Row) -> list[list[int]]:
    """The GPU indices each host of the row uses: consecutive blocks of gpus / hosts."""
    per = row.gpus // row.hosts
    return [list(range(h * per, (h + 1) * per)) for h in range(row.hosts)]


def judge(res: dict, ref: dict | None, floor: float) -> None:
    """Loss parity against the recipe's one-GPU row, and scaling efficiency."""
    res["efficiency"] = efficiency(res.get("tokens_per_s_per_gpu"), (ref or {}).get("tokens_per_s_per_gpu"))
    if not res.get("losses"):
        res["parity"], res["parity_ok"] = "FAIL: no losses recorded", False
        return
    if res["ref"] and not (ref or {}).get("losses"):
        res["parity"], res["parity_ok"] = f"FAIL: reference row {res['ref']!r} has no losses", False
        return
    v = bench.parity_verdict(res["losses"], ref["losses"] if res["ref"] else None, res["tol_value"], floor)
    res["parity"], res["parity_ok"], res["parity_max_rel_diff"] = v.text, v.ok, v.max_rel_diff


def _cell(value, fmt="{}") -> str:
    return "-" if value is None else fmt.format(value)


def table(results: list[dict]) -> str:
    head = (
        "| row | hosts x GPUs | seq/step (bs x GA x ranks) | tok/s | tok/s per GPU | scaling eff. "
        "| peak GiB reserved (max rank) | nvidia-smi peak GiB | loss first -> last | parity |"
    )
    lines = [head, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in results:
        where = f"{r['hosts']} x {r['gpus'] // r['hosts']}"
        if r.get("skipped"):
            lines.append(f"| {r['name']} | {where} | - | - | - | - | - | - | - | skipped: {r['skipped']} |")
            continue
        c = r.get("config") or {}
        bs, ga = c.get("per_device_train_batch_size"), c.get("gradient_accumulation_steps")
        seq = f"{bs} x {ga} x {r['gpus']}" if bs and ga else "-"
        losses = r.get("losses") or []
        curve = f"{losses[0][1]:.3f} -> {losses[-1][1]:.3f}" if losses else "-"
        verdict = r.get("parity", "-") if not r.get("failure") else f"FAIL: {r['failure']}"
        cells = (
            r["name"],
            where,
            seq,
            _cell(r.get("tokens_per_s"), "{:,.1f}"),
            _cell(r.get("tokens_per_s_per_gpu"), "{:,.1f}"),
            _cell(r.get("efficiency"), "{:.1%}"),
            _cell(r.get("peak_reserved_gib")),
            _cell(r.get("smi_peak_gib")),
            curve,
            verdict.replace("|", "/"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- acting parts
def quantized_recipes() -> frozenset[str]:
    """The recipes that load the base model quantized, read from the recipe files."""
    from llmft_train.recipes import load_recipes

    return frozenset(name for name, recipe in load_recipes().items() if recipe.quantized)


def recipe_shape(recipe: str, sets: dict, cpu: bool, gpu_count: int) -> dict:
    """The recipe resolved by the entrypoint's own rules on one GPU of this machine (memory plan included)."""
    from llmft_train.gpu import detect_gpu_memory_gib
    from llmft_train.recipes import (
        RunInputs,
        load_recipes,
        parse_hyperparameters,
        resolve_llamafactory_config,
    )

    recipes = load_recipes()
    settings = parse_hyperparameters({"recipe": recipe, **{k: str(v) for k, v in sets.items()}}, recipes)
    inputs = RunInputs(
        model_path="(scaling)",
        dataset_dir="(scaling)",
        has_validation=False,
        output_dir="(scaling)",
        resume_from=None,
        world_size=1,
        has_gpu=not cpu,
        gpu_memory_gib=None if cpu else detect_gpu_memory_gib(os.environ, gpu_count),
    )
    return resolve_llamafactory_config(settings, inputs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmiPeak:
    """Largest nvidia-smi memory.used per GPU while a row runs (0.5 s samples); nothing without nvidia-smi."""

    def __init__(self):
        self.peaks: dict[int, float] = {}
        self.proc = None
        if shutil.which("nvidia-smi"):
            query = [
                "nvidia-smi",
                "--query-gpu=index,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "500",
            ]
            self.proc = subprocess.Popen(query, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            got = parse_smi(line)
            if got:
                self.peaks[got[0]] = max(self.peaks.get(got[0], 0.0), got[1])

    def stop(self) -> dict[int, float]:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.thread.join(timeout=5)
        return {i: round(v, 2) for i, v in sorted(self.peaks.items())}


def write_tree(root: Path, hp: dict, assets: dict, host: str, hosts: list[str]) -> None:
    """/opt/ml as SageMaker lays it out: config files, the model and train channels (links to the assets)."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (root / "input" / "data").mkdir()
    (root / "input" / "data" / "model").symlink_to(assets["model"])
    (root / "input" / "data" / "train").symlink_to(assets["channel"])
    (config / "hyperparameters.json").write_text(json.dumps(hp))
    channels = {"train": {"TrainingInputMode": "File"}, "model": {"TrainingInputMode": "File"}}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    resource = {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}
    (config / "resourceconfig.json").write_text(json.dumps(resource))


def child_env(root: Path, mem_dir: Path, gpus: list[int], a, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HF_TOKEN"))}
    # This checkout's entrypoint, and the bench-only memory recorder ahead of everything.
    path = [str(SITE_DIR), str(bench.ENTRYPOINT_DIR), env.get("PYTHONPATH", "")]
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, path)),
        LLMFT_OPT_ML=str(root),
        MASTER_PORT=str(port),
        HF_HOME=str(Path(a.work) / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        CUDA_VISIBLE_DEVICES=",".join(map(str, gpus)),
        **{MEM_ENV: str(mem_dir)},
    )
    if a.cpu:
        env["LLMFT_GPUS_PER_NODE"] = "0"
    return env


def train_command(a) -> list[str]:
    if a.train:
        return [a.train]
    found = shutil.which("train", path=str(Path(sys.executable).parent))
    return (
        [found]
        if found
        else [sys.executable, "-c", "import sys; from llmft_train.cli import main; sys.exit(main())"]
    )


def signal_groups(procs: list, sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass


def launch(row: Row, hp: dict, a, run_dir: Path, assets: dict) -> tuple[list, list[Path]]:
    """Start every host's `train` at once; returns (return codes, host roots)."""
    names = a.hosts.split(",")[: row.hosts] if row.hosts > 1 else ["algo-1"]
    port = free_port()
    procs, roots, logs = [], [], []
    for h, gpus in enumerate(gpu_groups(row)):
        root = run_dir / f"algo-{h + 1}"
        write_tree(root, hp, assets, names[h], names)
        log = open(run_dir / f"algo-{h + 1}.log", "w")  # noqa: SIM115 - closed below
        env = child_env(root, run_dir / "mem", [] if a.cpu else gpus, a, port)
        procs.append(
            subprocess.Popen(
                train_command(a), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        roots.append(root)
        logs.append(log)
    deadline, failed_at, stop_at, killed = time.monotonic() + a.run_timeout, None, None, False
    try:
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                failed_at = now  # a peer left: the others would wait for it until NCCL's timeout
            if stop_at is None and (now > deadline or (failed_at is not None and now > failed_at + 60)):
                # SIGTERM first: torchrun then stops the workers, which run in sessions of their own.
                stop_at = now
                signal_groups(procs, signal.SIGTERM)
            if stop_at is not None and not killed and now > stop_at + 30:
                killed = True
                signal_groups(procs, signal.SIGKILL)
            time.sleep(0.5)
    except BaseException:  # the call's own timeout stopped the harness: stop the jobs it started too
        signal_groups(procs, signal.SIGTERM)
        end = time.monotonic() + 20
        while any(p.poll() is None for p in procs) and time.monotonic() < end:
            time.sleep(0.5)
        signal_groups(procs, signal.SIGKILL)
        raise
    finally:
        for log in logs:
            log.close()
    codes = [p.returncode for p in procs]
    return [f"{c} (stopped: timeout or a failed peer)" if stop_at and c else c for c in codes], roots


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def row_identity(row: Row) -> dict:
    """What names a row in results.jsonl, measured or skipped."""
    return {"name": row.name, "recipe": row.recipe, "mode": row.mode, "gpus": row.gpus, "hosts": row.hosts}


def measure(row: Row, a, assets: dict, accumulation_one: int, sets: dict) -> dict:
    run_dir = Path(a.work) / "runs" / row.name.replace("/", "_")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    hp = hyperparameters(row, accumulation_one, a.steps, sets)
    print(f"[scaling] === {row.name}: hyperparameters {hp}", flush=True)
    smi = SmiPeak()
    t = time.perf_counter()
    codes, roots = launch(row, hp, a, run_dir, assets)
    wall = round(time.perf_counter() - t, 1)
    smi_peaks = smi.stop()
    res = {
        **row_identity(row),
        "ref": row.ref,
        "tol": row.tol,
        "tol_value": bench.TOLERANCES[row.tol],
        "hyperparameters": hp,
        "return_codes": codes,
        "wall_s": wall,
    }
    log0 = (run_dir / "algo-1.log").read_text(errors="replace")
    out_logs = Path(a.out) / "logs"
    out_logs.mkdir(parents=True, exist_ok=True)
    for h in range(len(roots)):
        shutil.copy(
            run_dir / f"algo-{h + 1}.log", out_logs / f"{row.name.replace('/', '_')}.algo-{h + 1}.log"
        )
    failures = [
        (root / "output" / "failure").read_text().strip()
        for root in roots
        if (root / "output" / "failure").is_file()
    ]
    if failures or any(c != 0 for c in codes):
        res["failure"] = failures[0] if failures else f"return codes {codes}"
    world = re.search(r"^llmft recipe=\S+ world_size=(\d+)", log0, re.M)
    res["world_size"] = int(world.group(1)) if world else None
    for key, pattern in (
        ("speedups", r"^llmft speedups: (.*)$"),
        ("memory_plan", r"^llmft memory plan (.*)$"),
    ):
        found = re.search(pattern, log0, re.M)
        res[key] = found.group(1) if found else None
    resolved = roots[0] / "work" / "node-0" / "llamafactory_config.yaml"
    c = yaml.safe_load(resolved.read_text()) if resolved.is_file() else {}
    keys = ("per_device_train_batch_size", "gradient_accumulation_steps", "disable_gradient_checkpointing")
    res["config"] = {k: c.get(k) for k in (*keys, "bf16", "deepspeed", "fsdp") if k in c}
    res["model_written"] = (roots[0] / "model" / "metrics.json").is_file()
    progress = progress_lines(log0)
    res["losses"] = [[s, m["train:loss"]] for s, m in progress if "train:loss" in m]
    state = read_json(roots[0] / "checkpoints" / "trainer_state.json", {})
    timed = window(progress, tokens_by_step(state.get("log_history", [])), a.warmup)
    if timed and res["world_size"]:
        res.update(timed)
        res["tokens_per_s"] = round(timed["timed_tokens"] / timed["timed_s"], 1)
        res["tokens_per_s_per_gpu"] = round(res["tokens_per_s"] / res["world_size"], 1)
    ranks = (
        sorted((read_json(p) for p in (run_dir / "mem").glob("rank*.json")), key=lambda m: m["rank"])
        if (run_dir / "mem").is_dir()
        else []
    )
    res["ranks"] = ranks
    reserved = [m["peak_reserved_gib"] for m in ranks if "peak_reserved_gib" in m]
    res["peak_reserved_gib"] = max(reserved) if reserved else None
    used = [smi_peaks[i] for g in gpu_groups(row) for i in g if i in smi_peaks] if not a.cpu else []
    res["smi_peak_gib"] = max(used) if used else None
    res["smi_peaks_gib"] = smi_peaks
    if not a.keep:  # the weights each job wrote (16 GB a full-SFT row) would fill the disk
        for root in roots:
            for sub in ("checkpoints", "model"):
                shutil.rmtree(root / sub, ignore_errors=True)
    return res


def build_assets(a) -> tuple[dict, dict]:
    """The model (built once per shape and kept in --work), the data and a train channel holding it."""
    assets = Path(a.work) / "assets"
    tiny = a.cpu or a.tiny
    model = assets / ("model-tiny" if tiny else "model-8b")
    if not (model / "config.json").exists():
        # In a process of its own: a CUDA context left in this one would sit on GPU 0 through every row.
        command = [sys.executable, __file__, "model", str(model), "tiny" if tiny else "8b"]
        subprocess.run(command + ["cpu" if a.cpu else "cuda"], check=True)
    stats = bench.build_data(assets / "data", a.rows)
    (assets / "channel").mkdir(exist_ok=True)
    shutil.copy(assets / "data" / "bench_alpaca.json", assets / "channel" / "train.json")
    return {"model": model, "channel": assets / "channel"}, stats


def run_all(a) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` ends the call: clean up in launch
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").unlink(missing_ok=True)
    sets = parse_sets(([",".join(f"{k}={v}" for k, v in CPU_SETS.items())] if a.cpu else []) + a.set)
    gpu_counts = sorted({1, *(int(g) for g in a.gpus.split(","))})
    grid = a.recipes.split(","), a.modes.split(","), gpu_counts, a.layouts.split(",")
    check_grid(*grid)
    q = quantized_recipes()
    rows = plan_rows(*grid, cpu=a.cpu, quantized=q) + [
        parse_extra(s, cpu=a.cpu, quantized=q) for s in a.extra
    ]
    check_rows(rows)  # a typo in the last row fails now, not after the first runs
    t = time.perf_counter()
    assets, stats = build_assets(a)
    floor = stats["loss_floor"]
    print(f"[scaling] assets ready in {time.perf_counter() - t:.1f}s; data {stats}", flush=True)
    accumulation = {}
    for recipe in dict.fromkeys(r.recipe for r in rows if not r.skip):
        shape = recipe_shape(recipe, sets_for(recipe, sets), a.cpu, max(gpu_counts))
        accumulation[recipe] = accumulation_at_one_gpu(shape["gradient_accumulation_steps"], gpu_counts)
        print(f"[scaling] {recipe}: {accumulation[recipe]} micro-batches a step on one GPU", flush=True)
    results: dict[str, dict] = {}
    for row in rows:
        if row.skip:
            res = {**row_identity(row), "skipped": row.skip}
        else:
            res = measure(row, a, assets, accumulation[row.recipe], sets_for(row.recipe, sets))
            judge(res, results.get(row.ref) if row.ref else None, floor)
        results[row.name] = res
        with open(out / "results.jsonl", "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(f"[scaling] result {json.dumps(res)}", flush=True)
    text = table(list(results.values()))
    (out / "table.md").write_text(text + "\n")
    print(f"\ntask loss floor = {floor} nats/label token; steps {a.steps}, warm-up {a.warmup}\n\n{text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="print the Markdown table of a results.jsonl")
    t.add_argument("results")
    r = sub.add_parser("all")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/scaling")
    r.add_argument("--recipes", default=",".join(RECIPES))
    r.add_argument("--modes", default=",".join(MODES))
    r.add_argument("--gpus", default="1,2", help="GPU counts; 1 (the reference) is always run")
    r.add_argument("--layouts", default="single", help="single (torchrun on one host) and/or two_host")
    r.add_argument(
        "--hosts", default="algo-1,algo-2", help="the two hosts' names (must resolve to this machine)"
    )
    r.add_argument("--set", action="append", default=[], help="[RECIPE:]key=value,... hyperparameters")
    r.add_argument(
        "--extra", action="append", default=[], help="NAME|RECIPE|MODE|GPUS|LAYOUT[|key=value,...]"
    )
    r.add_argument("--rows", type=int, default=1500)
    r.add_argument("--steps", type=int, default=16)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--run-timeout", type=int, default=420)
    r.add_argument("--train", help="the `train` command (default: next to this Python, else llmft_train.cli)")
    r.add_argument("--tiny", action="store_true", help="the tiny model (plumbing checks on GPUs)")
    r.add_argument("--cpu", action="store_true", help="CPU smoke test: tiny model, no GPU, small keys")
    r.add_argument("--keep", action="store_true", help="keep each job's checkpoints and model folder")
    m = sub.add_parser("model", help="build the random model and its tokenizer (run by `all`)")
    m.add_argument("dir")
    m.add_argument("shape", choices=("tiny", "8b"))
    m.add_argument("device")
    a = ap.parse_args()
    if a.cmd == "model":
        shape = bench.TINY_SHAPE if a.shape == "tiny" else bench.LLAMA3_8B_SHAPE
        Path(a.dir).mkdir(parents=True, exist_ok=True)
        bench.build_model(Path(a.dir), shape, a.device)
        bench.build_tokenizer(Path(a.dir))
    elif a.cmd == "table":
        print(table([json.loads(line) for line in Path(a.results).read_text().splitlines() if line.strip()]))
    else:
        run_all(a)


if __name__ == "__main__":
    main()
