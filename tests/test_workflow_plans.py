"""Snakemake plans of the fine-tune and cluster configs, and the config rules of fine-tune mode."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest
import yaml

from vrm.config import load_config
from vrm.errors import UserError


def plan(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `snakemake -n` with the given arguments and return the finished process."""
    command = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args]
    return subprocess.run(command, cwd=repo_root, capture_output=True, text=True, env=dict(os.environ))


def job_counts(output: str) -> dict[str, int]:
    """Parse the job table that `snakemake -n --quiet rules` prints."""
    counts = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            counts[parts[0]] = int(parts[1])
    return counts


def test_paper_config_plans_on_slurm(repo_root):
    run = plan(repo_root, "--profile", "workflows/profiles/slurm", "--configfile", "workflows/config/paper.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout + run.stderr)
    config = load_config(repo_root / "workflows/config/paper.yaml")
    methods = [name for name, options in config["methods"].items() if options is not False]
    assert "grm" in methods
    assert counts["finetune"] == len(config["train_sets"]) * len(methods) * len(config["seeds"])
    assert counts["export"] == len(methods)
    assert "features" not in counts
    assert "tune" not in counts


def test_paper_finetune_jobs_get_gpu_resources(repo_root, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "workflows/profiles/slurm",
         "--configfile", "workflows/config/paper.yaml"],
        cwd=repo_root, capture_output=True, text=True, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-3000:]
    blocks = (run.stdout + run.stderr).split("\nrule ")
    finetune = [block for block in blocks if block.startswith("finetune:")]
    assert finetune
    for block in finetune:
        resources = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
        assert "gpu=1" in resources, resources
        assert "slurm_partition=gpu" in resources, resources


def test_smoke_config_plans_finetune_and_export(repo_root, tmp_path):
    # Results in an empty folder, so outputs of an earlier run in the checkout do not shorten the plan.
    override = write_override(tmp_path, {"results_dir": str(tmp_path / "results"),
                                         "export": {"dir": str(tmp_path / "export")}})
    run = plan(repo_root, "--configfile", "workflows/config/finetune-smoke.yaml", str(override))
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout + run.stderr)
    assert counts.get("finetune") == 2, counts
    assert counts.get("export") == 2, counts


def write_override(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_export_needs_finetune_mode(tmp_path):
    with pytest.raises(UserError, match="export .*needs mode: finetune"):
        load_config(write_override(tmp_path, {"export": {"dir": "out"}}))


def test_finetune_mode_rejects_cues(repo_root, tmp_path):
    with pytest.raises(UserError, match="cues needs cached features"):
        load_config(repo_root / "workflows/config/finetune-smoke.yaml",
                    write_override(tmp_path, {"cues": {"train_set": "rmb", "rhos": [1.0], "seeds": [0],
                                                       "templates": {"x": "{response}!"}}}))


def test_export_train_set_must_exist(repo_root, tmp_path):
    with pytest.raises(UserError, match="export.train_set = 'human'"):
        load_config(repo_root / "workflows/config/finetune-smoke.yaml",
                    write_override(tmp_path, {"export": {"train_set": "human"}}))


def test_false_train_set_is_left_out(tmp_path):
    config = load_config(write_override(tmp_path, {"train_sets": {"human": False}, "cues": None,
                                                   "generalization": None}))
    assert list(config["train_sets"]) == ["rmb"]


def test_misspelt_finetune_key_names_it(tmp_path):
    with pytest.raises(UserError, match="max_step"):
        load_config(write_override(tmp_path, {"mode": "finetune", "cues": None, "generalization": None,
                                              "finetune": {"max_step": 3}}))
