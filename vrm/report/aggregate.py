"""Metrics with confidence intervals over seeds, and paired comparisons against a baseline."""

from __future__ import annotations

from dataclasses import dataclass
import logging
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from vrm.evaluate.metrics import length_spearman, pair_correct, pair_metrics, reliability_bins

log = logging.getLogger(__name__)

IN_DISTRIBUTION = "in-distribution"
MAIN_COLUMNS = [
    "train_set", "method", "benchmark", "metric", "mean", "ci95_low", "ci95_high", "n_seeds", "n_pairs", "n_prompts",
]
COMPARISON_COLUMNS = [
    "train_set", "benchmark", "method", "baseline", "accuracy_difference",
    "ci95_low", "ci95_high", "p_value", "n_seeds", "n_pairs", "bootstrap_samples",
]
LENGTH_FILTERS = ("chosen-longer", "chosen-shorter")


@dataclass
class ScoreFile:
    """The test-pair scores of one model.

    Scores of the main comparison have the columns pair_id, reward_chosen, reward_rejected
    and p_chosen, and their benchmarks come from the config. Stress-test scores also have
    a `benchmark` column and are grouped by it (the same pair can appear in several).
    """

    train_set: str
    method: str
    seed: int
    scores: pd.DataFrame


@dataclass
class BenchmarkSet:
    """The test pairs of one benchmark and how its accuracy is counted.

    kind "pairs": accuracy over pairs. "best-of-n": over best-of-N sets (`groups` gives the
    set of each pair); a set counts as solved when the best response outscores every other
    candidate. "weighted": a weighted mean over pairs (`weights`), as for section scores.
    """

    name: str
    ids: pd.Index
    kind: str = "pairs"
    groups: np.ndarray | None = None
    weights: np.ndarray | None = None
    n_prompts: int = 0
    lengths: tuple[np.ndarray, np.ndarray] | None = None

    def units(self, reward_chosen: np.ndarray, reward_rejected: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the correctness per counted unit (pair or best-of-N set) and the unit weights (None: equal)."""
        correct = pair_correct(reward_chosen, reward_rejected)
        if self.kind == "best-of-n":
            solved = pd.Series(correct == 1.0).groupby(self.groups, sort=True).all()
            return solved.to_numpy(dtype=np.float64), None
        if self.kind == "weighted":
            return correct, self.weights
        return correct, None

    def metrics(self, scores: pd.DataFrame, bins: int) -> dict[str, float]:
        """Compute the pair metrics of `scores`, with accuracy counted in this set's units."""
        chosen, rejected = scores["reward_chosen"].to_numpy(), scores["reward_rejected"].to_numpy()
        metrics = pair_metrics(chosen, rejected, scores["p_chosen"].to_numpy(), bins)
        if self.kind != "pairs":
            values, weights = self.units(chosen, rejected)
            metrics["pair_accuracy"] = metrics["accuracy"]
            metrics["accuracy"] = float(np.average(values, weights=weights))
        if self.lengths is not None:
            metrics["length_spearman"] = length_spearman(chosen, rejected, *self.lengths)
        return metrics


def _group_column(pairs: pd.DataFrame) -> str:
    """Return the column that identifies a prompt: the prompt group, else the prompt, else the pair id."""
    for column in ("group", "prompt"):
        if column in pairs.columns:
            return column
    return "pair_id"


def _word_counts(texts: pd.Series) -> np.ndarray:
    return texts.map(lambda text: len(str(text).split())).to_numpy(dtype=np.float64)


def _slug(text: str) -> str:
    return "-".join(str(text).lower().split())


def benchmark_sets(pairs: pd.DataFrame, train_set: str, benchmarks: list[dict[str, Any]]) -> list[BenchmarkSet]:
    """The benchmark sets of the main comparison for models trained on `train_set`.

    A spec selects test pairs by `source` (or "in-distribution": the training set's own
    test split), `aspect`, `subset` and `length`. The length filter is chosen-longer or
    chosen-shorter by word count, so pairs of equal length are in neither. `kind: best-of-n` scores best-of-N sets,
    and `sections: TABLE` expands into one weighted score per section of a section table
    plus their mean, named "{name}/{section}" and "{name}/score".
    """
    from vrm.data.sections import load_section_table

    test = pairs[pairs["split"] == "test"]
    has_text = {"chosen", "rejected"} <= set(test.columns)
    lengths = (_word_counts(test["chosen"]), _word_counts(test["rejected"])) if has_text else None
    group_column = _group_column(test)

    def make(name: str, rows: np.ndarray, **options) -> BenchmarkSet:
        rows = np.asarray(rows, dtype=bool)
        return BenchmarkSet(
            name, pd.Index(test["pair_id"].to_numpy()[rows]), n_prompts=int(test[group_column][rows].nunique()),
            lengths=None if lengths is None else (lengths[0][rows], lengths[1][rows]), **options,
        )

    own = np.array(test["train_set"] == train_set, dtype=bool)
    sets = [make(IN_DISTRIBUTION, own)]
    for spec in benchmarks:
        rows = np.array(own if spec["source"] == IN_DISTRIBUTION else test["source"] == spec["source"], dtype=bool)
        for tag in ("aspect", "subset"):
            if spec.get(tag):
                rows &= (test[tag] == spec[tag]).to_numpy()
        if spec.get("length"):
            if lengths is None:
                raise ValueError("length benchmarks need the chosen and rejected texts in the pairs table")
            rows &= lengths[0] > lengths[1] if spec["length"] == "chosen-longer" else lengths[0] < lengths[1]
        if spec.get("kind") == "best-of-n":
            sets.append(make(spec["name"], rows, kind="best-of-n", groups=test["subset"].to_numpy()[rows]))
        elif spec.get("sections"):
            sets.extend(_section_sets(spec, test, rows, load_section_table(spec["sections"]), make))
        else:
            sets.append(make(spec["name"], rows))
    return sets


def _section_sets(spec, test: pd.DataFrame, rows: np.ndarray, table: dict[str, dict[str, float]], make) -> list[BenchmarkSet]:
    """Build one weighted set per section, so a section's accuracy is the weighted mean of its subsets'."""
    subsets = test["subset"].to_numpy()
    pair_weight = np.zeros(len(test))
    section_rows = {}
    for section, weights in table.items():
        in_section = rows & np.isin(subsets, list(weights))
        if not in_section.any():
            log.warning("%s: no test pairs of section %s; it is left out", spec["name"], section)
            continue
        present = {subset: weight for subset, weight in weights.items() if (in_section & (subsets == subset)).any()}
        total = sum(present.values())
        for subset, weight in present.items():
            members = in_section & (subsets == subset)
            pair_weight[members] = weight / (total * members.sum())
        section_rows[section] = in_section
    unmapped = rows & ~np.isin(subsets, [s for weights in table.values() for s in weights])
    if unmapped.any():
        log.warning("%s: %d test pairs have a subset outside the section table (%s); they count in no section",
                    spec["name"], int(unmapped.sum()), ", ".join(sorted(set(subsets[unmapped]))[:5]))
    sets = [make(f"{spec['name']}/{_slug(section)}", members, kind="weighted", weights=pair_weight[members])
            for section, members in section_rows.items()]
    if section_rows:
        every = np.logical_or.reduce(list(section_rows.values()))
        sets.append(make(f"{spec['name']}/score", every, kind="weighted", weights=pair_weight[every] / len(section_rows)))
    return sets


def benchmark_table(pairs: pd.DataFrame, train_sets: list[str], benchmarks: list[dict[str, Any]],
                    prepare_summary: dict[str, Any]) -> pd.DataFrame:
    """Return the size of every benchmark set per training set, with the pairs its source lost before the split.

    `left_out_prompt_in_training` counts the source's pairs whose prompt is in a training
    or validation split (benchmark-only sources); `subsampled_out` those left out by max_pairs.
    """
    sources = {spec["name"]: spec["source"] for spec in benchmarks}
    rows = []
    for train_set in train_sets:
        for bench in benchmark_sets(pairs, train_set, benchmarks):
            base = bench.name if bench.name in sources else bench.name.rsplit("/", 1)[0]
            source = sources.get(base, IN_DISTRIBUTION)
            info = prepare_summary.get(source, {}) if isinstance(prepare_summary.get(source), dict) else {}
            rows.append({
                "train_set": train_set, "benchmark": bench.name, "source": source, "kind": bench.kind,
                "n_pairs": len(bench.ids), "n_prompts": bench.n_prompts,
                "n_sets": int(len(set(bench.groups))) if bench.groups is not None else None,
                "left_out_prompt_in_training": int(info.get("left_out_prompt_in_training", 0)),
                "subsampled_out": int(info.get("subsampled_out", 0)),
            })
    return pd.DataFrame(rows)


class _BenchmarkCache:
    """The benchmark sets of each training set, built once and shared by all score files."""

    def __init__(self, pairs: pd.DataFrame, benchmarks: list[dict[str, Any]]):
        self.pairs = pairs
        self.benchmarks = benchmarks
        self.by_train_set: dict[str, list[BenchmarkSet]] = {}
        self.groups = pairs.set_index("pair_id", drop=False)[_group_column(pairs)]

    def evaluation_sets(self, item: ScoreFile) -> list[tuple[BenchmarkSet, pd.DataFrame]]:
        """Return each benchmark set of a score file with the file's scores in the set's pair order."""
        if "benchmark" in item.scores.columns:
            found = []
            for name, frame in item.scores.groupby("benchmark", sort=False):
                frame = frame.set_index("pair_id")
                prompts = int(self.groups.reindex(frame.index).nunique())
                found.append((BenchmarkSet(name, pd.Index(frame.index), n_prompts=prompts), frame))
            return found
        if item.train_set not in self.by_train_set:
            self.by_train_set[item.train_set] = benchmark_sets(self.pairs, item.train_set, self.benchmarks)
        scores = item.scores.set_index("pair_id")
        found = []
        for bench in self.by_train_set[item.train_set]:
            if len(bench.ids) == 0:
                log.warning("benchmark %s has no test pairs for train set %s; it is left out", bench.name, item.train_set)
                continue
            missing = bench.ids.difference(scores.index)
            if len(missing):
                raise ValueError(
                    f"scores of {item.train_set}/{item.method}/seed {item.seed} lack {len(missing)} "
                    f"pairs of {bench.name} (first: {missing[0]}); rerun the evaluate stage"
                )
            found.append((bench, scores.loc[bench.ids]))
        return found


def per_seed_metrics(pairs: pd.DataFrame, score_files: Iterable[ScoreFile], benchmarks: list[dict], bins: int) -> pd.DataFrame:
    """One row per (train_set, method, seed, benchmark, metric)."""
    rows, cache = [], _BenchmarkCache(pairs, benchmarks)
    for item in score_files:
        for bench, scores in cache.evaluation_sets(item):
            for metric, value in bench.metrics(scores, bins).items():
                rows.append({
                    "train_set": item.train_set, "method": item.method, "seed": item.seed, "benchmark": bench.name,
                    "metric": metric, "value": value, "n_pairs": len(bench.ids), "n_prompts": bench.n_prompts,
                })
    return pd.DataFrame(rows)


def reliability_table(pairs: pd.DataFrame, score_files: Iterable[ScoreFile], bins: int) -> pd.DataFrame:
    """Reliability bins of each (train_set, method) on its in-distribution test pairs, seeds pooled."""
    pooled: dict[tuple[str, str], list[np.ndarray]] = {}
    for item in score_files:
        if "benchmark" in item.scores.columns:
            continue
        test = pairs[(pairs["split"] == "test") & (pairs["train_set"] == item.train_set)]
        scores = item.scores.set_index("pair_id").loc[test["pair_id"]]
        pooled.setdefault((item.train_set, item.method), []).append(scores["p_chosen"].to_numpy())
    rows = []
    for (train_set, method), values in pooled.items():
        for row in reliability_bins(np.concatenate(values), bins):
            rows.append({"train_set": train_set, "method": method, "benchmark": IN_DISTRIBUTION, "n_seeds": len(values), **row})
    return pd.DataFrame(rows, columns=[
        "train_set", "method", "benchmark", "n_seeds", "bin", "bin_low", "bin_high", "n_pairs", "confidence", "accuracy",
    ])


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
                         n_seeds=int(group["seed"].nunique()), n_pairs=int(group["n_pairs"].iloc[0]),
                         n_prompts=int(group["n_prompts"].iloc[0])))
    return pd.DataFrame(rows, columns=MAIN_COLUMNS)


