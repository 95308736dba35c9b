"""The spurious-cue stress test: cue placement, and a planted cue that BT learns and the test catches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from vrm import pipeline
from vrm.errors import UserError
from vrm.evaluate.cues import apply_cue, benchmark_names, check_template, cue_on_chosen
from vrm.evaluate.metrics import pair_correct


def test_apply_cue_keeps_braces():
    assert apply_cue("Sure! {response}", "a {b} c") == "Sure! a {b} c"
    assert apply_cue("**{response}**", "x") == "**x**"


@pytest.mark.parametrize("template", ["no placeholder", "{response} and {response}"])
def test_template_needs_one_placeholder(template):
    with pytest.raises(UserError, match="exactly once"):
        check_template("bad", template)


def test_cue_rate_nested_over_rho():
    ids = [f"src:{i}" for i in range(20000)]
    previous = np.zeros(len(ids), dtype=bool)
    for rho in (0.0, 0.5, 0.7, 0.9, 1.0):
        chosen = cue_on_chosen(ids, "polite", rho)
        assert abs(chosen.mean() - rho) < 0.015
        assert (chosen | ~previous).all()  # chosen-side pairs stay chosen-side as rho grows
        previous = chosen
    assert cue_on_chosen(ids[::-1], "polite", 0.7)[::-1].tolist() == cue_on_chosen(ids, "polite", 0.7).tolist()
    assert cue_on_chosen(ids, "other", 0.7).tolist() != cue_on_chosen(ids, "polite", 0.7).tolist()
    assert benchmark_names(1) == ("cue/clean@1.0", "cue/reversed@1.0")


WORDS = ("river mountain bread music window garden letter engine winter market candle forest "
         "paper silver ocean station garden pencil harbor lantern meadow violin thunder").split()


def synthetic_pairs(count: int, seed: int) -> pd.DataFrame:
    """Pairs whose two responses come from the same random process: no side is better."""
    rng = np.random.default_rng(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(6, 14)))).capitalize() + "."

    split = np.array(["train"] * int(0.6 * count) + ["validation"] * int(0.2 * count))
    split = np.concatenate([split, ["test"] * (count - len(split))])
    return pd.DataFrame({
        "pair_id": [f"synthetic:{i}" for i in range(count)],
        "source": "synthetic",
        "prompt": [f"Describe item {i} in a sentence." for i in range(count)],
        "chosen": [sentence() for _ in range(count)],
        "rejected": [sentence() for _ in range(count)],
        "aspect": "", "subset": "", "label_kind": "constructed",
        "group": [f"g{i}" for i in range(count)],
        "train_set": "toy",
        "split": split,
    })


def test_planted_cue_detected(tmp_path):
    """BT trained where the cue always marks the chosen response falls on reversed test pairs."""
    pairs_path, features_path = tmp_path / "pairs.parquet", tmp_path / "features.safetensors"
    synthetic_pairs(400, seed=0).to_parquet(pairs_path)
    config = {
        "backbone": {"name": "minilm", "max_length": 64, "batch_size": 64},
        "cache_dir": str(tmp_path / "cache"),
        "cues": {"train_set": "toy", "rhos": [0.5, 1.0], "seeds": [0, 1],
                 "templates": {"polite": "Thank you for asking! I am happy to help with this.\n\n{response}"}},
        "split": {"seed": 0},
        "training": {"learning_rate": 0.003, "batch_size": 32, "max_epochs": 40, "patience": 8},
        "evaluation": {"probability_samples": 0},
        "methods": {"bt": {"hidden": 64, "dropout": 0.0}},
    }
    pipeline.features(config, str(pairs_path), str(features_path), threads=2)
    cue_path = tmp_path / "cue.safetensors"
    pipeline.cue_features(config, str(pairs_path), "polite", str(cue_path), str(tmp_path / "cue.json"), threads=2)

    accuracy = {}
    for rho in (0.5, 1.0):
        scores_path = tmp_path / f"scores{rho}.parquet"
        pipeline.cue_train(config, str(pairs_path), str(features_path), str(cue_path), "polite", rho, "bt", None,
                           str(tmp_path / f"models{rho}"), str(scores_path), threads=1)
        scores = pd.read_parquet(scores_path)
        for name, rows in scores.groupby("benchmark"):
            accuracy[name] = pair_correct(rows["reward_chosen"], rows["reward_rejected"]).mean()
    # No quality signal: clean pairs sit near chance at any rho.
    assert 0.35 < accuracy["cue/clean@1.0"] < 0.65
    # With the cue on every chosen response BT learns it, and the reversed cue flips its choice.
    assert accuracy["cue/reversed@1.0"] < accuracy["cue/clean@1.0"] - 0.3, accuracy
    # An uninformative cue (rho = 0.5) moves nothing.
    assert abs(accuracy["cue/reversed@0.5"] - accuracy["cue/clean@0.5"]) < 0.15, accuracy


@pytest.mark.parametrize(("override", "message"), [
    ({"train_set": "nope"}, "cues.train_set = 'nope' is not a training set"),
    ({"templates": {"polite": "no placeholder"}}, "cues.templates.polite"),
    ({"methods": ["bt", "missing"]}, "cues.methods lists missing"),
    ({"rhos": [1.5]}, "cues.rhos.0 = 1.5"),
])
def test_cue_config_errors_name_the_key(tmp_path, override, message):
    from vrm.config import load_config

    path = tmp_path / "cues.yaml"
    default = load_config()["cues"]
    path.write_text(yaml.safe_dump({"cues": {**default, **override}}))
    with pytest.raises(UserError, match=message):
        load_config(path)
