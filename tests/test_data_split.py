"""Prompt normalization, deduplication, grouped splits and subsampling, on real pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vrm.data.pairs import pairs_frame
from vrm.data.schema import DROP_DUPLICATE_PAIR, PAIR_COLUMNS, DropReport
from vrm.data.sources import LOCAL_FILE_SOURCES, load_source, load_sources
from vrm.data.split import (
    assign_splits,
    dedupe_pairs,
    normalize_prompt,
    prompt_group,
    prompt_groups,
    subsample_groups,
)


@pytest.fixture(scope="module")
def all_pairs(data_root: Path) -> pd.DataFrame:
    pairs, _ = load_sources(LOCAL_FILE_SOURCES, data_root)
    return pairs


def make_pairs(rows: list[tuple[str, str, str]], source: str = "test") -> pd.DataFrame:
    columns = {column: [] for column in PAIR_COLUMNS}
    for index, (prompt, chosen, rejected) in enumerate(rows):
        values = {
            "pair_id": f"{source}:{index}",
            "source": source,
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "label_kind": "human",
            "aspect": "",
            "subset": "",
        }
        for column in PAIR_COLUMNS:
            columns[column].append(values[column])
    return pairs_frame(columns)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello\tWORLD \n", "hello world"),
        ("Ｈｅｌｌｏ", "hello"),
        ("Straße", "strasse"),
        ("ﬁne", "fine"),
        ("a\u00a0\u2003b", "a b"),
        ("", ""),
    ],
)
def test_normalize_prompt(text, expected):
    assert normalize_prompt(text) == expected


def test_prompt_group_is_stable_and_short():
    # Pinned so a change of hash or normalization shows up as a failure: it would move
    # prompts between splits.
    assert prompt_group("hello world") == "878633aa32a3b150"
    assert prompt_group("  Hello\tWORLD ") == prompt_group("hello world")
    assert prompt_group("hello world!") != prompt_group("hello world")


def test_prompt_groups_of_frame():
    pairs = make_pairs([("Say hi", "a", "b"), ("say HI ", "c", "d"), ("Other", "e", "f")])
    groups = prompt_groups(pairs)
    assert list(groups) == [prompt_group("Say hi"), prompt_group("Say hi"), prompt_group("Other")]
    assert groups.index.equals(pairs.index)


def test_dedupe_pairs_counts_duplicates():
    pairs = make_pairs(
        [
            ("Say hi", "Hi!", "No."),
            ("say  HI", "hi!", "no."),
            ("Say hi", "No.", "Hi!"),
            ("Say bye", "Bye!", "No."),
        ]
    )
    report = DropReport("test", rows_read=4, pairs_kept=4)
    unique_pairs = dedupe_pairs(pairs, report)
    assert list(unique_pairs["pair_id"]) == ["test:0", "test:2", "test:3"]
    assert report.dropped[DROP_DUPLICATE_PAIR] == 1
    assert report.pairs_kept == 3


def test_dedupe_real_sources(data_root):
    # PandaLM repeats the same two outputs under different model pairs; RM-Bench has
    # prompts whose detailed and markdown styles are the same text.
    expected = {"pandalm": 82, "rm-bench": 258, "bigbench-hhh": 0}
    for name, duplicates in expected.items():
        pairs, report = load_source(name, data_root)
        before = report.pairs_kept
        unique_pairs = dedupe_pairs(pairs, report)
        assert report.dropped[DROP_DUPLICATE_PAIR] == duplicates, name
        assert len(unique_pairs) == before - duplicates


def test_dedupe_rmb_best_of_n_repeats_pairwise(data_root):
    # The pairwise set repeats 32 of its own pairs. 7,491 of the 8,706 best-of-N pairs are
    # also pairwise pairs, including all 24 pairs the best-of-N set repeats internally.
    pairs, _ = load_sources(["rmb", "rmb-bon"], data_root)
    report = DropReport("rmb+rmb-bon")
    dedupe_pairs(pairs, report)
    assert report.dropped[DROP_DUPLICATE_PAIR] == 32 + 7491


def test_splits_keep_prompt_groups_together(all_pairs):
    splits = assign_splits(all_pairs)
    groups = prompt_groups(all_pairs)
    splits_per_group = splits.groupby(groups).nunique()
    assert (splits_per_group == 1).all()
    assert set(splits) == {"train", "validation", "test"}
    assert splits.index.equals(all_pairs.index)


def test_splits_deterministic_and_order_independent(all_pairs):
    first = assign_splits(all_pairs, seed=3)
    shuffled = all_pairs.sample(frac=1.0, random_state=1)
    second = assign_splits(shuffled, seed=3)
    by_id_first = pd.Series(first.values, index=all_pairs["pair_id"])
    by_id_second = pd.Series(second.values, index=shuffled["pair_id"])
    assert by_id_first.sort_index().equals(by_id_second.sort_index())


def test_splits_depend_on_seed(all_pairs):
    assert not assign_splits(all_pairs, seed=0).equals(assign_splits(all_pairs, seed=1))


def test_split_fractions_roughly_right(all_pairs):
    groups = prompt_groups(all_pairs)
    splits = assign_splits(all_pairs)
    group_shares = splits.groupby(groups).first().value_counts(normalize=True)
    # 9,678 groups: a binomial share of 0.2 has a standard deviation of about 0.004.
    assert group_shares["train"] == pytest.approx(0.6, abs=0.02)
    assert group_shares["validation"] == pytest.approx(0.2, abs=0.02)
    assert group_shares["test"] == pytest.approx(0.2, abs=0.02)
    pair_shares = splits.value_counts(normalize=True)
    assert pair_shares["train"] == pytest.approx(0.6, abs=0.05)


def test_splits_independent_of_other_sources(data_root, all_pairs):
    alone, _ = load_source("pandalm", data_root)
    together = assign_splits(all_pairs)[all_pairs["source"] == "pandalm"]
    assert list(assign_splits(alone)) == list(together)


def test_shared_prompt_one_split(all_pairs):
    pairs = all_pairs[all_pairs["source"].isin(["pandalm", "rm-bench"])]
    groups = prompt_groups(pairs)
    shared = set(groups[pairs["source"] == "pandalm"]) & set(groups[pairs["source"] == "rm-bench"])
    assert len(shared) == 10
    splits = assign_splits(pairs)
    for group in shared:
        assert splits[groups == group].nunique() == 1


def test_custom_fractions_and_validation(all_pairs):
    splits = assign_splits(all_pairs, {"train": 0.5, "test": 0.5}, seed=7)
    assert set(splits) == {"train", "test"}
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(all_pairs, {"train": 0.5, "test": 0.4})
    with pytest.raises(ValueError, match="positive"):
        assign_splits(all_pairs, {"train": 1.2, "test": -0.2})


def test_subsample_keeps_whole_groups(all_pairs):
    pairs = all_pairs[all_pairs["source"] == "rm-bench"]
    sample = subsample_groups(pairs, 500, seed=0)
    assert 0 < len(sample) <= 500
    groups = prompt_groups(pairs)
    sampled_groups = set(prompt_groups(sample))
    assert len(sample) == groups.isin(sampled_groups).sum()
    assert list(sample.index) == sorted(sample.index)


def test_subsample_deterministic(all_pairs):
    first = subsample_groups(all_pairs, 1000, seed=5)
    second = subsample_groups(all_pairs.sample(frac=1.0, random_state=2), 1000, seed=5)
    assert set(first["pair_id"]) == set(second["pair_id"])
    other = subsample_groups(all_pairs, 1000, seed=6)
    assert set(first["pair_id"]) != set(other["pair_id"])


def test_subsample_small_frame_unchanged(all_pairs):
    pairs = all_pairs.head(20)
    assert subsample_groups(pairs, 100, seed=0).equals(pairs)
    assert len(subsample_groups(pairs, 0, seed=0)) == 0
