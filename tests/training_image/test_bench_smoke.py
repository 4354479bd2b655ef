"""CPU smoke test of benchmarks/bench_lora.py: the tiny mode end to end, a reference row and a second row
judged against it. The figures are a tiny model's on a CPU and are never reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LORA = "training_image/llmft_train/recipes/lora.yaml"
STEPS = 3


def test_tiny_bench_measures_and_judges_two_rows(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "benchmarks/bench_lora.py", "all", "--tiny", "--work", str(tmp_path / "work")]
    command += ["--out", str(out), "--rows", "120", "--steps", str(STEPS), "--warmup", "1"]
    command += ["--run", f"default|{LORA}", "--run", f"gpumask|{LORA}||ref=default,patch=gpu_mask"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["HF_HOME"] = str(tmp_path / "hf")
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["default", "gpumask"]
    floor = json.loads((tmp_path / "work" / "data" / "stats.json").read_text())["loss_floor"]
    for r in rows:
        assert r["steps_done"] == STEPS and r["timed_steps"] == STEPS - 1
        assert r["tokens_per_s"] > 0 and r["timed_tokens"] > 0
        assert [s for s, _ in r["losses"]] == list(range(1, STEPS + 1))
        # A random model predicts about uniformly over the 128k vocabulary, far above the task's floor.
        assert all(floor < loss < 13 for _, loss in r["losses"])
    default, gpumask = rows
    assert default["parity_ok"] and default["parity"] == "no reference row; above the task floor"
    # The same mask built on the other side: the same losses, judged against the reference row.
    assert gpumask["parity_ok"], gpumask["parity"]
    assert gpumask["parity"].startswith("pass: within ")
    assert gpumask["parity_max_rel_diff"] < 1e-4
    table = done.stdout[done.stdout.index("config ") :]
    assert "gpumask" in table and "pass: within" in table and f"task loss floor = {floor}" in done.stdout
