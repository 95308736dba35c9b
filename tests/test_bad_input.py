"""Bad input: a clear message naming the thing and the fix, a non-zero exit, no traceback,
and the results already in the results folder left as they were."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from vrm.backbones.features import save_pair_features
from vrm.errors import UserError
from vrm.pipeline import _load_features

GOOD = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}


def jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (jsonl(GOOD) + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n', ":2: invalid UTF-8: byte 0xe9"),
        (jsonl(GOOD) + b'{"prompt": "x", "chosen": \n', ":2: invalid JSON"),
        (jsonl(GOOD, {"prompt": "x", "chosen": "a"}), "missing field 'rejected'"),
        (jsonl(GOOD, {"prompt": "x", "chosen": "a", "rejected": 7}), "field 'rejected' is a number"),
        (b"", "empty file"),
    ],
    ids=["invalid-utf8", "invalid-json", "missing-field", "wrong-type", "empty-file"],
)
def test_data_check_rejects_file(tmp_path, content, message):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(content)
    run = subprocess.run([sys.executable, "-m", "vrm", "data", "check", str(path)], capture_output=True, text=True)
    assert run.returncode == 1, run.stdout
    assert str(path) in run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_nan_features_name_the_pair(tmp_path):
    pairs = pd.DataFrame({"pair_id": ["a:0", "a:1", "a:2"], "chosen": ["x", "y", "z"], "rejected": ["u", "v", "w"]})
    pairs.to_parquet(tmp_path / "pairs.parquet")
    tensors = {key: torch.zeros(3, 4) for key in ("prompt", "chosen", "rejected")}
    tensors["chosen"][1, 2] = float("nan")
    tensors["rejected"][2, 0] = float("inf")
    save_pair_features(tmp_path / "features.safetensors", tensors, {})
    with pytest.raises(UserError) as raised:
        _load_features(str(tmp_path / "pairs.parquet"), str(tmp_path / "features.safetensors"))
    assert "a:1" in str(raised.value)
    assert "NaN or infinite" in str(raised.value)


# The DAG on a local file: only the local training set, no benchmark source, no stress test.
LOCAL_CONFIG = {
    "benchmark_sources": {"bigbench-hhh": False, "rm-bench": False, "rmb-bon": False},
    "benchmarks": [],
    "cues": None,
    "generalization": None,
    "methods": {name: False for name in (
        "bt-margin", "bt-center", "bt-smooth", "inform", "armo", "odin", "ensemble", "ensemble-conservative",
        "gaussian", "vrm-no-weights", "vrm-deterministic", "vrm-no-feature-kl",
    )},
}


@pytest.fixture
def earlier_results(tmp_path) -> Path:
    """A results folder that already contains results of an earlier run."""
    results = tmp_path / "results"
    for name, text in {"tables/main.csv": "train_set,method\nrmb,vrm\n", "models/rmb/vrm/seed0/settings.json": "{}\n",
                       "data/prepare.json": "{}\n"}.items():
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_text(text)
    return results


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def run_dag(repo_root: Path, results: Path, override: dict) -> subprocess.CompletedProcess:
    config = results.parent / "override.yaml"
    config.write_text(yaml.safe_dump({**LOCAL_CONFIG, "results_dir": str(results), **override}))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "workflows/config/ci.yaml", str(config),
         "--until", "prepare"],
        cwd=repo_root, capture_output=True, text=True, env=dict(os.environ),
    )


def local_train_set(path: Path) -> dict:
    return {"train_sets": {"rmb": False, "human": False,
                           "mine": {"sources": [{"source": "local", "name": "mine", "path": str(path)}]}}}


def assert_clean_failure(run: subprocess.CompletedProcess, message: str) -> None:
    assert run.returncode != 0, run.stderr[-3000:]
    assert message in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


def test_empty_after_filtering(repo_root, earlier_results):
    data = earlier_results.parent / "ties.jsonl"
    data.write_bytes(jsonl(*({"prompt": f"q{i}", "chosen": "same", "rejected": "same"} for i in range(20))))
    before = snapshot(earlier_results)
    run = run_dag(repo_root, earlier_results, local_train_set(data))
    assert_clean_failure(run, "no pairs")
    after = snapshot(earlier_results)
    assert after["tables/main.csv"] == before["tables/main.csv"]
    assert after["models/rmb/vrm/seed0/settings.json"] == before["models/rmb/vrm/seed0/settings.json"]


def test_split_with_one_pair(repo_root, earlier_results):
    data = earlier_results.parent / "four.jsonl"
    data.write_bytes(jsonl(*({"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4))))
    before = snapshot(earlier_results)
    run = run_dag(repo_root, earlier_results, local_train_set(data))
    assert_clean_failure(run, "training set 'mine' has")
    assert "raise max_pairs or add sources" in run.stderr
    after = snapshot(earlier_results)
    assert after["tables/main.csv"] == before["tables/main.csv"]
    assert after["models/rmb/vrm/seed0/settings.json"] == before["models/rmb/vrm/seed0/settings.json"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"methods": {"vrmm": {}}}, "config: methods.vrmm: unknown method (did you mean 'vrm'?)"),
        ({"methods": {"vrm": {"hiden": 64}}}, "config: methods.vrm.hiden: unknown option (did you mean 'hidden'?)"),
        ({"trainning": {"max_epochs": 3}}, "config: unknown key 'trainning' (did you mean 'training'?)"),
        ({"training": {"max_epochs": "ten"}}, "training.max_epochs"),
    ],
    ids=["unknown-method", "unknown-method-option", "misspelt-key", "wrong-type"],
)
def test_config_error_before_any_job(repo_root, earlier_results, override, message):
    before = snapshot(earlier_results)
    run = run_dag(repo_root, earlier_results, override)
    assert_clean_failure(run, message)
    assert snapshot(earlier_results) == before
    assert not (earlier_results / "logs").exists()
