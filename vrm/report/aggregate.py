"""Metrics with confidence intervals over seeds, and paired comparisons against a baseline."""

from __future__ import annotations

from dataclasses import dataclass
import logging
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from vrm.evaluate.metrics import pair_correct, pair_metrics

log = logging.getLogger(__name__)

IN_DISTRIBUTION = "in-distribution"
MAIN_COLUMNS = ["train_set", "method", "benchmark", "metric", "mean", "ci95_low", "ci95_high", "n_seeds", "n_pairs"]
COMPARISON_COLUMNS = [
    "train_set", "benchmark", "method", "baseline", "accuracy_difference",
    "ci95_low", "ci95_high", "p_value", "n_seeds", "n_pairs", "bootstrap_samples",
]


@dataclass
class ScoreFile:
    train_set: str
    method: str
    seed: int
    scores: pd.DataFrame  # pair_id, reward_chosen, reward_rejected, p_chosen


def benchmark_members(pairs: pd.DataFrame, train_set: str, benchmarks: list[dict[str, Any]]) -> dict[str, pd.Index]:
    """Map each benchmark name to the pair ids of its test pairs, for one training set."""
    test = pairs[pairs["split"] == "test"]
    members = {IN_DISTRIBUTION: pd.Index(test.loc[test["train_set"] == train_set, "pair_id"])}
    for spec in benchmarks:
        rows = test["source"] == spec["source"]
        for tag in ("aspect", "subset"):
            if spec.get(tag):
                rows &= test[tag] == spec[tag]
        members[spec["name"]] = pd.Index(test.loc[rows, "pair_id"])
    return members


def per_seed_metrics(pairs: pd.DataFrame, score_files: Iterable[ScoreFile], benchmarks: list[dict], bins: int) -> pd.DataFrame:
    """One row per (train_set, method, seed, benchmark, metric)."""
    rows = []
    for item in score_files:
        scores = item.scores.set_index("pair_id")
        for benchmark, ids in benchmark_members(pairs, item.train_set, benchmarks).items():
            if len(ids) == 0:
                log.warning("benchmark %s has no test pairs for train set %s; it is left out", benchmark, item.train_set)
                continue
            missing = ids.difference(scores.index)
            if len(missing):
                raise ValueError(
                    f"scores of {item.train_set}/{item.method}/seed {item.seed} lack {len(missing)} "
                    f"pairs of {benchmark} (first: {missing[0]}); rerun the evaluate stage"
                )
            subset = scores.loc[ids]
            metrics = pair_metrics(
                subset["reward_chosen"].to_numpy(), subset["reward_rejected"].to_numpy(), subset["p_chosen"].to_numpy(), bins
            )
            for metric, value in metrics.items():
                rows.append({
                    "train_set": item.train_set, "method": item.method, "seed": item.seed,
                    "benchmark": benchmark, "metric": metric, "value": value, "n_pairs": len(ids),
                })
    return pd.DataFrame(rows)


