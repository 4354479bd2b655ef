"""CPU smoke test of benchmarks/scaling.py: the real `train` entrypoint on one process and as two SageMaker
hosts on loopback (DDP over gloo), measured and judged; and a row that trains differently (another learning
rate) must fail the parity check. A tiny model's figures on a CPU, never reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STEPS = 4
# full_sft: the tiny random model's loss falls a few percent in 4 steps only when every weight trains.
SETS = "full_sft:learning_rate=1.0e-2,gradient_accumulation_steps=2"
NEGATIVE = "full_sft/lr-1e-4|full_sft|-|1|single|learning_rate=1.0e-4"


def test_harness_measures_scaling_and_its_parity_check_can_fail(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "benchmarks/scaling.py", "all", "--cpu", "--work", str(tmp_path / "work")]
    command += ["--out", str(out), "--recipes", "full_sft", "--modes", "ddp,fsdp", "--gpus", "1,2"]
    command += ["--layouts", "single,two_host", "--hosts", "127.0.0.1,localhost", "--rows", "120"]
    command += ["--steps", str(STEPS), "--warmup", "1", "--set", SETS, "--extra", NEGATIVE]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert list(rows) == [
        "full_sft/1gpu",
        "full_sft/ddp/2gpu",
        "full_sft/fsdp/2gpu",
        "full_sft/ddp/2x1gpu",
        "full_sft/fsdp/2x1gpu",
        "full_sft/lr-1e-4",
    ]
    assert rows["full_sft/ddp/2gpu"]["skipped"].startswith("a host without GPUs runs one process")
    assert rows["full_sft/fsdp/2x1gpu"]["skipped"].startswith("FSDP's bf16 mixed precision")

    one, ddp, negative = rows["full_sft/1gpu"], rows["full_sft/ddp/2x1gpu"], rows["full_sft/lr-1e-4"]
    for r in (one, ddp, negative):
        assert "failure" not in r, r.get("failure")
        assert [s for s, _ in r["losses"]] == list(range(1, STEPS + 1))
        assert r["timed_steps"] == STEPS - 1 and r["tokens_per_s"] > 0
        assert r["tokens_per_s_per_gpu"] == round(r["tokens_per_s"] / r["world_size"], 1)
    assert (one["world_size"], ddp["world_size"]) == (1, 2)
    assert ddp["return_codes"] == [0, 0] and ddp["hyperparameters"]["distributed"] == "ddp"
    # The same global batch: 2 micro-batches a step on one process, 1 on each of two.
    assert (
        one["config"]["gradient_accumulation_steps"] == 2
        and ddp["config"]["gradient_accumulation_steps"] == 1
    )
    assert ddp["timed_tokens"] == one["timed_tokens"], "the two rows did not train on the same tokens"
    assert ddp["efficiency"] == round(ddp["tokens_per_s_per_gpu"] / one["tokens_per_s_per_gpu"], 4)
    assert one["efficiency"] is None

    # The reference learns, and data-parallel DDP reproduces it (fp32 on the CPU: the same sums reordered).
    assert one["losses"][-1][1] < 0.98 * one["losses"][0][1]
    assert one["parity"] == "no reference row; above the task floor"
    assert ddp["parity_ok"] and ddp["parity_max_rel_diff"] < 1e-3, ddp["parity"]
    # Another learning rate: the same first two steps (step 1 trains at rate 0 in the warm-up), then apart.
    assert negative["losses"][:2] == one["losses"][:2]
    assert not negative["parity_ok"]
    assert negative["parity"].startswith("FAIL: parts from the reference by "), negative["parity"]

    # Peak memory per rank from the bench-only recorder: no CUDA here, so resident memory only.
    assert [(m["rank"], m["node_rank"]) for m in ddp["ranks"]] == [(0, 0), (1, 1)]
    assert all(m["max_rss_gib"] > 0 and "peak_reserved_gib" not in m for m in ddp["ranks"])
    assert ddp["peak_reserved_gib"] is None and ddp["smi_peak_gib"] is None

    table = (out / "table.md").read_text()
    assert "| full_sft/ddp/2x1gpu | 2 x 1 | 1 x 1 x 2 |" in table
    assert "| FAIL: parts from the reference by " in table and "skipped: DeepSpeed" not in table
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "full_sft_1gpu.algo-1.log",
        "full_sft_ddp_2x1gpu.algo-1.log",
        "full_sft_ddp_2x1gpu.algo-2.log",
        "full_sft_lr-1e-4.algo-1.log",
    ]
