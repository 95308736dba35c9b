"""Best-of-N sets, length splits, RewardBench sections and reliability bins in the result tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vrm.data.sections import load_section_table
from vrm.data.sources import load_source
from vrm.evaluate.metrics import ece, length_spearman, reliability_bins
from vrm.report.aggregate import ScoreFile, benchmark_sets, compare_to_baseline, per_seed_metrics, reliability_table, summarize


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {"source": "s", "aspect": "", "subset": "", "split": "test", "train_set": "", "prompt": "p"}
    return pd.DataFrame([{**base, **row} for row in rows])


def scores(rewards: dict[str, tuple[float, float]]) -> pd.DataFrame:
    ids = list(rewards)
    chosen = np.array([rewards[i][0] for i in ids])
    rejected = np.array([rewards[i][1] for i in ids])
    return pd.DataFrame({"pair_id": ids, "reward_chosen": chosen, "reward_rejected": rejected,
                         "p_chosen": 1 / (1 + np.exp(rejected - chosen))})


def metric(main: pd.DataFrame, benchmark: str, name: str, method: str = "m") -> float:
    rows = main[(main["benchmark"] == benchmark) & (main["metric"] == name) & (main["method"] == method)]
    return float(rows["mean"].iloc[0])


def test_best_of_n_needs_every_candidate_beaten():
    pairs = frame([
        {"pair_id": "a1", "source": "bon", "subset": "A", "chosen": "best", "rejected": "x"},
        {"pair_id": "a2", "source": "bon", "subset": "A", "chosen": "best", "rejected": "y"},
        {"pair_id": "b1", "source": "bon", "subset": "B", "chosen": "best", "rejected": "z"},
        {"pair_id": "c1", "source": "bon", "subset": "C", "chosen": "best", "rejected": "w"},
        {"pair_id": "c2", "source": "bon", "subset": "C", "chosen": "best", "rejected": "v"},
    ])
    benchmarks = [{"name": "bon", "source": "bon", "kind": "best-of-n"}]
    # A: both right (solved); B: right (solved); C: one wrong, one tie (not solved).
    item = ScoreFile("t", "m", 0, scores({"a1": (2, 1), "a2": (2, 0), "b1": (1, 0), "c1": (1, 3), "c2": (1, 1)}))
    main = summarize(per_seed_metrics(pairs, [item], benchmarks, bins=15))
    assert metric(main, "bon", "accuracy") == pytest.approx(2 / 3)
    assert metric(main, "bon", "pair_accuracy") == pytest.approx((1 + 1 + 1 + 0 + 0.5) / 5)
    row = main[(main["benchmark"] == "bon") & (main["metric"] == "accuracy")].iloc[0]
    assert row["n_pairs"] == 5


def test_length_split_by_longer_response():
    pairs = frame([
        {"pair_id": "p1", "train_set": "t", "chosen": "one two three", "rejected": "one"},
        {"pair_id": "p2", "train_set": "t", "chosen": "one", "rejected": "one two three"},
        {"pair_id": "p3", "train_set": "t", "chosen": "one two", "rejected": "three four"},
        {"pair_id": "p4", "train_set": "u", "chosen": "a b c d", "rejected": "a"},
    ])
    benchmarks = [{"name": "length/chosen-longer", "source": "in-distribution", "length": "chosen-longer"},
                  {"name": "length/chosen-shorter", "source": "in-distribution", "length": "chosen-shorter"}]
    sets = {b.name: list(b.ids) for b in benchmark_sets(pairs, "t", benchmarks)}
    assert sets == {"in-distribution": ["p1", "p2", "p3"], "length/chosen-longer": ["p1"], "length/chosen-shorter": ["p2"]}


def test_length_spearman_sign():
    lengths_chosen, lengths_rejected = np.array([10, 50, 30]), np.array([20, 40, 60])
    assert length_spearman(lengths_chosen * 0.1, lengths_rejected * 0.1, lengths_chosen, lengths_rejected) == pytest.approx(1.0)
    assert length_spearman(-lengths_chosen, -lengths_rejected, lengths_chosen, lengths_rejected) == pytest.approx(-1.0)
    assert np.isnan(length_spearman(np.ones(3), np.ones(3), lengths_chosen, lengths_rejected))


def test_reliability_bins_reproduce_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 500)
    rows = reliability_bins(p, 15)
    assert sum(row["n_pairs"] for row in rows) == 500
    assert all(row["bin_low"] <= row["confidence"] <= row["bin_high"] for row in rows)
    assert sum(row["n_pairs"] * abs(row["accuracy"] - row["confidence"]) for row in rows) / 500 == pytest.approx(ece(p, 15))


def test_reliability_table_pools_seeds():
    pairs = frame([{"pair_id": f"p{i}", "train_set": "t", "chosen": "a", "rejected": "b"} for i in range(4)]
                  + [{"pair_id": "other", "train_set": "", "chosen": "a", "rejected": "b"}])
    files = [ScoreFile("t", "m", s, scores({**{f"p{i}": (1.0, 0.0) for i in range(4)}, "other": (0.0, 1.0)})) for s in range(2)]
    table = reliability_table(pairs, files, 15)
    assert table["n_pairs"].sum() == 8
    assert (table["n_seeds"] == 2).all()
    assert (table["accuracy"] == 1.0).all()


REWARDBENCH_ROWS = [
    # subset, chosen reward, rejected reward
    ("alpacaeval-easy", 1, 0), ("alpacaeval-easy", 1, 0), ("mt-bench-easy", 0, 1),
    ("llmbar-natural", 1, 0), ("llmbar-natural", 0, 1),
    ("donotanswer", 1, 0),
    ("math-prm", 1, 0), ("math-prm", 0, 1), ("hep-cpp", 0, 1), ("hep-go", 1, 0),
    ("unknown-subset", 1, 0),
]


def write_rewardbench(path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for index, (subset, _, _) in enumerate(REWARDBENCH_ROWS):
            handle.write(json.dumps({
                "prompt": f"Question {index}?", "chosen": f"Good answer {index}.", "chosen_model": "a",
                "rejected": f"Bad answer {index}.", "rejected_model": "b", "subset": subset, "id": index,
            }) + "\n")


def test_rewardbench_local_file_sections(tmp_path):
    path = tmp_path / "rewardbench.jsonl"
    write_rewardbench(path)
    pairs, report = load_source("rewardbench", files=[path], cache_dir=tmp_path / "cache")
    assert len(pairs) == len(REWARDBENCH_ROWS)
    assert list(pairs["pair_id"][:2]) == ["rewardbench:0", "rewardbench:1"]
    assert dict(zip(pairs["subset"], pairs["aspect"]))["llmbar-natural"] == "Chat Hard"
    assert dict(zip(pairs["subset"], pairs["aspect"]))["unknown-subset"] == ""
    assert report.notes["pairs whose subset is in no section"] == 1


def test_rewardbench_section_scores(tmp_path):
    path = tmp_path / "rewardbench.jsonl"
    write_rewardbench(path)
    pairs, _ = load_source("rewardbench", files=[path], cache_dir=tmp_path / "cache")
    pairs["split"], pairs["train_set"] = "test", ""
    rewards = {pid: (float(c), float(r)) for pid, (_, c, r) in zip(pairs["pair_id"], REWARDBENCH_ROWS)}
    files = [ScoreFile("t", "m", 0, scores(rewards))]
    main = summarize(per_seed_metrics(pairs, files, [{"name": "rb", "source": "rewardbench", "sections": "rewardbench"}], 15))
    table = load_section_table("rewardbench")
    chat = (1.0 * table["Chat"]["alpacaeval-easy"] + 0.0 * table["Chat"]["mt-bench-easy"]) / (
        table["Chat"]["alpacaeval-easy"] + table["Chat"]["mt-bench-easy"])
    reasoning_weights = table["Reasoning"]
    reasoning = (0.5 * reasoning_weights["math-prm"] + 0 * reasoning_weights["hep-cpp"] + 1 * reasoning_weights["hep-go"]) / (
        reasoning_weights["math-prm"] + reasoning_weights["hep-cpp"] + reasoning_weights["hep-go"])
    expected = {"rb/chat": chat, "rb/chat-hard": 0.5, "rb/safety": 1.0, "rb/reasoning": reasoning}
    for name, value in expected.items():
        assert metric(main, name, "accuracy") == pytest.approx(value), name
    assert metric(main, "rb/score", "accuracy") == pytest.approx(np.mean(list(expected.values())))
    # Pair-level accuracy stays unweighted.
    assert metric(main, "rb/chat", "pair_accuracy") == pytest.approx(2 / 3)
    comparisons = compare_to_baseline(pairs, files + [ScoreFile("t", "bt", 0, scores({k: (0.0, 1.0) for k in rewards}))],
                                      [{"name": "rb", "source": "rewardbench", "sections": "rewardbench"}], "bt", 200, 0)
    row = comparisons[(comparisons["benchmark"] == "rb/chat") & (comparisons["method"] == "m")].iloc[0]
    assert row["accuracy_difference"] == pytest.approx(chat)


def test_comparisons_keep_every_cue_rate():
    """Stress-test score files share (train set, method, seed) across rhos; each rho keeps its rows."""
    pairs = frame([{"pair_id": f"p{i}", "train_set": "t", "chosen": "a", "rejected": "b"} for i in range(4)])

    def cue_scores(rho: str, good: bool) -> pd.DataFrame:
        table = scores({f"p{i}": (1.0, 0.0) if good else (0.0, 1.0) for i in range(4)})
        table["benchmark"] = f"cue/reversed@{rho}"
        return table

    files = [ScoreFile("t+cue", method, seed, cue_scores(rho, method == "m"))
             for method in ("m", "bt") for seed in (0, 1) for rho in ("0.5", "1.0")]
    comparisons = compare_to_baseline(pairs, files, [], "bt", 100, 0)
    assert set(comparisons["benchmark"]) == {"cue/reversed@0.5", "cue/reversed@1.0"}
    assert (comparisons["accuracy_difference"] == 1.0).all()
    assert (comparisons["n_seeds"] == 2).all()
