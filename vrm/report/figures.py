"""Figures of the main comparison."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# Okabe-Ito colorblind-safe palette; a method keeps its color in every figure.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


# Beyond eight methods the colors repeat, so each further group of eight gets a hatch.
HATCHES = ["", "//", "..", "xx"]


def method_styles(methods: list[str]) -> dict[str, dict[str, str]]:
    """Bar color and hatch per method, fixed by the sorted method names."""
    return {
        method: {"color": PALETTE[i % len(PALETTE)], "hatch": HATCHES[(i // len(PALETTE)) % len(HATCHES)]}
        for i, method in enumerate(sorted(methods))
    }


def plot_main(main: pd.DataFrame, png_path: str, pdf_path: str) -> None:
    """Accuracy per benchmark and method with 95% CI error bars, one panel per training set."""
    accuracy = main[main["metric"] == "accuracy"]
    train_sets = list(dict.fromkeys(accuracy["train_set"]))
    methods = list(dict.fromkeys(accuracy["method"]))
    styles = method_styles(methods)
    benchmarks = list(dict.fromkeys(accuracy["benchmark"]))

    width = min(22.0, max(8.0, 0.12 * len(benchmarks) * max(1, len(methods))))
    figure, axes = plt.subplots(len(train_sets), 1, figsize=(width, 3.6 * len(train_sets)), squeeze=False)
    bar = 0.8 / max(1, len(methods))
    for axis, train_set in zip(axes[:, 0], train_sets):
        table = accuracy[accuracy["train_set"] == train_set]
        x = np.arange(len(benchmarks))
        for i, method in enumerate(methods):
            rows = table[table["method"] == method].set_index("benchmark").reindex(benchmarks)
            mean = rows["mean"].to_numpy()
            error = np.vstack([mean - rows["ci95_low"].to_numpy(), rows["ci95_high"].to_numpy() - mean])
            axis.bar(x + (i - (len(methods) - 1) / 2) * bar, mean, bar, yerr=error, capsize=1,
                     color=styles[method]["color"], hatch=styles[method]["hatch"], edgecolor="white",
                     linewidth=0.3, error_kw={"linewidth": 0.6}, label=method)
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        axis.set_xticks(x, benchmarks, rotation=35, ha="right", fontsize=8)
        axis.set_ylabel("pairwise accuracy")
        axis.set_ylim(0.3, 1.05)
        axis.set_title(f"trained on {train_set}")
        axis.legend(fontsize=7, ncol=min(len(methods), 7), loc="upper right")
    figure.tight_layout()
    figure.savefig(png_path, dpi=150)
    figure.savefig(pdf_path)
    plt.close(figure)
