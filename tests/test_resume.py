"""A main job stopped with SIGTERM during training is finished by the same command, and
the rerun repeats no finished job."""

from __future__ import annotations

from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

OFF = (
    "bt-margin", "bt-center", "bt-smooth", "inform", "armo", "odin", "ensemble", "ensemble-conservative",
    "gaussian", "vrm-no-weights", "vrm-deterministic", "vrm-no-feature-kl",
)


def outputs_with_times(results: Path) -> dict[str, int]:
    """Modification time of each finished model, score and sweep file."""
    found = {}
    for pattern in ("models/**/model.safetensors", "scores/**/*.parquet", "tune/**/best_config.yaml"):
        for path in results.glob(pattern):
            found[str(path.relative_to(results))] = path.stat().st_mtime_ns
    return found


def test_sigterm_then_rerun_finishes(repo_root, data_root, tmp_path):
    results = tmp_path / "results"
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({
        "results_dir": str(results),
        "cache_dir": str(tmp_path / "cache"),
        "data_root": str(data_root),
        "train_sets": {"rmb": {"sources": ["rmb"], "max_pairs": 200}, "human": False},
        "benchmark_sources": {"bigbench-hhh": False, "rm-bench": False, "rmb-bon": False},
        "benchmarks": [],
        "cues": None,
        "generalization": None,
        "methods": {name: False for name in OFF},
        "seeds": [0, 1, 2, 3],
        "tune": {"num_samples": 2},
    }))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "workflows/config/ci.yaml",
               str(override)]
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        job = subprocess.Popen(command, cwd=repo_root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 480
        while time.time() < deadline and job.poll() is None:
            if list(results.glob("models/rmb/*/seed*/model.safetensors")):
                break
            time.sleep(0.2)
        assert job.poll() is None, first_log.read_text()[-3000:]
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    assert job.returncode != 0, "the run ended before it was stopped"
    assert not (results / "tables" / "main.csv").exists()

    finished = outputs_with_times(results)
    assert any(name.startswith("models/") for name in finished)
    rerun = subprocess.run(command, cwd=repo_root, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    # No finished output was written again, and no job ran for it.
    after = outputs_with_times(results)
    for name, mtime in finished.items():
        assert after[name] == mtime, f"{name} was written again"
    ran = set(re.findall(r"output: ([^\n]+)", rerun.stderr))
    for name in finished:
        assert not any(name in line for line in ran), f"the rerun ran the job of {name}"

    main = pd.read_csv(results / "tables" / "main.csv")
    assert set(main["method"]) == {"vrm", "bt"}
    assert (main.loc[main["metric"] == "accuracy", "n_seeds"] == 4).all()
    assert len(after) == 2 + 2 * 4 * 2  # two sweeps, then a model and a score file per method and seed
