"""The benchmark's pure parts: loss-parity verdict, task loss floor, learnable data, run specs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_lora.py"
_spec = importlib.util.spec_from_file_location("bench_lora", BENCH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_lora"] = bench
_spec.loader.exec_module(bench)

FLOOR = 2.77
EXACT = bench.TOLERANCES["exact"]
BASE = [[1, 12.58], [2, 12.1], [3, 10.9], [4, 9.2], [5, 8.0]]


def scaled(curve: list, factors: dict) -> list:
    return [[s, v * factors.get(s, 1.0)] for s, v in curve]


def test_matching_curves_pass_and_report_the_largest_gap():
    verdict = bench.parity_verdict(scaled(BASE, {3: 1.004, 5: 0.991}), BASE, EXACT, FLOOR)
    assert verdict.ok
    assert verdict.max_rel_diff == pytest.approx(0.009)
    assert verdict.text == "pass: within 0.90% of the reference (<= 2%)"


def test_curves_that_part_fail_at_the_step_where_they_part_most():
    verdict = bench.parity_verdict(scaled(BASE, {4: 0.93, 5: 0.95}), BASE, EXACT, FLOOR)
    assert not verdict.ok
    assert verdict.max_rel_diff == pytest.approx(0.07)
    assert verdict.text == "FAIL: parts from the reference by 7.00% at step 4 (> 2%)"


def test_reduced_precision_band_is_looser_but_still_finite():
    drift = scaled(BASE, {5: 1.04})
    assert not bench.parity_verdict(drift, BASE, EXACT, FLOOR).ok
    assert bench.parity_verdict(drift, BASE, bench.TOLERANCES["reduced"], FLOOR).ok
    assert not bench.parity_verdict(scaled(BASE, {5: 1.06}), BASE, bench.TOLERANCES["reduced"], FLOOR).ok


def test_a_collapse_below_the_floor_fails_even_against_a_matching_reference():
    # Both curves agree, but a causal model with a per-row mask cannot get under the floor: a leak.
    leaky = [[1, 12.5], [2, 8.0], [3, 4.1], [4, 2.5], [5, 1.2]]
    verdict = bench.parity_verdict(leaky, leaky, EXACT, FLOOR)
    assert not verdict.ok
    assert verdict.text == "FAIL: loss 2.500 at step 4 is below the task floor 2.770 (mask leak)"
    # Without a reference row (the stock example) the floor still applies.
    assert not bench.parity_verdict(leaky, None, EXACT, FLOOR).ok
    # Within the margin just under the floor is not yet a leak.
    assert bench.parity_verdict([[1, FLOOR * 0.99]], None, EXACT, FLOOR).ok


def test_no_reference_row_checks_the_floor_only():
    verdict = bench.parity_verdict(BASE, None, EXACT, FLOOR)
    assert verdict.ok and verdict.max_rel_diff is None
    assert verdict.text == "no reference row; above the task floor"


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ([], "FAIL: no losses recorded"),
        ([[1, 12.5], [2, math.nan]], "FAIL: loss nan at step 2"),
        ([[1, 12.5], [2, math.inf]], "FAIL: loss inf at step 2"),
        (BASE[:4], "FAIL: steps differ from the reference row's"),
    ],
)
def test_missing_or_broken_curves_fail(losses, message):
    verdict = bench.parity_verdict(losses, BASE, EXACT, FLOOR)
    assert not verdict.ok and verdict.text == message


def test_loss_floor_is_the_keys_entropy_per_label_token():
    assert bench.loss_floor(10, 10, 256) == pytest.approx(math.log(256))
    assert bench.loss_floor(50, 101, 256) == pytest.approx(50 * math.log(256) / 101)


def test_build_data_answers_are_learnable_pairs_with_the_stated_floor(tmp_path):
    stats = bench.build_data(tmp_path, 200)
    rows = json.loads((tmp_path / "bench_alpaca.json").read_text())
    values = bench.task_values(1234)
    keys = labels = 0
    for row in rows:
        answer = [int(w[1:]) for w in row["output"].split()]
        pairs = answer[0::2], answer[1::2]
        assert all(0 <= k < bench.TASK_KEYS for k in pairs[0])
        # Every value is the fixed function of the key just before it.
        assert [values[k] for k in pairs[0][: len(pairs[1])]] == pairs[1]
        # Prompts never use task words, so only the answer carries the task.
        prompt = (row["instruction"] + " " + row["input"]).split()
        assert all(int(w[1:]) >= 2 * bench.TASK_KEYS for w in prompt)
        keys, labels = keys + len(pairs[0]), labels + len(answer) + 1
    assert stats["loss_floor"] == pytest.approx(bench.loss_floor(keys, labels), abs=1e-4)
    assert 2.5 < stats["loss_floor"] < math.log(bench.TASK_KEYS) / 2
    assert stats["max"] < 2048


def test_values_are_a_permutation_past_the_keys():
    values = bench.task_values(1234)
    assert sorted(values) == list(range(bench.TASK_KEYS, 2 * bench.TASK_KEYS))


def test_parse_spec_reads_overrides_and_controls():
    spec = "nocast|r/lora.yaml|pure_bf16=true,learning_rate=1.0e-3|steps=16,ref=default,tol=reduced,"
    name, cfg, over, ctl = bench.parse_spec(spec + "patch=no_input_cast+gpu_mask")
    assert (name, cfg) == ("nocast", "r/lora.yaml")
    assert over == {"pure_bf16": True, "learning_rate": 1e-3}
    assert ctl == {"steps": 16, "ref": "default", "tol": "reduced", "patch": "no_input_cast+gpu_mask"}
    assert bench.patch_names(ctl) == ["no_input_cast", "gpu_mask"]
    assert bench.patch_names({}) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x|c||tol=loose", "x: tol='loose'; allowed: exact, reduced"),
        ("x|c||patch=gpu_mask+turbo", "x: unknown patch ['turbo']; allowed: no_input_cast, gpu_mask"),
    ],
)
def test_parse_spec_rejects_unknown_tolerances_and_patches(spec, message):
    with pytest.raises(ValueError) as caught:
        bench.parse_spec(spec)
    assert str(caught.value).startswith(message)
