"""Pairwise preference metrics: accuracy, NLL, ECE and Brier score of P(chosen > rejected)."""

from __future__ import annotations

import numpy as np

# Probabilities are clipped to [EPS, 1 - EPS] before taking logs.
EPS = 1e-7


def pair_correct(reward_chosen: np.ndarray, reward_rejected: np.ndarray) -> np.ndarray:
    """1 where the chosen response gets the higher reward, 0.5 on a tie, else 0.

    >>> pair_correct(np.array([2.0, 0.0, 1.0]), np.array([1.0, 0.0, 3.0])).tolist()
    [1.0, 0.5, 0.0]
    """
    margin = np.asarray(reward_chosen, dtype=np.float64) - np.asarray(reward_rejected, dtype=np.float64)
    return np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))


def nll(p_chosen: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels, -mean(log P(chosen > rejected))."""
    p = np.clip(np.asarray(p_chosen, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.log(p).mean())


def brier(p_chosen: np.ndarray) -> float:
    """Mean squared error of P(chosen > rejected) against the label 1."""
    p = np.asarray(p_chosen, dtype=np.float64)
    return float(((1.0 - p) ** 2).mean())


def ece(p_chosen: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the predicted side, equal-width bins on [0, 1].

    Each pair is predicted on the side the model favours, with confidence
    max(p, 1 - p); ECE is the bin-size-weighted mean of |accuracy - confidence|
    (Guo et al. 2017, arXiv 1706.04599). A pair with p = 0.5 counts as half correct.

    >>> round(ece(np.array([0.9, 0.9, 0.9, 0.9, 0.1])), 3)
    0.1
    """
    p = np.asarray(p_chosen, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    confidence = np.maximum(p, 1.0 - p)
    correct = np.where(p > 0.5, 1.0, np.where(p == 0.5, 0.5, 0.0))
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / p.size)


def pair_metrics(reward_chosen: np.ndarray, reward_rejected: np.ndarray, p_chosen: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Compute accuracy, NLL, ECE, Brier score and mean margin of one model on one set of pairs."""
    return {
        "accuracy": float(pair_correct(reward_chosen, reward_rejected).mean()),
        "nll": nll(p_chosen),
        "ece": ece(p_chosen, bins),
        "brier": brier(p_chosen),
        "margin": float(np.mean(np.asarray(reward_chosen) - np.asarray(reward_rejected))),
    }
