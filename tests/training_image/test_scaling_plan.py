"""The scaling harness's pure parts (benchmarks/scaling.py): the grid, what applies, the global batch, reading
the entrypoint's progress lines, efficiency, parity, the table; and the bench-only memory recorder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llmft_train.progress import format_train_line

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import scaling  # noqa: E402

FLOOR = 2.77
Q = frozenset({"qlora_4bit"})


def test_the_quantized_recipe_is_read_from_the_recipe_files():
    assert scaling.quantized_recipes() == Q


def names(rows):
    return [r.name for r in rows]


def test_gpu_grid_puts_each_recipes_one_gpu_reference_first_and_runs_every_mode():
    rows = scaling.plan_rows(
        list(scaling.RECIPES), list(scaling.MODES), [1, 2], ["single", "two_host"], cpu=False, quantized=Q
    )
    assert len(rows) == 3 * (1 + 2 * 4)
    lora = [r for r in rows if r.recipe == "lora"]
    assert names(lora) == [
        "lora/1gpu",
        "lora/ddp/2gpu",
        "lora/deepspeed_zero2/2gpu",
        "lora/deepspeed_zero3/2gpu",
        "lora/fsdp/2gpu",
        "lora/ddp/2x1gpu",
        "lora/deepspeed_zero2/2x1gpu",
        "lora/deepspeed_zero3/2x1gpu",
        "lora/fsdp/2x1gpu",
    ]
    # On GPUs nothing is ruled out beforehand, QLoRA with ZeRO-3 and FSDP included (LLaMA-Factory has it).
    assert [r.skip for r in rows] == [None] * len(rows)
    one, *others = lora
    assert (one.mode, one.gpus, one.hosts, one.ref) == (None, 1, 1, None)
    assert {r.ref for r in others} == {"lora/1gpu"}
    assert [(r.gpus, r.hosts) for r in others] == [(2, 1)] * 4 + [(2, 2)] * 4
    tolerances = {r.mode: r.tol for r in rows}
    assert tolerances == {
        None: "exact",
        "ddp": "exact",
        "deepspeed_zero2": "reduced",
        "deepspeed_zero3": "reduced",
        "fsdp": "reduced",
    }


def test_cpu_grid_runs_one_gpu_rows_and_ddp_across_two_loopback_hosts_only():
    rows = {
        r.name: r
        for r in scaling.plan_rows(
            ["lora", "qlora_4bit"],
            ["ddp", "fsdp", "deepspeed_zero3"],
            [1, 2],
            ["single", "two_host"],
            cpu=True,
            quantized=Q,
        )
    }
    runs = sorted(name for name, r in rows.items() if not r.skip)
    assert runs == ["lora/1gpu", "lora/ddp/2x1gpu"]
    assert rows["lora/ddp/2gpu"].skip == "a host without GPUs runs one process; use the two-host layout"
    assert rows["lora/deepspeed_zero3/2x1gpu"].skip.startswith("DeepSpeed is not in the CPU test environment")
    assert rows["lora/fsdp/2x1gpu"].skip.startswith("FSDP's bf16 mixed precision")
    assert rows["qlora_4bit/1gpu"].skip.startswith("bitsandbytes 4-bit needs a CUDA GPU")


def test_two_hosts_need_an_even_gpu_count():
    rows = scaling.plan_rows(["lora"], ["ddp"], [1, 3, 4], ["two_host"], cpu=False, quantized=Q)
    assert [(r.name, r.skip) for r in rows] == [
        ("lora/1gpu", None),
        ("lora/ddp/2x1gpu", "two hosts need an even number of GPUs"),
        ("lora/ddp/2x2gpu", None),
    ]


@pytest.mark.parametrize(
    ("recipe_accumulation", "gpu_counts", "expected"),
    [(1, [1, 2], 2), (16, [1, 2, 4], 16), (2, [1, 2, 4, 8], 8), (3, [1, 2], 6), (4, [1], 4)],
)
def test_every_gpu_count_runs_the_same_global_batch(recipe_accumulation, gpu_counts, expected):
    one = scaling.accumulation_at_one_gpu(recipe_accumulation, gpu_counts)
    assert one == expected
    for gpus in gpu_counts:
        row = scaling.Row("r", "lora", "ddp", gpus, 1, None, "exact")
        accumulation = int(scaling.hyperparameters(row, one, 10, {})["gradient_accumulation_steps"])
        assert accumulation * gpus == one  # micro-batches per optimizer step, all ranks together


def test_hyperparameters_are_sagemaker_strings_and_the_global_batch_beats_a_set_accumulation():
    row = scaling.Row("lora/zero3", "lora", "deepspeed_zero3", 2, 1, "lora/1gpu", "reduced")
    row.overrides = {"learning_rate": 1e-2}
    sets = {"learning_rate": 1e-3, "gradient_accumulation_steps": 2, "packing": False}
    hp = scaling.hyperparameters(row, 4, 16, sets)
    assert hp == {
        "recipe": "lora",
        "template": "llama3",
        "max_steps": "16",
        "logging_steps": "1",
        "save_steps": "17",
        "learning_rate": "0.01",
        "gradient_accumulation_steps": "2",
        "packing": "false",
        "distributed": "deepspeed_zero3",
    }
    one = scaling.Row("lora/1gpu", "lora", None, 1, 1, None, "exact")
    assert "distributed" not in scaling.hyperparameters(one, 4, 16, {})


def test_sets_apply_to_every_recipe_or_to_the_one_named():
    sets = scaling.parse_sets(["learning_rate=1.0e-3", "full_sft:learning_rate=1.0e-5,packing=true"])
    assert scaling.sets_for("lora", sets) == {"learning_rate": 1e-3}
    assert scaling.sets_for("full_sft", sets) == {"learning_rate": 1e-5, "packing": True}
    with pytest.raises(ValueError, match="unknown recipe 'lorax'"):
        scaling.parse_sets(["lorax:learning_rate=1.0"])


def test_extra_rows_are_judged_against_their_recipes_one_gpu_row():
    row = scaling.parse_extra("lora/lr|lora|ddp|2|two_host|learning_rate=1.0e-2", cpu=True, quantized=Q)
    assert (row.name, row.recipe, row.mode, row.gpus, row.hosts, row.ref, row.tol, row.skip) == (
        "lora/lr",
        "lora",
        "ddp",
        2,
        2,
        "lora/1gpu",
        "exact",
        None,
    )
    assert row.overrides == {"learning_rate": 1e-2}
    assert scaling.parse_extra("x|full_sft|-|1|single", cpu=True, quantized=Q).mode is None
    with pytest.raises(ValueError, match="unknown layout"):
        scaling.parse_extra("x|lora|ddp|2|three_host", cpu=False, quantized=Q)
    with pytest.raises(ValueError, match="expected NAME"):
        scaling.parse_extra("x|lora|ddp|two|single", cpu=False, quantized=Q)


def test_a_row_whose_reference_does_not_run_or_a_repeated_name_is_refused():
    grid = scaling.plan_rows(["lora"], ["ddp"], [1, 2], ["single"], cpu=False, quantized=Q)
    scaling.check_rows(grid)
    with pytest.raises(ValueError, match="reference 'full_sft/1gpu' does not run"):
        scaling.check_rows(grid + [scaling.parse_extra("f|full_sft|ddp|2|single", cpu=False, quantized=Q)])
    with pytest.raises(ValueError, match="two rows are named 'lora/1gpu'"):
        scaling.check_rows(grid + [scaling.parse_extra("lora/1gpu|lora|-|1|single", cpu=False, quantized=Q)])
    with pytest.raises(ValueError, match="unknown mode"):
        scaling.check_grid(["lora"], ["zero3"], [1, 2], ["single"])


def progress_text(rates: list[float]) -> str:
    lines = ["llmft recipe=lora world_size=2 resume_from=None"]
    for step, rate in enumerate(rates, start=1):
        lines.append(format_train_line(step, 12.0 - step / 10, 1e-3, step / 10, rate))
    return "\n".join(lines + ["llmft final step=4 train_loss=11.7500 train_runtime=9.0"])


def test_tokens_per_second_is_timed_tokens_over_their_time_not_a_mean_of_rates():
    progress = scaling.progress_lines(progress_text([10.0, 100.0, 150.0, 100.0]))
    assert [s for s, _ in progress] == [1, 2, 3, 4]
    assert progress[1][1]["train:loss"] == pytest.approx(11.8)
    history = [
        {"loss": 1.0, "step": s, "num_input_tokens_seen": n} for s, n in [(1, 100), (2, 300), (3, 600)]
    ]
    history += [{"loss": 1.0, "step": 4, "num_input_tokens_seen": 1000}, {"train_loss": 1.0, "step": 4}]
    cumulative = scaling.tokens_by_step(history)
    assert cumulative == {1: 100, 2: 300, 3: 600, 4: 1000}
    # Steps 2-4 after one warm-up step: 200 + 300 + 400 tokens in 2 + 2 + 4 seconds.
    assert scaling.window(progress, cumulative, warmup=1) == {
        "timed_steps": 3,
        "timed_tokens": 900,
        "timed_s": 8.0,
    }
    assert scaling.window(progress, cumulative, warmup=4) is None
    assert scaling.window(progress, {1: 100, 2: 300}, warmup=1) is None, "a step without its token count"


def test_efficiency_and_nvidia_smi_lines():
    assert scaling.efficiency(4500.0, 5000.0) == 0.9
    assert scaling.efficiency(None, 5000.0) is None and scaling.efficiency(4500.0, None) is None
    assert scaling.parse_smi("1, 2048") == (1, 2.0)
    assert scaling.parse_smi("[N/A]") is None
    assert scaling.gpu_groups(scaling.Row("r", "lora", "ddp", 4, 2, None, "exact")) == [[0, 1], [2, 3]]
    assert scaling.gpu_groups(scaling.Row("r", "lora", "ddp", 4, 1, None, "exact")) == [[0, 1, 2, 3]]


def result(name, losses, per_gpu, ref="lora/1gpu", tol=0.02):
    return {"name": name, "ref": ref, "tol_value": tol, "losses": losses, "tokens_per_s_per_gpu": per_gpu}


CURVE = [[1, 12.5], [2, 12.0], [3, 10.0]]


def test_judge_compares_with_the_one_gpu_row():
    ref = result("lora/1gpu", CURVE, 1000.0, ref=None)
    scaling.judge(ref, None, FLOOR)
    assert ref["parity"] == "no reference row; above the task floor" and ref["efficiency"] is None
    same = result("lora/ddp/2gpu", [[1, 12.5], [2, 12.01], [3, 10.02]], 930.0)
    scaling.judge(same, ref, FLOOR)
    assert same["parity_ok"] and same["efficiency"] == 0.93
    apart = result("lora/fsdp/2gpu", [[1, 12.5], [2, 12.0], [3, 11.0]], 500.0, tol=0.05)
    scaling.judge(apart, ref, FLOOR)
    assert not apart["parity_ok"] and apart["parity"].startswith("FAIL: parts from the reference by 10.00%")
    orphan = result("lora/ddp/2gpu", CURVE, 900.0)
    scaling.judge(orphan, {"name": "lora/1gpu"}, FLOOR)
    assert orphan["parity"] == "FAIL: reference row 'lora/1gpu' has no losses" and not orphan["parity_ok"]
    empty = result("lora/ddp/2gpu", [], None)
    scaling.judge(empty, ref, FLOOR)
    assert empty["parity"] == "FAIL: no losses recorded"


def test_table_shows_measured_failed_and_skipped_rows():
    ok = {
        "name": "lora/ddp/2gpu",
        "gpus": 2,
        "hosts": 1,
        "config": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1},
        "tokens_per_s": 20000.0,
        "tokens_per_s_per_gpu": 10000.0,
        "efficiency": 0.9123,
        "peak_reserved_gib": 60.5,
        "smi_peak_gib": 62.0,
        "losses": CURVE,
        "parity": "pass: within 0.01% of the reference (<= 2%)",
    }
    failed = {
        "name": "full_sft/1gpu",
        "gpus": 1,
        "hosts": 1,
        "failure": "OutOfMemoryError: CUDA out of memory",
    }
    skipped = {"name": "qlora_4bit/1gpu", "gpus": 1, "hosts": 1, "skipped": "needs a GPU"}
    lines = scaling.table([ok, failed, skipped]).splitlines()
    assert lines[2] == (
        "| lora/ddp/2gpu | 1 x 2 | 4 x 1 x 2 | 20,000.0 | 10,000.0 | 91.2% | 60.5 | 62.0 | 12.500 -> 10.000 "
        "| pass: within 0.01% of the reference (<= 2%) |"
    )
    assert lines[3].endswith("| - | FAIL: OutOfMemoryError: CUDA out of memory |")
    assert lines[4].endswith("| skipped: needs a GPU |")


def test_memory_recorder_writes_one_file_per_training_worker_and_chains_the_shadowed_sitecustomize(tmp_path):
    fake = tmp_path / "pkg" / "llmft_train"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "worker.py").write_text("print('worker ran')\n")
    other = tmp_path / "other_site"
    other.mkdir()
    (other / "sitecustomize.py").write_text(f"open({str(tmp_path / 'chained')!r}, 'a').write('x')\n")
    mem = tmp_path / "mem"
    path = os.pathsep.join([str(scaling.SITE_DIR), str(tmp_path / "pkg"), str(other)])
    env = {**os.environ, "PYTHONPATH": path, scaling.MEM_ENV: str(mem), "RANK": "3", "GROUP_RANK": "1"}

    done = subprocess.run(
        [sys.executable, "-m", "llmft_train.worker", "train", "cfg.yaml"],
        env=env,
        cwd=tmp_path,  # `-m` puts the working folder first on sys.path
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout == "worker ran\n", done.stderr
    record = json.loads((mem / "rank3.json").read_text())
    assert (record["rank"], record["local_rank"], record["node_rank"]) == (3, 0, 1)
    assert record["max_rss_gib"] > 0 and "peak_reserved_gib" not in record, "no CUDA in this process"
    # Not a training worker (the launcher, torchrun, an export): nothing written.
    for argv in (["-m", "llmft_train.worker", "export", "cfg.yaml"], ["-c", "pass"]):
        subprocess.run(
            [sys.executable, *argv], env={**env, "RANK": "5"}, cwd=tmp_path, check=True, capture_output=True
        )
    assert sorted(p.name for p in mem.iterdir()) == ["rank3.json"]
    assert (tmp_path / "chained").read_text() == "xxx", "the shadowed sitecustomize did not run every time"