def mean_ci95(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t interval over seeds; a single seed gives a zero-width interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return mean, mean - half, mean + half


def summarize(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Main table in long format: mean and 95% CI over seeds per (train_set, method, benchmark, metric)."""
    rows = []
    keys = ["train_set", "method", "benchmark", "metric"]
    for key, group in per_seed.groupby(keys, sort=False):
        mean, low, high = mean_ci95(group["value"].to_numpy())
        rows.append(dict(zip(keys, key), mean=mean, ci95_low=low, ci95_high=high,
                         n_seeds=int(group["seed"].nunique()), n_pairs=int(group["n_pairs"].iloc[0])))
    return pd.DataFrame(rows, columns=MAIN_COLUMNS)


def paired_bootstrap(correct: np.ndarray, baseline: np.ndarray, samples: int, seed: int) -> tuple[float, float, float, float]:
    """Accuracy difference with a 95% percentile interval and a two-sided p-value.

    `correct` and `baseline` are [seeds, pairs] arrays of 0 / 0.5 / 1, with rows matched
    by seed. Each bootstrap sample resamples seeds and test pairs with replacement and
    applies the same resample to both methods. The p-value is twice the smaller tail
    mass of the bootstrap differences at 0, at least 1 / samples.
    """
    difference = np.asarray(correct, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)  # [S, N]
    n_seeds, n_pairs = difference.shape
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=samples)  # [B, S]
    pair_weights = rng.multinomial(n_pairs, np.full(n_pairs, 1.0 / n_pairs), size=samples)  # [B, N]
    per_pair = seed_weights @ difference  # [B, N]
    boot = (per_pair * pair_weights).sum(axis=1) / (n_seeds * n_pairs)  # [B]
    observed = float(difference.mean())
    low, high = np.percentile(boot, [2.5, 97.5])
    tail = min((boot <= 0).mean(), (boot >= 0).mean())
    p_value = float(min(1.0, max(2.0 * tail, 1.0 / samples)))
    return observed, float(low), float(high), p_value


def compare_to_baseline(
    pairs: pd.DataFrame, score_files: list[ScoreFile], benchmarks: list[dict], baseline: str, samples: int, seed: int
) -> pd.DataFrame:
    """Every method against `baseline` per (train_set, benchmark), on seeds both methods have."""
    by_key: dict[tuple[str, str], dict[int, pd.DataFrame]] = {}
    for item in score_files:
        by_key.setdefault((item.train_set, item.method), {})[item.seed] = item.scores.set_index("pair_id")

    rows = []
    for (train_set, method), seeds in sorted(by_key.items()):
        if method == baseline or (train_set, baseline) not in by_key:
            continue
        base_seeds = by_key[(train_set, baseline)]
        common = sorted(set(seeds) & set(base_seeds))
        if not common:
            log.warning("no seed shared by %s and %s on %s; comparison left out", method, baseline, train_set)
            continue
        for benchmark, ids in benchmark_members(pairs, train_set, benchmarks).items():
            if len(ids) == 0:
                continue

            def correctness(tables: dict[int, pd.DataFrame]) -> np.ndarray:
                return np.stack([
                    pair_correct(tables[s].loc[ids, "reward_chosen"].to_numpy(), tables[s].loc[ids, "reward_rejected"].to_numpy())
                    for s in common
                ])

            difference, low, high, p_value = paired_bootstrap(correctness(seeds), correctness(base_seeds), samples, seed)
            rows.append({
                "train_set": train_set, "benchmark": benchmark, "method": method, "baseline": baseline,
                "accuracy_difference": difference, "ci95_low": low, "ci95_high": high, "p_value": p_value,
                "n_seeds": len(common), "n_pairs": len(ids), "bootstrap_samples": samples,
            })
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def to_markdown(main: pd.DataFrame, metrics: tuple[str, ...] = ("accuracy", "nll", "ece")) -> str:
    """Markdown tables, one per training set: benchmarks as rows, method x metric as columns."""
    lines = []
    for train_set, table in main.groupby("train_set", sort=False):
        table = table[table["metric"].isin(metrics)]
        methods = list(dict.fromkeys(table["method"]))
        header = ["benchmark", "pairs"] + [f"{method} {metric}" for metric in metrics for method in methods]
        lines += [f"### Trained on `{train_set}`", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for benchmark, rows in table.groupby("benchmark", sort=False):
            cells = [benchmark, str(int(rows["n_pairs"].iloc[0]))]
            for metric in metrics:
                for method in methods:
                    match = rows[(rows["method"] == method) & (rows["metric"] == metric)]
                    if match.empty:
                        cells.append("")
                        continue
                    row = match.iloc[0]
                    cells.append(f"{row['mean']:.3f} [{row['ci95_low']:.3f}, {row['ci95_high']:.3f}]")
            lines.append("| " + " | ".join(cells) + " |")
        seeds = int(table["n_seeds"].min()) if len(table) else 0
        lines += ["", f"Mean over {seeds} seeds with a 95% Student-t interval over seeds.", ""]
    return "\n".join(lines)
