"""The whole DAG end to end on workflows/config/ci.yaml: real Snakemake, MiniLM and data."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow


def snakemake(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(command, cwd=repo_root, capture_output=True, text=True, env=dict(os.environ))


def enabled_methods(repo_root: Path) -> set[str]:
    """Methods the CI config runs: the default's, less those it sets to false."""
    from vrm.config import load_config

    config = load_config(repo_root / "workflows/config/ci.yaml")
    return {name for name, options in config["methods"].items() if options is not False}


@pytest.fixture(scope="module")
def ci_run(repo_root, data_root, tmp_path_factory):
    """Run the DAG once on ci.yaml with results in a temporary folder.

    With VRM_TEST_CI_RESULTS set to the results folder of a finished
    `snakemake --configfile workflows/config/ci.yaml` in this checkout, the tests read that
    run instead; CI sets it so the DAG runs once for the tests and for its own checks.
    """
    finished = os.environ.get("VRM_TEST_CI_RESULTS")
    if finished:
        results = (repo_root / finished).resolve()
        if not (results / "tables" / "main.csv").is_file():
            pytest.fail(f"VRM_TEST_CI_RESULTS={finished}: no tables/main.csv there; run the CI config first")
        return results, ("--configfile", "workflows/config/ci.yaml")
    results = tmp_path_factory.mktemp("dag") / "results"
    override = results.parent / "override.yaml"
    # The feature cache is keyed by content, so sharing the checkout's cache is safe.
    override.write_text(yaml.safe_dump({"results_dir": str(results), "data_root": str(data_root)}))
    args = ("--configfile", "workflows/config/ci.yaml", str(override))
    run = snakemake(repo_root, *args)
    assert run.returncode == 0, run.stderr[-4000:]
    return results, args


def test_main_table_covers_every_benchmark(ci_run, repo_root):
    results, _ = ci_run
    config = yaml.safe_load((repo_root / "workflows/config/ci.yaml").read_text())
    default = yaml.safe_load((repo_root / "workflows/config/default.yaml").read_text())
    main = pd.read_csv(results / "tables" / "main.csv")
    assert list(main.columns)[:8] == ["train_set", "method", "benchmark", "metric", "mean", "ci95_low", "ci95_high", "n_seeds"]

    benchmarks = {"in-distribution"} | {b["name"] for b in default["benchmarks"]}
    assert {"rmb/best-of-n", "length/chosen-longer", "length/chosen-shorter"} <= benchmarks
    methods = enabled_methods(repo_root)
    assert {"vrm", "bt"} <= methods
    assert set(main["method"]) == methods
    for train_set in config["train_sets"]:
        for method in methods:
            rows = main[(main["train_set"] == train_set) & (main["method"] == method)]
            assert set(rows["benchmark"]) == benchmarks, (train_set, method)
            for benchmark, metrics in rows.groupby("benchmark")["metric"]:
                assert set(metrics) >= {"accuracy", "nll", "ece", "brier", "length_spearman"}, benchmark
            assert (rows["n_seeds"] == len(config["seeds"])).all()
    best_of_n = main[(main["benchmark"] == "rmb/best-of-n") & (main["metric"] == "accuracy")]
    pair_level = main[(main["benchmark"] == "rmb/best-of-n") & (main["metric"] == "pair_accuracy")]
    # A set is solved only when every one of its pairs is right.
    assert (best_of_n["mean"].to_numpy() <= pair_level["mean"].to_numpy() + 1e-12).all()
    assert (best_of_n["n_prompts"] < best_of_n["n_pairs"]).all()
    accuracy = main[main["metric"] == "accuracy"]
    assert accuracy["mean"].between(0, 1).all()
    assert (accuracy["ci95_low"] <= accuracy["mean"]).all()
    assert (accuracy["mean"] <= accuracy["ci95_high"]).all()


def test_cue_rows_and_benchmark_sizes(ci_run, repo_root):
    results, _ = ci_run
    config = yaml.safe_load((repo_root / "workflows/config/ci.yaml").read_text())
    cues = config["cues"]
    main = pd.read_csv(results / "tables" / "main.csv")
    for cue in cues["templates"]:
        rows = main[(main["train_set"] == f"{cues['train_set']}+{cue}") & (main["metric"] == "accuracy")]
        expected = {f"cue/{condition}@{float(rho)!r}" for condition in ("clean", "reversed") for rho in cues["rhos"]}
        assert set(rows["benchmark"]) == expected
        assert set(rows["method"]) == enabled_methods(repo_root)
        assert (rows["n_seeds"] == len(cues["seeds"])).all()
        comparisons = pd.read_csv(results / "tables" / "comparisons.csv")
        compared = comparisons[comparisons["train_set"] == f"{cues['train_set']}+{cue}"]
        assert set(compared["benchmark"]) == expected
    sizes = pd.read_csv(results / "tables" / "benchmarks.csv")
    bon = sizes[sizes["benchmark"] == "rmb/best-of-n"].iloc[0]
    prepared = json.loads((results / "data" / "prepare.json").read_text())
    assert bon["left_out_prompt_in_training"] == prepared["rmb-bon"]["left_out_prompt_in_training"] > 0
    report = json.loads((results / "features" / "cue" / "polite.json").read_text())
    assert report["cue_text_after_response"] is False
    assert report["pairs"] > 0


