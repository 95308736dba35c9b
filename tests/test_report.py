"""Metrics, intervals over seeds and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vrm.evaluate.metrics import brier, ece, nll, pair_correct
from vrm.report.aggregate import ScoreFile, compare_to_baseline, mean_ci95, paired_bootstrap, per_seed_metrics, summarize


def test_pair_correct_counts_ties_as_half():
    assert pair_correct(np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])).tolist() == [1.0, 0.5, 0.0]


def test_nll_and_brier_by_hand():
    p = np.array([0.8, 0.5])
    assert nll(p) == pytest.approx(-(np.log(0.8) + np.log(0.5)) / 2)
    assert brier(p) == pytest.approx((0.2**2 + 0.5**2) / 2)


def test_ece_perfectly_calibrated_is_zero():
    # 10 pairs at p = 0.7 of which 7 are right: the predicted side is right 70% of the time.
    p = np.array([0.7] * 7 + [0.3] * 3)
    assert ece(p) == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident():
    p = np.array([0.99] * 5 + [0.01] * 5)
    assert ece(p) == pytest.approx(0.49)


def test_mean_ci95_matches_t_interval():
    values = np.array([0.61, 0.63, 0.60, 0.65, 0.62])
    mean, low, high = mean_ci95(values)
    expected = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(expected)


def test_paired_bootstrap_detects_a_real_difference():
    rng = np.random.default_rng(0)
    baseline = (rng.random((5, 400)) < 0.6).astype(float)
    better = baseline.copy()
    flip = rng.random((5, 400)) < 0.15
    better[flip] = 1.0
    difference, low, high, p_value = paired_bootstrap(better, baseline, 2000, 0)
    assert difference > 0
    assert low > 0
    assert p_value < 0.01


def test_paired_bootstrap_no_difference():
    rng = np.random.default_rng(1)
    a = (rng.random((5, 400)) < 0.6).astype(float)
    difference, low, high, p_value = paired_bootstrap(a, a, 500, 0)
    assert difference == 0
    assert low <= 0 <= high
    assert p_value == 1.0


def _toy_scores(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    chosen = rng.normal(shift, 1.0, 6)
    rejected = rng.normal(0.0, 1.0, 6)
    return pd.DataFrame({
        "pair_id": [f"s:{i}" for i in range(6)],
        "reward_chosen": chosen,
        "reward_rejected": rejected,
        "p_chosen": 1 / (1 + np.exp(-(chosen - rejected))),
    })


def test_summary_rows_per_benchmark_and_method():
    pairs = pd.DataFrame({
        "pair_id": [f"s:{i}" for i in range(6)],
        "source": ["a", "a", "a", "b", "b", "b"],
        "aspect": ["x", "y", "x", "", "", ""],
        "subset": [""] * 6,
        "split": ["test"] * 6,
        "train_set": ["t", "t", "t", "", "", ""],
    })
    benchmarks = [{"name": "a/x", "source": "a", "aspect": "x"}, {"name": "b", "source": "b"}]
    files = [ScoreFile("t", m, s, _toy_scores(s, 1.0 if m == "vrm" else 0.0)) for m in ("bt", "vrm") for s in range(3)]
    per_seed = per_seed_metrics(pairs, files, benchmarks, bins=15)
    main = summarize(per_seed)
    assert set(main["benchmark"]) == {"in-distribution", "a/x", "b"}
    assert set(main["metric"]) >= {"accuracy", "nll", "ece", "brier"}
    row = main[(main["benchmark"] == "a/x") & (main["metric"] == "accuracy") & (main["method"] == "vrm")].iloc[0]
    assert row["n_pairs"] == 2
    assert row["n_seeds"] == 3
    expected = np.mean([pair_correct(*_toy_scores(s, 1.0).iloc[[0, 2]][["reward_chosen", "reward_rejected"]].to_numpy().T).mean() for s in range(3)])
    assert row["mean"] == pytest.approx(expected)
    comparisons = compare_to_baseline(pairs, files, benchmarks, "bt", 200, 0)
    assert set(comparisons["method"]) == {"vrm"}
    assert set(comparisons["benchmark"]) == {"in-distribution", "a/x", "b"}
