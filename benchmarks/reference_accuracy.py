"""Independent reference accuracy on the cached features: logistic regression on h_xy(chosen) - h_xy(rejected).

Trains scikit-learn's LogisticRegression on the difference of the frozen prompt+response
features, with 5 folds grouped by prompt, for each training set of a finished run. A
Bradley-Terry head on the same features should land near these numbers; far below
points to a bug, far above to leakage.

    python benchmarks/reference_accuracy.py --results results
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from vrm.backbones.features import load_pair_features


def grouped_cv_accuracy(difference: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, np.ndarray]:
    """Return the mean held-out accuracy over prompt-grouped folds and the per-pair correctness.

    Each pair enters twice, as (chosen - rejected, 1) and (rejected - chosen, 0), so the
    classifier is fitted on both labels. A held-out pair counts as correct when the chosen
    side gets the higher score.
    """
    correct = np.zeros(len(difference))
    for train, test in GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(difference, groups=groups):
        x = np.concatenate([difference[train], -difference[train]])
        y = np.concatenate([np.ones(len(train)), np.zeros(len(train))])
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
        correct[test] = model.decision_function(difference[test]) > 0
    return float(correct.mean()), correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results folder of a finished run")
    args = parser.parse_args()

    results = Path(args.results)
    pairs = pd.read_parquet(results / "data" / "pairs.parquet")
    features, metadata = load_pair_features(results / "features" / "pairs.safetensors")
    difference = (features["chosen"] - features["rejected"]).numpy().astype(np.float64)
    print(f"backbone {metadata.get('backbone')} max_length {metadata.get('max_length')}")

    for train_set in sorted(set(pairs["train_set"]) - {""}):
        rows = np.flatnonzero(pairs["train_set"] == train_set)
        accuracy, correct = grouped_cv_accuracy(difference[rows], pairs["group"].to_numpy()[rows])
        print(f"{train_set}: {accuracy:.3f} over {len(rows)} pairs (5 folds grouped by prompt)")
        subset = pairs.iloc[rows]
        for column in ("aspect", "source"):
            for value, members in subset.groupby(column).groups.items():
                if value and len(members) < len(rows):
                    mask = subset.index.isin(members)
                    print(f"  {column} {value}: {correct[mask].mean():.3f} over {mask.sum()} pairs")


if __name__ == "__main__":
    main()
