"""An out-of-tree method, taken from docs/adding-a-baseline.md, runs through the DAG to main.csv."""

from __future__ import annotations

import os
from pathlib import Path
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow


def example_module(repo_root: Path) -> str:
    text = (repo_root / "docs" / "adding-a-baseline.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "the guide should hold exactly one python block"
    return blocks[0]


def test_plugin_method_listed(repo_root, tmp_path):
    (tmp_path / "hinge_baseline.py").write_text(example_module(repo_root))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    listing = subprocess.run([sys.executable, "-m", "vrm", "methods", "--plugin", "hinge_baseline"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^hinge\s+Hinge loss", listing.stdout, flags=re.MULTILINE)


def test_plugin_method_reaches_main_table(repo_root, data_root, tmp_path):
    (tmp_path / "hinge_baseline.py").write_text(example_module(repo_root))
    results = tmp_path / "results"
    config = {
        "results_dir": str(results),
        "data_root": str(data_root),
        "plugins": ["hinge_baseline"],
        # Merged over the CI config's methods; only bt (the baseline) and hinge stay on.
        "methods": {"bt": {"hidden": 64}, "hinge": {"hidden": 64}, "vrm": False, "inform": False,
                    "vrm-deterministic": False},
        "cues": None,
        "generalization": None,
        "train_sets": {"rmb": {"sources": ["rmb"], "max_pairs": 300}},
        "seeds": [0, 1],
        "tune": {"num_samples": 2, "spaces": {"hinge": {"learning_rate": {"loguniform": [0.0003, 0.003]},
                                                         "margin": {"uniform": [0.1, 2.0]}}}},
    }
    override = tmp_path / "plugin.yaml"
    override.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "workflows/config/ci.yaml", str(override)],
        cwd=repo_root, capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    main = pd.read_csv(results / "tables" / "main.csv")
    hinge = main[(main["method"] == "hinge") & (main["metric"] == "accuracy")]
    assert "in-distribution" in set(hinge["benchmark"])
    assert set(hinge["benchmark"]) == set(main.loc[main["method"] == "bt", "benchmark"])
    assert (hinge["n_seeds"] == 2).all()
    best = yaml.safe_load((results / "tune" / "rmb" / "hinge" / "best_config.yaml").read_text())
    assert set(best["method_options"]) == {"margin"}
    comparisons = pd.read_csv(results / "tables" / "comparisons.csv")
    assert "hinge" in set(comparisons["method"])
