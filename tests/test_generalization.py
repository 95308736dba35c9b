"""Certificates on the synthetic task: every bound holds against the risk on 100,000 fresh pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vrm.generalization import certificate, gibbs_errors, gibbs_risk, squared_distance, trainable_state
from vrm.methods import build_method
from vrm.synthetic import SyntheticTask
from vrm.train import TrainConfig, set_seed, train_method

FRESH_PAIRS = 100_000


def train_with_initial(method: str, options: dict, task: SyntheticTask, n: int, seed: int):
    """Train on n synthetic pairs; return the model and its data-independent initialization."""
    config = TrainConfig(learning_rate=0.01, batch_size=64, max_epochs=40, patience=5, seed=seed)
    set_seed(seed)
    initial = trainable_state(build_method(method, task.dim, options))
    result = train_method(method, options, task.sample(n, seed=1000 + seed), task.sample(n // 4, seed=2000 + seed), config)
    return result.model, initial


def test_training_sizes_double():
    from vrm.pipeline import training_sizes

    assert training_sizes(125, 1839) == [125, 250, 500, 1000, 1839]
    assert training_sizes(125, 1000) == [125, 250, 500, 1000]
    assert training_sizes(125, 100) == [100]


def test_initial_state_matches_training():
    task = SyntheticTask()
    set_seed(3)
    initial = trainable_state(build_method("bt", task.dim, {"hidden": 16}))
    config = TrainConfig(max_epochs=1, seed=3, learning_rate=1e-12)
    result = train_method("bt", {"hidden": 16}, task.sample(64, 0), task.sample(32, 1), config)
    assert squared_distance(result.model, initial) < 1e-12


def test_synthetic_labels_follow_reward():
    task = SyntheticTask(noise=0.0)
    pairs = task.sample(5000, seed=0)
    margin = task.true_reward(pairs["prompt"], pairs["chosen"]) - task.true_reward(pairs["prompt"], pairs["rejected"])
    assert (margin >= 0).all()
    noisy = SyntheticTask(noise=1.0).sample(5000, seed=0)
    noisy_margin = task.true_reward(noisy["prompt"], noisy["chosen"]) - task.true_reward(noisy["prompt"], noisy["rejected"])
    assert 0.6 < (noisy_margin > 0).float().mean() < 0.99


def test_synthetic_cue_rate():
    task = SyntheticTask(cue_strength=5.0, cue_rate=0.9)
    pairs = task.sample(4000, seed=1)
    on_chosen = ((pairs["chosen"] - pairs["rejected"]) @ task.cue_direction) > 0
    assert abs(on_chosen.float().mean().item() - 0.9) < 0.03


def test_gibbs_error_at_scale_zero():
    task = SyntheticTask()
    model, _ = train_with_initial("bt", {"hidden": 0}, task, 200, seed=0)
    pairs = task.sample(500, seed=5)
    with torch.no_grad():
        margin = model.reward(pairs["prompt"], pairs["chosen"]) - model.reward(pairs["prompt"], pairs["rejected"])
    errors = gibbs_errors(model, pairs, 0.0, 3, seed=0)
    assert errors.shape == (3, 500)
    assert np.allclose(errors.mean(axis=1), float((margin < 0).float().mean()))


@pytest.mark.parametrize(("method", "options", "below_chance"), [
    ("bt", {"hidden": 0}, True),
    ("vrm", {"hidden": 32, "num_objectives": 8, "num_features": 4}, False),
])
def test_bounds_hold_on_fresh_pairs(method, options, below_chance):
    """Each repetition draws a new training set; a bound below the true risk counts as a failure."""
    task = SyntheticTask()
    fresh = task.sample(FRESH_PAIRS, seed=99)
    delta, repetitions, failures, rows = 0.05, 8, {"bound_kl": 0, "bound_mcallester": 0, "bound_lambda": 0}, []
    for repetition in range(repetitions):
        model, initial = train_with_initial(method, options, task, 1000, seed=repetition)
        result = certificate(model, initial, task.sample(1000, seed=1000 + repetition), delta=delta, seed=repetition)
        true_risk = gibbs_risk(model, fresh, result["scale"], 1, seed=500 + repetition)
        rows.append((result["risk_estimate"], true_risk, result["bound_kl"]))
        for name in failures:
            failures[name] += result[name] < true_risk
    for name, count in failures.items():
        assert count / repetitions <= delta, (name, rows)
    if below_chance:
        # A linear head on this task gets a certificate below chance for a pairwise error.
        assert max(row[2] for row in rows) < 0.5, rows
