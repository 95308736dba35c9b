"""Ray Tune sweeps: a real sweep, resume after an interruption, best configuration, no test pairs."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from vrm.tune import best_configuration, build_space, plot_sweep, split_trial_config

JOB = Path(__file__).with_name("sweep_job.py")


def run_job(storage: Path, events: Path, num_samples: int, max_epochs: int, *extra: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(JOB.parent))
    return subprocess.Popen(
        [sys.executable, str(JOB), str(storage), str(events), str(num_samples), str(max_epochs), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kwargs,
    )


def read_events(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


def test_four_trial_sweep_and_best_config(tmp_path):
    job = run_job(tmp_path / "ray", tmp_path / "events.log", num_samples=4, max_epochs=4)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output[-3000:]
    assert "finished 4 trials, 0 errors" in output

    table = pd.read_csv(tmp_path / "ray" / "trials.csv", keep_default_na=False, na_values=[""])
    assert len(table) == 4
    assert set(table["status"]) == {"TERMINATED"}
    assert (table["epochs"] == 4).all()
    assert table["config/learning_rate"].between(1e-4, 1e-2).all()

    best = best_configuration(table, "bt", "validation_pair_nll")
    assert best["value"] == pytest.approx(table["best_validation_pair_nll"].min())
    winner = table.loc[table["best_validation_pair_nll"].idxmin()]
    assert best["trial_id"] == winner["trial_id"]
    assert best["training"]["learning_rate"] == pytest.approx(winner["config/learning_rate"])
    assert best["method_options"]["hidden"] == winner["config/hidden"]

    columns = plot_sweep(table, "validation_pair_nll", str(tmp_path / "sweep.png"), str(tmp_path / "sweep.pdf"), "bt")
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert (tmp_path / "sweep.pdf").read_bytes().startswith(b"%PDF")
    assert set(columns) <= {"learning_rate", "hidden"}


def test_interrupted_sweep_resumes_without_repeats(tmp_path):
    storage, events = tmp_path / "ray", tmp_path / "events.log"
    job = run_job(storage, events, num_samples=6, max_epochs=60, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any(event == "end" for event, _ in read_events(events)):
        time.sleep(0.5)
    ended_before = {trial for event, trial in read_events(events) if event == "end"}
    assert ended_before, "no trial finished before the deadline"
    os.killpg(job.pid, signal.SIGINT)
    job.communicate(timeout=120)
    assert len(ended_before) < 6, "the sweep finished before it could be interrupted"
    lines_before = len(read_events(events))

    rerun = run_job(storage, events, num_samples=6, max_epochs=60)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output[-3000:]
    assert "finished 6 trials, 0 errors" in output

    after = read_events(events)[lines_before:]
    restarted = {trial for event, trial in after if event == "start"}
    assert not (restarted & ended_before), "a finished trial ran again"
    ended = {trial for event, trial in read_events(events) if event == "end"}
    assert len(ended) == 6


def test_failed_trials_are_retried_and_recorded(tmp_path):
    job = run_job(tmp_path / "ray", tmp_path / "events.log", 6, 3, "failing")
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output[-3000:]
    table = pd.read_csv(tmp_path / "ray" / "trials.csv", keep_default_na=False, na_values=[""])
    assert len(table) == 6
    failed = table[table["status"] == "ERROR"]
    assert len(failed) >= 1
    assert (failed["config/dropout"] == 2.0).all()
    assert failed["error"].str.contains("dropout").all()
    assert (table.loc[table["status"] == "TERMINATED", "config/dropout"] == 0.1).all()
    # max_failures = 1: every failing trial started twice.
    starts = [trial for event, trial in read_events(tmp_path / "events.log") if event == "start"]
    for trial in failed["trial_id"]:
        assert starts.count(trial) == 2, trial
    best = best_configuration(table, "bt", "validation_pair_nll")
    assert best["failed_trials"] == len(failed)
    assert best["method_options"]["dropout"] == 0.1


def test_sweep_inputs_exclude_test_pairs():
    from vrm.pipeline import sweep_inputs

    pairs = pd.DataFrame({
        "pair_id": [f"p{i}" for i in range(9)],
        "train_set": ["a"] * 6 + ["b"] * 3,
        "split": ["train", "validation", "test"] * 3,
    })
    tensors = {key: torch.arange(9, dtype=torch.float32).reshape(9, 1) for key in ("prompt", "chosen", "rejected")}
    inputs = sweep_inputs(pairs, tensors, "a")
    seen = set(inputs["train"][1]) | set(inputs["validation"][1])
    test_ids = set(pairs.loc[pairs["split"] == "test", "pair_id"])
    assert seen == {"p0", "p1", "p3", "p4"}
    assert not seen & test_ids
    assert inputs["train"][0]["chosen"].flatten().tolist() == [0.0, 3.0]


def test_search_space_and_split():
    space = build_space({"learning_rate": {"loguniform": [1e-4, 1e-2]}, "num_features": {"choice": [4, 8]}, "dropout": 0.1})
    assert space["dropout"] == 0.1
    assert 1e-4 <= space["learning_rate"].sample() <= 1e-2
    options, training = split_trial_config("vrm", {"learning_rate": 0.01, "num_features": 4, "dropout": 0.1})
    assert options == {"num_features": 4, "dropout": 0.1}
    assert training == {"learning_rate": 0.01}


def test_unknown_search_key_is_rejected():
    from vrm.errors import UserError

    with pytest.raises(UserError, match="tune.spaces.bt.num_features"):
        split_trial_config("bt", {"num_features": 4})
    with pytest.raises(UserError, match="expected one of"):
        build_space({"learning_rate": {"logunif": [1e-4, 1e-2]}})


def _halving_in_index_order(histories: list[list[float]], rungs: list[int], factor: float) -> list[int]:
    """Epochs each trial runs when trials report one after another, lower metric better."""
    recorded: dict[int, list[float]] = {rung: [] for rung in rungs}
    epochs = []
    for history in histories:
        ran = len(history)
        for epoch, value in enumerate(history, start=1):
            if epoch in recorded:
                earlier = recorded[epoch]
                stop = bool(earlier) and -value < np.percentile(-np.array(earlier), (1 - 1 / factor) * 100)
                earlier.append(value)
                if stop:
                    ran = epoch
                    break
        epochs.append(ran)
    return epochs


def _run_board(folder: Path, histories: list[list[float]], delays: list[float]) -> list[int]:
    """Run each trial in a thread, two at a time and started in index order, as Ray does."""
    from concurrent.futures import ThreadPoolExecutor

    from vrm.tune import RungBoard

    board = RungBoard(folder, metric="loss", mode="min", grace_period=2, reduction_factor=2, max_t=16)
    assert board.rungs == [2, 4, 8]

    def trial(index: int) -> int:
        board.start(index)
        epochs = 0
        for epoch, value in enumerate(histories[index], start=1):
            time.sleep(delays[index])
            epochs = epoch
            if board.should_stop(index, epoch, {"loss": value}):
                break
        board.end(index, epochs)
        return epochs

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(trial, range(len(histories))))


def test_rung_board_ignores_report_order(tmp_path):
    rng = np.random.default_rng(0)
    # Some trials end early by their own patience (shorter histories), as in training.
    histories = [list(np.cumsum(rng.normal(0.0, 0.1, size=int(rng.integers(3, 13))) + 1.0)) for _ in range(10)]
    expected = _halving_in_index_order(histories, [2, 4, 8], 2.0)
    assert min(expected) < max(len(h) for h in histories)  # halving stopped some trial

    slow_first = _run_board(tmp_path / "a", histories, [0.004 if i % 2 == 0 else 0.0 for i in range(10)])
    slow_second = _run_board(tmp_path / "b", histories, [0.0 if i % 2 == 0 else 0.004 for i in range(10)])
    assert slow_first == expected
    assert slow_second == expected


def test_halving_sweep_repeats_exactly(tmp_path):
    tables = []
    for run in ("first", "second"):
        job = run_job(tmp_path / run, tmp_path / f"{run}.log", 6, 8, "halving")
        output, _ = job.communicate(timeout=600)
        assert job.returncode == 0, output[-3000:]
        table = pd.read_csv(tmp_path / run / "trials.csv", keep_default_na=False, na_values=[""])
        table["index"] = table["trial_id"].str.extract(r"_(\d+)$")[0].astype(int)
        tables.append(table.sort_values("index").reset_index(drop=True))
    first, second = tables
    assert (first["epochs"] < 8).any()  # halving stopped a trial
    assert first["epochs"].tolist() == second["epochs"].tolist()
    assert first["best_validation_pair_nll"].tolist() == second["best_validation_pair_nll"].tolist()
    assert first["config/learning_rate"].tolist() == second["config/learning_rate"].tolist()


def test_sweep_figure_without_trials(tmp_path):
    columns = plot_sweep(pd.DataFrame(), "validation_pair_nll", str(tmp_path / "sweep.png"), str(tmp_path / "sweep.pdf"),
                         "vrm", note="tune.enabled is false: no sweep")
    assert columns == []
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert (tmp_path / "sweep.pdf").read_bytes().startswith(b"%PDF")