def paired_bootstrap(correct: np.ndarray, baseline: np.ndarray, samples: int, seed: int,
                     weights: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Accuracy difference with a 95% percentile interval and a two-sided p-value.

    `correct` and `baseline` are [seeds, units] arrays of 0 / 0.5 / 1 (a unit is a pair or
    a best-of-N set), with rows matched by seed; `weights` [units] makes the accuracy a
    weighted mean. Each bootstrap sample resamples seeds and units with replacement and
    applies the same resample to both methods. The p-value is twice the smaller tail
    mass of the bootstrap differences at 0, at least 1 / samples.
    """
    difference = np.asarray(correct, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)  # [S, N]
    n_seeds, n_units = difference.shape
    unit_weight = np.ones(n_units) if weights is None else np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=samples)  # [B, S]
    unit_counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=samples) * unit_weight  # [B, N]
    per_unit = seed_weights @ difference  # [B, N]
    boot = (per_unit * unit_counts).sum(axis=1) / (n_seeds * np.maximum(unit_counts.sum(axis=1), 1e-300))  # [B]
    observed = float(np.average(difference.mean(axis=0), weights=unit_weight))
    low, high = np.percentile(boot, [2.5, 97.5])
    tail = min((boot <= 0).mean(), (boot >= 0).mean())
    p_value = float(min(1.0, max(2.0 * tail, 1.0 / samples)))
    return observed, float(low), float(high), p_value


def compare_to_baseline(
    pairs: pd.DataFrame, score_files: list[ScoreFile], benchmarks: list[dict], baseline: str, samples: int, seed: int
) -> pd.DataFrame:
    """Every method against `baseline` per (train_set, benchmark), on seeds both methods have."""
    # One model can have several score files per seed (the cue stress test writes one per rho).
    by_key: dict[tuple[str, str], dict[int, list[ScoreFile]]] = {}
    for item in score_files:
        by_key.setdefault((item.train_set, item.method), {}).setdefault(item.seed, []).append(item)

    rows, cache = [], _BenchmarkCache(pairs, benchmarks)
    baseline_units: dict[tuple[str, tuple[int, ...]], dict[str, tuple[BenchmarkSet, np.ndarray]]] = {}

    def correctness(files: dict[int, list[ScoreFile]], model_seeds: list[int]) -> dict[str, tuple[BenchmarkSet, np.ndarray]]:
        """Map each benchmark to its set and the [seeds, units] correctness of a method."""
        found: dict[str, tuple[BenchmarkSet, list[np.ndarray]]] = {}
        for model_seed in model_seeds:
            for item in files[model_seed]:
                for bench, scores in cache.evaluation_sets(item):
                    values, _ = bench.units(scores["reward_chosen"].to_numpy(), scores["reward_rejected"].to_numpy())
                    found.setdefault(bench.name, (bench, []))[1].append(values)
        return {name: (bench, np.stack(values)) for name, (bench, values) in found.items()}

    for (train_set, method), files in sorted(by_key.items()):
        if method == baseline or (train_set, baseline) not in by_key:
            continue
        base_files = by_key[(train_set, baseline)]
        common = sorted(set(files) & set(base_files))
        if not common:
            log.warning("no seed shared by %s and %s on %s; comparison left out", method, baseline, train_set)
            continue
        key = (train_set, tuple(common))
        if key not in baseline_units:
            baseline_units[key] = correctness(base_files, common)
        theirs = baseline_units[key]
        for name, (bench, values) in correctness(files, common).items():
            if name not in theirs:
                continue
            difference, low, high, p_value = paired_bootstrap(values, theirs[name][1], samples, seed, bench.weights)
            rows.append({
                "train_set": train_set, "benchmark": name, "method": method, "baseline": baseline,
                "accuracy_difference": difference, "ci95_low": low, "ci95_high": high, "p_value": p_value,
                "n_seeds": len(common), "n_pairs": len(bench.ids), "bootstrap_samples": samples,
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