def test_generalization_table_covers_every_method(ci_run, repo_root):
    results, _ = ci_run
    config = yaml.safe_load((repo_root / "workflows/config/ci.yaml").read_text())
    table = pd.read_csv(results / "tables" / "generalization.csv")
    assert set(table["method"]) == enabled_methods(repo_root)
    assert set(table["seed"]) == set(config["generalization"]["seeds"])
    assert table["n"].min() == config["generalization"]["start_size"]
    for column in ("train_error", "test_error", "gap", "kl", "bound_kl", "bound_mcallester", "bound_lambda"):
        assert table[column].notna().all(), column
    assert (table["bound_kl"] >= table["train_error"]).all()
    assert (table["bound_kl"] <= table["bound_mcallester"] + 1e-9).all()
    assert (table["bound_kl"] >= table["test_error"]).all()
    synthetic = table[table["train_set"] == "synthetic"]
    assert set(synthetic["method"]) == enabled_methods(repo_root)
    assert synthetic["true_error"].notna().all()
    assert (synthetic["bound_kl"] >= synthetic["true_error"]).all()
    # With a data-dependent prior every (train set, method, n, seed) has a second row, whose
    # bound counts only the pairs the prior did not see.
    data_prior = table[table["prior"].str.startswith("data")]
    initialization = table[table["prior"] == "initialization"]
    assert len(data_prior) == len(initialization)
    assert (initialization["n_bound"] == initialization["n"]).all()
    fraction = config["generalization"]["data_prior"]["fraction"]
    assert (data_prior["n_bound"] == data_prior["n"] - (fraction * data_prior["n"]).astype(int)).all()
    for name in ("generalization.png", "generalization.pdf"):
        assert (results / "figures" / name).stat().st_size > 1000


def test_comparisons_and_figures_exist(ci_run, repo_root):
    results, _ = ci_run
    comparisons = pd.read_csv(results / "tables" / "comparisons.csv")
    assert set(comparisons["method"]) == enabled_methods(repo_root) - {"bt"}
    assert set(comparisons["baseline"]) == {"bt"}
    assert comparisons["p_value"].between(0, 1).all()
    assert (results / "tables" / "main.md").read_text().startswith("### Trained on")
    for name in ("main.png", "main.pdf", "cue.png", "cue.pdf", "reliability.png", "reliability.pdf"):
        assert (results / "figures" / name).stat().st_size > 1000


def test_no_test_pair_in_training(ci_run):
    results, _ = ci_run
    pairs = pd.read_parquet(results / "data" / "pairs.parquet")
    sides = pairs.groupby("group")["split"].nunique()
    assert (sides == 1).all(), sides[sides > 1].index[:5].tolist()
    assert set(pairs["split"]) == {"train", "validation", "test"}


def test_manifest_records_provenance(ci_run, data_root):
    results, _ = ci_run
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["git"]["commit"] is None or len(manifest["git"]["commit"]) == 40
    assert len(manifest["config_sha256"]) == 64
    assert {"torch", "transformers", "ray", "snakemake", "numpy", "python"} <= set(manifest["packages"])
    assert manifest["seeds"]["training"] == manifest["config"]["seeds"]
    assert manifest["hardware"]["cpus"] >= 1

    files = {entry["file"]: entry for entry in manifest["data_files"] if "file" in entry}
    rmb = [name for name in files if name.startswith("rmb/")]
    assert rmb, sorted(files)[:5]
    entry = files[rmb[0]]
    assert entry["sha256"] == hashlib.sha256((data_root / rmb[0]).read_bytes()).hexdigest()
    assert entry["bytes"] == (data_root / rmb[0]).stat().st_size
    weights = manifest["backbone"]["files"]["model.safetensors"]
    assert len(weights) == 64

    for table in ("main.csv", "comparisons.csv", "metrics_per_seed.csv", "benchmarks.csv", "generalization.csv"):
        assert set(pd.read_csv(results / "tables" / table)["manifest"]) == {manifest["id"]}, table
    assert manifest["id"] in (results / "tables" / "main.md").read_text()


def test_figures_target_rebuilds_without_training(ci_run, repo_root):
    results, args = ci_run
    before = {path.name: path.stat().st_size for path in (results / "figures").iterdir()}
    assert {"main.png", "main.pdf", "generalization.png", "cue.pdf", "reliability.pdf"} <= set(before)
    shutil.rmtree(results / "figures")
    run = snakemake(repo_root, "figures", *args)  # a target after --configfile would be read as a config file
    assert run.returncode == 0, run.stderr[-3000:]
    ran = set(re.findall(r"^(?:local)?rule (\w+):", run.stderr, flags=re.MULTILINE))
    assert ran == {"plot", "generalization_table", "figures"}, ran
    assert {path.name for path in (results / "figures").iterdir()} == set(before)


def test_report_builds_offline(ci_run, repo_root, tmp_path):
    _, args = ci_run
    report = tmp_path / "report.html"
    # Without --cores, as the README gives the command; the workflow profile supplies it.
    run = subprocess.run([sys.executable, "-m", "snakemake", "--report", str(report), *args],
                         cwd=repo_root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for text in ("main.png", "generalization.png", "comparisons.csv", "Reliability diagrams"):
        assert text in html, text


def test_rerun_runs_no_job(ci_run, repo_root):
    _, args = ci_run
    run = snakemake(repo_root, *args, "--dry-run")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Nothing to be done" in run.stdout + run.stderr
