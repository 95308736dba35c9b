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
    total = sum(row["n_pairs"] * abs(row["accuracy"] - row["confidence"]) for row in reliability_bins(p, bins))
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


def length_spearman(reward_chosen: np.ndarray, reward_rejected: np.ndarray, length_chosen: np.ndarray,
                    length_rejected: np.ndarray) -> float:
    """Spearman rank correlation of reward with response length, over both responses of every pair.

    Returns NaN when the rewards or the lengths are constant.

    >>> length_spearman(np.array([3.0, 1.0]), np.array([2.0, 0.0]), np.array([30, 10]), np.array([20, 5]))
    1.0
    """
    from scipy import stats

    rewards = np.concatenate([np.asarray(reward_chosen, np.float64), np.asarray(reward_rejected, np.float64)])
    lengths = np.concatenate([np.asarray(length_chosen, np.float64), np.asarray(length_rejected, np.float64)])
    if np.ptp(rewards) == 0 or np.ptp(lengths) == 0:
        return float("nan")
    return float(stats.spearmanr(rewards, lengths).statistic)


def reliability_bins(p_chosen: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    """Return the bins behind `ece`: per non-empty bin its edges, pair count, mean confidence and accuracy."""
    p = np.asarray(p_chosen, dtype=np.float64)
    confidence = np.maximum(p, 1.0 - p)
    correct = np.where(p > 0.5, 1.0, np.where(p == 0.5, 0.5, 0.0))
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append({
                "bin": b, "bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "n_pairs": int(members.sum()),
                "confidence": float(confidence[members].mean()), "accuracy": float(correct[members].mean()),
            })
    return rows
