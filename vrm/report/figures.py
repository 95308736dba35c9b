"""Figures: the main comparison, reliability diagrams and the spurious-cue stress test.

Every figure takes a method's color, hatch and marker from `method_styles`, so a method
looks the same in all of them, and is written as PNG and as vector PDF.
"""

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
# Line figures tell repeated colors apart by marker instead.
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def method_styles(methods: list[str]) -> dict[str, dict[str, str]]:
    """Color, hatch (bars) and marker (lines) of each of `methods`.

    A method's style is set by its place among the sorted names of every registered
    method (plus `methods`), not among the methods of one figure, so it stays the same
    in every figure and every config.
    """
    from vrm.methods.registry import METHODS, load_builtin_methods

    load_builtin_methods()
    names = sorted(set(METHODS) | set(methods))
    styles = {
        method: {
            "color": PALETTE[i % len(PALETTE)],
            "hatch": HATCHES[(i // len(PALETTE)) % len(HATCHES)],
            "marker": MARKERS[(i // len(PALETTE)) % len(MARKERS)],
        }
        for i, method in enumerate(names)
    }
    return {method: styles[method] for method in methods}


def _save(figure, png_path: str, pdf_path: str) -> None:
    figure.tight_layout()
    figure.savefig(png_path, dpi=150)
    figure.savefig(pdf_path)
    plt.close(figure)


def plot_main(main: pd.DataFrame, png_path: str, pdf_path: str) -> None:
    """Accuracy per benchmark and method with 95% CI error bars, one panel per training set.

    The cue stress-test rows have their own figure (`plot_cues`) and are left out here.
    """
    accuracy = main[(main["metric"] == "accuracy") & ~main["benchmark"].str.startswith("cue/")]
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
        axis.set_ylim(0.0, 1.05)
        axis.set_title(f"trained on {train_set}")
        axis.legend(fontsize=7, ncol=min(len(methods), 7), loc="upper right")
    _save(figure, png_path, pdf_path)


def plot_reliability(reliability: pd.DataFrame, main: pd.DataFrame, png_path: str, pdf_path: str) -> None:
    """Reliability diagram per method: accuracy against confidence of the predicted side.

    One panel per method and one line style per training set, on in-distribution test
    pairs with the seeds pooled. Marker area grows with the pairs in the bin, and the
    legend gives the ECE (mean over seeds).
    """
    methods = sorted(dict.fromkeys(reliability["method"]))
    train_sets = list(dict.fromkeys(reliability["train_set"]))
    styles = method_styles(methods)
    columns = min(4, max(1, len(methods)))
    rows = max(1, int(np.ceil(len(methods) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False, sharex=True, sharey=True)
    line_styles = ["-", "--", ":", "-."]
    for axis in axes.flat[len(methods):]:
        axis.set_visible(False)
    for axis, method in zip(axes.flat, methods):
        axis.plot([0.5, 1.0], [0.5, 1.0], color="grey", linewidth=0.8, linestyle="--")
        for j, train_set in enumerate(train_sets):
            table = reliability[(reliability["method"] == method) & (reliability["train_set"] == train_set)]
            if table.empty:
                continue
            ece = main[(main["method"] == method) & (main["train_set"] == train_set)
                       & (main["benchmark"] == "in-distribution") & (main["metric"] == "ece")]["mean"]
            label = f"{train_set}" + (f" (ECE {ece.iloc[0]:.3f})" if len(ece) else "")
            axis.plot(table["confidence"], table["accuracy"], color=styles[method]["color"], label=label,
                      linestyle=line_styles[j % len(line_styles)], linewidth=1.0, marker=styles[method]["marker"],
                      markersize=2)
            axis.scatter(table["confidence"], table["accuracy"], s=8 + 60 * table["n_pairs"] / table["n_pairs"].max(),
                         color=styles[method]["color"], marker=styles[method]["marker"], zorder=3)
        axis.set_title(method, fontsize=9)
        axis.set_xlim(0.48, 1.02)
        axis.set_ylim(0.0, 1.02)
        axis.legend(fontsize=6, loc="lower right")
    for axis in axes[-1, :]:
        axis.set_xlabel("confidence max(p, 1 - p)")
    for axis in axes[:, 0]:
        axis.set_ylabel("accuracy")
    _save(figure, png_path, pdf_path)


def plot_cues(main: pd.DataFrame, png_path: str, pdf_path: str) -> None:
    """Accuracy against the cue rate rho per method, on clean and on reversed test pairs, with 95% CIs.

    One row of panels per cue (the training set column of cue rows is "{set}+{cue}").
    """
    accuracy = main[(main["metric"] == "accuracy") & main["benchmark"].str.startswith("cue/")].copy()
    if accuracy.empty:
        raise ValueError("main table has no cue/* rows; run the cue stress test first")
    accuracy["condition"] = accuracy["benchmark"].str.extract(r"^cue/([a-z]+)@")[0]
    accuracy["rho"] = accuracy["benchmark"].str.extract(r"@([0-9.]+)$")[0].astype(float)
    cues = list(dict.fromkeys(accuracy["train_set"]))
    methods = sorted(dict.fromkeys(accuracy["method"]))
    styles = method_styles(list(dict.fromkeys(main["method"])))
    conditions = ["clean", "reversed"]
    figure, axes = plt.subplots(len(cues), 2, figsize=(10, 3.6 * len(cues)), squeeze=False, sharey=True)
    offsets = np.linspace(-0.012, 0.012, max(1, len(methods)))
    for row, cue in enumerate(cues):
        for column, condition in enumerate(conditions):
            axis = axes[row, column]
            table = accuracy[(accuracy["train_set"] == cue) & (accuracy["condition"] == condition)]
            for offset, method in zip(offsets, methods):
                rows = table[table["method"] == method].sort_values("rho")
                if rows.empty:
                    continue
                error = np.vstack([rows["mean"] - rows["ci95_low"], rows["ci95_high"] - rows["mean"]])
                axis.errorbar(rows["rho"] + offset, rows["mean"], yerr=error, color=styles[method]["color"],
                              marker=styles[method]["marker"], markersize=4, linewidth=1.0, capsize=2, label=method)
            axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
            axis.set_title(f"{cue}: {condition} test pairs", fontsize=10)
            axis.set_xlabel("rho, rate of the cue on the chosen response in training")
            axis.set_ylim(-0.02, 1.02)
        axes[row, 0].set_ylabel("pairwise accuracy")
    axes[0, 1].legend(fontsize=7, ncol=2, loc="lower left")
    _save(figure, png_path, pdf_path)


def plot_generalization(table: pd.DataFrame, png_path: str, pdf_path: str) -> None:
    """Measured gap, certified gap and PAC-Bayes-kl bound against training-set size, log-log.

    One panel per (training set, method), means over seeds. The measured gaps are test
    error minus training error, of the stochastic (Gibbs) predictor and of the
    posterior-mean predictor. The certified gap is the bound minus the Gibbs training
    error. Gaps at or below 0 cannot be drawn on a log axis and are left out of the lines.
    Rows certified with a data-dependent prior add one line, their bound.
    """
    styles = method_styles(sorted(dict.fromkeys(table["method"])))
    columns_used = ["gap", "mean_gap", "bound_kl", "train_error", "test_error"]
    prior = table["prior"] if "prior" in table else pd.Series("initialization", index=table.index)
    data_prior = prior.astype(str).str.startswith("data")
    means = table[~data_prior].groupby(["train_set", "method", "n"], sort=True)[columns_used].mean().reset_index()
    data_means = table[data_prior].groupby(["train_set", "method", "n"], sort=True)["bound_kl"].mean().reset_index()
    panels = list(means[["train_set", "method"]].drop_duplicates().itertuples(index=False, name=None))
    several_sets = means["train_set"].nunique() > 1
    columns = min(4, max(1, len(panels)))
    rows = max(1, int(np.ceil(len(panels) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.0 * rows), squeeze=False, sharey=True)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, (train_set, method) in zip(axes.flat, panels):
        rows_of = means[(means["method"] == method) & (means["train_set"] == train_set)]
        color, marker = styles[method]["color"], styles[method]["marker"]
        measured = rows_of["gap"].where(rows_of["gap"] > 0)
        axis.plot(rows_of["n"], rows_of["bound_kl"], color=color, marker=marker, linestyle="-", label="PAC-Bayes-kl bound")
        axis.plot(rows_of["n"], rows_of["bound_kl"] - rows_of["train_error"], color=color, marker=marker,
                  linestyle="--", label="certified gap")
        axis.plot(rows_of["n"], measured, color="grey", marker=marker, linestyle=":", label="measured gap, Gibbs")
        axis.plot(rows_of["n"], rows_of["mean_gap"].where(rows_of["mean_gap"] > 0), color=color, marker=marker,
                  linestyle=":", alpha=0.6, label="measured gap, posterior mean")
        with_data_prior = data_means[(data_means["method"] == method) & (data_means["train_set"] == train_set)]
        if len(with_data_prior):
            axis.plot(with_data_prior["n"], with_data_prior["bound_kl"], color=color, marker=marker, linestyle="-.",
                      alpha=0.8, label="bound, data-dependent prior")
        axis.set_xscale("log")
        axis.set_yscale("log")
        sizes = sorted(rows_of["n"].unique())
        axis.set_xticks(sizes, [str(int(n)) for n in sizes], fontsize=7, rotation=45)
        axis.minorticks_off()
        axis.set_title(f"{method} ({train_set})" if several_sets else method, fontsize=9)
        axis.legend(fontsize=6, loc="lower left")
        axis.set_xlabel("training pairs n", fontsize=8)
    for axis in axes[:, 0]:
        axis.set_ylabel("pairwise 0-1 risk")
    _save(figure, png_path, pdf_path)
