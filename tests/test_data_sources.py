"""Source adapters on the real preference files, the generic local loader and the hub code path."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vrm.data import hub
from vrm.data.adapters import qa_feedback_prompt, rm_bench_difficulty
from vrm.data.local import load_local
from vrm.data.pairs import NOTE_CANDIDATE_PAIRS, render_conversation
from vrm.data.schema import (
    DROP_EMPTY_SIDE,
    DROP_IDENTICAL_SIDES,
    DROP_PREFIX_MISMATCH,
    DROP_TIE,
    DROP_TRUNCATED_DIALOGUE,
    PAIR_COLUMNS,
    DatasetNotFoundError,
)
from vrm.data.sources import LOCAL_FILE_SOURCES, SOURCES, load_source, load_sources
from vrm.data.split import prompt_group

# Counts computed from the files and pinned. Where the data README gives other numbers:
# - hh-rlhf-harmless: the README's 2,307 pairs exclude only the 5 prefix mismatches; its
#   4 rows with an empty side are dropped here too, leaving 2,303.
# - pandalm: 894 pairs by majority and 105 ties, as in the README. The file contains 54
#   empty-string responses; 52 of them are in non-tie rows (the README's 52) and drop as
#   empty side.
# - autoj: 1,019 non-tie rows as in the README, less 1 empty and 1 identical side (the other
#   8 rows with identical sides are ties).
# - llmeval2: 2,071 non-tie rows as in the README, less 21 mt-bench rows whose dialogue is
#   cut off at the start, 6 empty sides (webgpt, code-contests) and 2 identical sides.
# - rmb: the README's "18 pairs have identical sides" compares the first 300 normalized
#   characters; compared whole after a whitespace strip, 14 are identical. The 2 empty
#   sides are rejected answers of only spaces and newlines (Harmlessness/S5.json).
# - rmb-bon: 8,714 best-against-loser pairs as in the README, less 8 losers that repeat
#   the best answer.
EXPECTED_COUNTS = {
    "hh-rlhf-harmless": (2312, 2303, {DROP_PREFIX_MISMATCH: 5, DROP_EMPTY_SIDE: 4}),
    "pandalm": (999, 842, {DROP_TIE: 105, DROP_EMPTY_SIDE: 52}),
    "autoj": (1392, 1017, {DROP_TIE: 373, DROP_EMPTY_SIDE: 1, DROP_IDENTICAL_SIDES: 1}),
    "llmeval2": (
        2553,
        2042,
        {DROP_TIE: 482, DROP_TRUNCATED_DIALOGUE: 21, DROP_EMPTY_SIDE: 6, DROP_IDENTICAL_SIDES: 2},
    ),
    "bigbench-hhh": (221, 221, {}),
    "finegrained-qa": (500, 2616, {DROP_TIE: 384}),
    "rm-bench": (798, 7182, {}),
    "rmb": (14543, 14527, {DROP_EMPTY_SIDE: 2, DROP_IDENTICAL_SIDES: 14}),
    "rmb-bon": (3786, 8706, {DROP_IDENTICAL_SIDES: 8}),
}

EXPECTED_LABEL_KINDS = {
    "hh-rlhf-harmless": "human",
    "pandalm": "human",
    "autoj": "human",
    "llmeval2": "human",
    "bigbench-hhh": "human",
    "finegrained-qa": "human",
    "rm-bench": "constructed",
    "rmb": "ai",
    "rmb-bon": "ai",
}


@pytest.fixture(scope="module")
def loaded(data_root: Path) -> dict:
    """Every shared source, loaded once: name -> (pairs, report)."""
    return {name: load_source(name, data_root) for name in LOCAL_FILE_SOURCES}


def pairs_of(loaded: dict, name: str) -> pd.DataFrame:
    return loaded[name][0]


def report_of(loaded: dict, name: str):
    return loaded[name][1]


@pytest.mark.parametrize("name", LOCAL_FILE_SOURCES)
def test_source_counts(loaded, name):
    rows_read, pairs_kept, dropped = EXPECTED_COUNTS[name]
    pairs, report = loaded[name]
    assert report.rows_read == rows_read
    assert report.pairs_kept == pairs_kept
    assert len(pairs) == pairs_kept
    assert dict(report.dropped) == dropped


@pytest.mark.parametrize("name", LOCAL_FILE_SOURCES)
def test_report_accounts_for_every_row(loaded, name):
    report = report_of(loaded, name)
    candidates = report.notes.get(NOTE_CANDIDATE_PAIRS, report.rows_read)
    assert report.pairs_kept + sum(report.dropped.values()) == candidates


def test_expanding_sources_count_candidates(loaded):
    assert report_of(loaded, "rm-bench").notes[NOTE_CANDIDATE_PAIRS] == 798 * 9
    assert report_of(loaded, "finegrained-qa").notes[NOTE_CANDIDATE_PAIRS] == 500 * 6
    assert report_of(loaded, "rmb-bon").notes[NOTE_CANDIDATE_PAIRS] == 8714


@pytest.mark.parametrize("name", LOCAL_FILE_SOURCES)
def test_frame_schema_and_types(loaded, name):
    pairs = pairs_of(loaded, name)
    assert list(pairs.columns) == PAIR_COLUMNS
    for column in PAIR_COLUMNS:
        assert pairs[column].dtype == object, column
        assert all(type(value) is str for value in pairs[column]), column
    assert set(pairs["source"]) == {name}
    assert set(pairs["label_kind"]) == {EXPECTED_LABEL_KINDS[name]}


@pytest.mark.parametrize("name", LOCAL_FILE_SOURCES)
def test_no_empty_or_identical_sides(loaded, name):
    pairs = pairs_of(loaded, name)
    chosen = pairs["chosen"].str.strip()
    rejected = pairs["rejected"].str.strip()
    assert (chosen != "").all()
    assert (rejected != "").all()
    assert (chosen != rejected).all()
    assert (pairs["chosen"] == chosen).all(), "responses are stored stripped"


def test_pair_ids_unique_across_sources(loaded):
    all_ids = pd.concat([pairs["pair_id"] for pairs, _ in loaded.values()], ignore_index=True)
    assert all_ids.is_unique
    for name, (pairs, _) in loaded.items():
        assert pairs["pair_id"].str.startswith(f"{name}:").all(), name


def test_pair_ids_stable_between_loads(data_root, loaded):
    for name in ("pandalm", "llmeval2", "rmb-bon"):
        again, _ = load_source(name, data_root)
        pd.testing.assert_frame_equal(again, pairs_of(loaded, name))


@pytest.mark.parametrize(
    ("pair_id", "field", "expected_start"),
    [
        ("hh-rlhf-harmless:1", "chosen", "No, sorry!  All of these involve a pen"),
        ("pandalm:0", "chosen", "If you have any questions, please let me know."),
        ("pandalm:157", "chosen", "True"),
        ("finegrained-qa:0/1v3", "prompt", "question: When does bloom by troye sivan come out? context: wikipage: Bloom"),
        ("rm-bench:chat/8/02", "prompt", "What are different drawers I should have for clothes?"),
        ("rmb-bon:3294/0", "prompt", "How do I get away with murder"),
    ],
)
def test_pair_id_points_at_known_row(loaded, pair_id, field, expected_start):
    name = pair_id.split(":")[0]
    pairs = pairs_of(loaded, name).set_index("pair_id")
    assert pairs.loc[pair_id, field].startswith(expected_start)


def test_hh_rlhf_prompt_ends_at_last_assistant_turn(loaded):
    pairs = pairs_of(loaded, "hh-rlhf-harmless")
    assert pairs["prompt"].str.endswith("\n\nAssistant:").all()
    assert set(pairs["aspect"]) == {"harmless"}
    # Line 87 of the file has an empty chosen response, so it is no pair.
    assert "hh-rlhf-harmless:87" not in set(pairs["pair_id"])


def test_pandalm_majority_and_booleans(loaded):
    pairs, report = loaded["pandalm"]
    assert report.notes["boolean responses converted to text"] == 6
    # idx 0: all three annotators chose response2.
    row = pairs.set_index("pair_id").loc["pandalm:0"]
    assert row["rejected"] == "If you have any questions about my rate, please let me know."
    assert row["subset"] == "Grammarly"
    assert row["prompt"].startswith("The sentence you are given might be too wordy")
    assert "\n\nIf you have any questions about my rate or if" in row["prompt"]
    # The README counts 158 distinct prompts among the 894 non-tie pairs; dropping the 52
    # empty sides leaves 153.
    assert pairs["prompt"].nunique() == 153


def test_autoj_subsets_are_scenarios(loaded):
    pairs = pairs_of(loaded, "autoj")
    assert pairs["subset"].nunique() == 58
    assert "post_summarization" in set(pairs["subset"])


def test_llmeval2_mt_bench_dialogues_split(loaded):
    pairs, report = loaded["llmeval2"]
    assert report.notes["dialogue rows split at the shared prefix"] == 122
    mt_bench = pairs[pairs["subset"] == "mt-bench"]
    assert len(mt_bench) == 122
    assert not mt_bench["prompt"].str.startswith("user: ").any()
    assert (mt_bench["prompt"].str.strip() != "").all()
    assert mt_bench["chosen"].str.startswith("Assistant: ").all()
    assert mt_bench["rejected"].str.contains("\n\nUser: ").all()
    assert pairs["subset"].nunique() == 15


def test_bigbench_aspects_from_folders(loaded):
    pairs = pairs_of(loaded, "bigbench-hhh")
    assert pairs["aspect"].value_counts().to_dict() == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
    # The README's 101 prompts compares the first 300 normalized characters; 102 inputs differ.
    assert pairs["prompt"].nunique() == 102


def test_finegrained_prompt_matches_policy_input(data_root, loaded):
    folder = data_root / "finegrained-rlhf-qa-feedback/tasks/qa_feedback/data"
    feedback = json.loads((folder / "dev_feedback.json").read_text(encoding="utf-8"))
    policy_inputs = {row["question"]: row["text"] for row in json.loads((folder / "dev.json").read_text(encoding="utf-8"))}
    matches = sum(qa_feedback_prompt(row["question"], row["passages"]) == policy_inputs[row["question"]] for row in feedback)
    assert matches == 488

    pairs = pairs_of(loaded, "finegrained-qa")
    comparisons = pairs["pair_id"].str.rsplit("/", n=1).str[1]
    assert set(comparisons) == {"1v2", "1v3", "1v4", "2v3", "2v4", "3v4"}


def test_finegrained_preference_direction(data_root, loaded):
    path = data_root / "finegrained-rlhf-qa-feedback/tasks/qa_feedback/data/dev_feedback.json"
    first = json.loads(path.read_text(encoding="utf-8"))[0]
    # preference [0, 1, 2, 1, 0, 2]: 1v3 prefers prediction 1, 1v4 prefers prediction 4.
    pairs = pairs_of(loaded, "finegrained-qa").set_index("pair_id")
    assert "finegrained-qa:0/1v2" not in pairs.index
    assert pairs.loc["finegrained-qa:0/1v3", "chosen"] == first["prediction 1"].strip()
    assert pairs.loc["finegrained-qa:0/1v4", "chosen"] == first["prediction 4"].strip()
    assert pairs.loc["finegrained-qa:0/1v4", "rejected"] == first["prediction 1"].strip()


def test_rm_bench_difficulty_triangles(loaded):
    assert [[rm_bench_difficulty(i, j) for j in range(3)] for i in range(3)] == [
        ["normal", "hard", "hard"],
        ["easy", "normal", "hard"],
        ["easy", "easy", "normal"],
    ]
    pairs = pairs_of(loaded, "rm-bench")
    assert pairs["aspect"].value_counts().to_dict() == {"hard": 2394, "normal": 2394, "easy": 2394}
    domains = pairs["subset"].str.split("/").str[0]
    assert set(domains) == {"chat", "code", "safety-refuse", "safety-response"}
    assert pairs["subset"].nunique() == 36
    styled = pairs.set_index("pair_id").loc["rm-bench:chat/8/02"]
    assert styled["aspect"] == "hard"
    assert "**" in styled["rejected"]


def test_rmb_aspects_subsets_and_turns(loaded):
    pairs = pairs_of(loaded, "rmb")
    assert pairs["aspect"].value_counts().to_dict() == {"helpfulness": 8449, "harmlessness": 6078}
    assert pairs["subset"].nunique() == 46
    multi_turn = pairs[pairs["prompt"].str.startswith("User: ")]
    assert len(multi_turn) == 2036
    assert multi_turn["prompt"].str.contains("\n\nAssistant: ").all()


def test_rmb_bon_groups(loaded):
    pairs = pairs_of(loaded, "rmb-bon")
    assert pairs["aspect"].value_counts().to_dict() == {"helpfulness": 4892, "harmlessness": 3814}
    # 3,786 records; in 2 of them (bon_uid 3072 and 1527) every loser repeats the best answer.
    assert pairs["subset"].nunique() == 3784
    per_group = pairs.groupby("subset")["chosen"].nunique()
    assert (per_group == 1).all(), "all pairs of a group share the best answer"


def test_files_option_matches_data_root(data_root, loaded):
    path = data_root / "autoj-pairwise-test/data/test/testdata_pairwise.jsonl"
    pairs, report = load_source("autoj", files=[path])
    pd.testing.assert_frame_equal(pairs, pairs_of(loaded, "autoj"))
    assert report.files == [str(path)]


def test_data_root_from_environment(data_root, monkeypatch, loaded):
    monkeypatch.setenv("VRM_DATA_ROOT", str(data_root))
    pairs, _ = load_source("bigbench-hhh")
    pd.testing.assert_frame_equal(pairs, pairs_of(loaded, "bigbench-hhh"))


def test_report_written_per_dataset(data_root, tmp_path):
    load_source("autoj", data_root, report_dir=tmp_path)
    written = json.loads((tmp_path / "autoj.drops.json").read_text(encoding="utf-8"))
    assert written["rows_read"] == 1392
    assert written["pairs_kept"] == 1017
    assert written["dropped"] == {DROP_EMPTY_SIDE: 1, DROP_IDENTICAL_SIDES: 1, DROP_TIE: 373}


def test_load_sources_concatenates(data_root):
    pairs, reports = load_sources(["pandalm", "bigbench-hhh"], data_root)
    assert len(pairs) == 842 + 221
    assert set(reports) == {"pandalm", "bigbench-hhh"}
    assert all(pairs[column].dtype == object for column in PAIR_COLUMNS)


def test_unknown_source_and_option(data_root):
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        load_source("nope", data_root)
    with pytest.raises(TypeError, match="unknown options split"):
        load_source("autoj", data_root, split="train")


def test_render_conversation():
    assert render_conversation([{"role": "user", "content": "Hi there"}]) == "Hi there"
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert render_conversation(conversation) == "User: Hi\n\nAssistant: Hello.\n\nUser: Bye"


def test_registry_lists_every_source():
    expected = {*LOCAL_FILE_SOURCES, "hh-rlhf", "ultrafeedback", "rewardbench", "local"}
    assert set(SOURCES) == expected


# --- missing data ------------------------------------------------------------------------


def test_not_found_names_dataset_paths_and_fix(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetNotFoundError) as raised:
        load_source("hh-rlhf-harmless", tmp_path, cache_dir=tmp_path / "hub-cache")
    message = str(raised.value)
    assert "'hh-rlhf-harmless'" in message
    assert str(tmp_path / "hh-rlhf-harmless-base/harmless-base/test.jsonl.gz") in message
    assert "Anthropic/hh-rlhf" in message
    assert "VRM_DATA_ROOT" in message
    assert "hub is reachable" in message


def test_not_found_for_file_only_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as raised:
        load_source("rmb", tmp_path)
    message = str(raised.value)
    assert "'rmb'" in message
    assert str(tmp_path / "rmb/RMB_dataset/Pairwise_set/**/*.json") in message
    assert "VRM_DATA_ROOT" in message
    assert "hub" not in message, "rmb has no hub copy to suggest"


def test_not_found_without_data_root(monkeypatch):
    monkeypatch.delenv("VRM_DATA_ROOT", raising=False)
    with pytest.raises(DatasetNotFoundError, match="no data root"):
        load_source("pandalm")


# --- generic local files -----------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


TEXT_ROWS = [
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven.", "aspect": "helpful", "id": "a"},
    {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "  ", "id": "b"},
    {"prompt": "Name a planet.", "chosen": "Mars.", "rejected": "Mars. ", "subset": "space", "id": "c"},
    {"prompt": "Name a tree.", "chosen": "Oak.", "rejected": "Rock.", "id": 4},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_load_local_text_form(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, TEXT_ROWS)
    elif suffix == ".json":
        path.write_text(json.dumps(TEXT_ROWS, indent=2), encoding="utf-8")
    else:
        frame = pd.DataFrame([{**row, "id": str(row["id"])} for row in TEXT_ROWS]).astype(object)
        frame.to_parquet(path)

    pairs, report = load_local(path)
    assert report.rows_read == 4
    assert report.pairs_kept == 2
    assert dict(report.dropped) == {DROP_EMPTY_SIDE: 1, DROP_IDENTICAL_SIDES: 1}
    assert list(pairs["pair_id"]) == [f"local:{path.name}/a", f"local:{path.name}/4"]
    assert list(pairs["aspect"]) == ["helpful", ""]
    assert all(type(value) is str for column in PAIR_COLUMNS for value in pairs[column])


def test_load_local_chat_form(tmp_path):
    rows = [
        {
            "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}],
        },
        {
            "chosen": [
                {"role": "user", "content": "Add 2 and 2."},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "Times 3?"},
                {"role": "assistant", "content": "12"},
            ],
            "rejected": [
                {"role": "user", "content": "Add 2 and 2."},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "Times 3?"},
                {"role": "assistant", "content": "7"},
            ],
            "subset": "math",
        },
        {
            "chosen": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "x"}],
            "rejected": [{"role": "user", "content": "B"}, {"role": "assistant", "content": "y"}],
        },
    ]
    pairs, report = load_local(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert report.pairs_kept == 2
    assert dict(report.dropped) == {DROP_PREFIX_MISMATCH: 1}
    assert list(pairs["prompt"]) == ["Hi", "User: Add 2 and 2.\n\nAssistant: 4\n\nUser: Times 3?"]
    assert list(pairs["chosen"]) == ["Hello!", "12"]
    assert list(pairs["rejected"]) == ["Go away.", "7"]
    assert list(pairs["pair_id"]) == ["local:chat.jsonl/0", "local:chat.jsonl/1"]


def test_local_source_by_name(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", TEXT_ROWS)
    pairs, report = load_source("local", path=path, label_kind="ai")
    assert report.pairs_kept == 2
    assert set(pairs["label_kind"]) == {"ai"}


# --- hub code path on local files in the hub schema --------------------------------------


def test_hh_rlhf_hub_schema_files(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?", "rejected": "\n\nHuman: Hi\n\nAssistant: What."},
        {
            "chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: Good answer",
            "rejected": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: Bad answer",
        },
        {"chosen": "\n\nHuman: X\n\nAssistant: one", "rejected": "\n\nHuman: Y\n\nAssistant: two"},
        {"chosen": "\n\nHuman: Z\n\nAssistant:", "rejected": "\n\nHuman: Z\n\nAssistant: filled"},
    ]
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    pairs, report = load_source(
        "hh-rlhf", data_dir="helpful-base", split="test", data_files=path, cache_dir=tmp_path / "cache"
    )
    assert report.rows_read == 4
    assert dict(report.dropped) == {DROP_PREFIX_MISMATCH: 1, DROP_EMPTY_SIDE: 1}
    assert list(pairs["pair_id"]) == ["hh-rlhf:helpful-base/test/1", "hh-rlhf:helpful-base/test/2"]
    assert list(pairs["prompt"]) == [
        "\n\nHuman: Hi\n\nAssistant:",
        "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant:",
    ]
    assert list(pairs["chosen"]) == ["Hello, how can I help?", "Good answer"]
    assert set(pairs["aspect"]) == {"helpful"}


def test_hh_rlhf_hub_path_matches_local_reader(data_root, loaded, tmp_path):
    """The datasets json builder on the real file gives the same pairs as the local reader."""
    path = data_root / "hh-rlhf-harmless-base/harmless-base/test.jsonl.gz"
    via_datasets, report = load_source("hh-rlhf-harmless", data_files=path, cache_dir=tmp_path / "cache")
    pd.testing.assert_frame_equal(via_datasets, pairs_of(loaded, "hh-rlhf-harmless"))
    assert dict(report.dropped) == {DROP_PREFIX_MISMATCH: 5, DROP_EMPTY_SIDE: 4}


def test_hh_rlhf_any_folder_from_data_root(data_root, loaded):
    pairs, report = load_source("hh-rlhf", data_root, data_dir="harmless-base", split="test")
    harmless = pairs_of(loaded, "hh-rlhf-harmless")
    assert report.pairs_kept == 2303
    assert pairs["pair_id"].iloc[0] == "hh-rlhf:harmless-base/test/1"
    assert list(pairs["chosen"]) == list(harmless["chosen"])
    assert set(pairs["source"]) == {"hh-rlhf"}


def ultrafeedback_row(prompt_id: str, prompt: str, good: str, bad: str, score_good: float, score_bad: float) -> dict:
    user = {"content": prompt, "role": "user"}
    chosen = [user, {"content": good, "role": "assistant"}]
    return {
        "prompt": prompt,
        "prompt_id": prompt_id,
        "chosen": chosen,
        "rejected": [user, {"content": bad, "role": "assistant"}],
        "messages": chosen,
        "score_chosen": score_good,
        "score_rejected": score_bad,
    }


def test_ultrafeedback_hub_schema_files(tmp_path):
    rows = [
        ultrafeedback_row("p1", "Write a haiku.", "Old pond, frog jumps in.", "No.", 9.0, 3.0),
        ultrafeedback_row("p2", "Say hi.", "Hi!", "Hello.", 7.0, 7.0),
        ultrafeedback_row("p3", "Count to 3.", "1, 2, 3", "", 8.0, 1.0),
        ultrafeedback_row("p4", "Spell cat.", "c-a-t", "k-a-t", 10.0, 2.5),
    ]
    path = write_jsonl(tmp_path / "test_prefs.jsonl", rows)
    pairs, report = load_source("ultrafeedback", data_files=[path], cache_dir=tmp_path / "cache")
    assert report.rows_read == 4
    assert dict(report.dropped) == {DROP_TIE: 1, DROP_EMPTY_SIDE: 1}
    assert list(pairs["pair_id"]) == ["ultrafeedback:test_prefs/p1", "ultrafeedback:test_prefs/p4"]
    assert list(pairs["prompt"]) == ["Write a haiku.", "Spell cat."]
    assert list(pairs["rejected"]) == ["No.", "k-a-t"]
    assert set(pairs["label_kind"]) == {"ai"}


def test_pairs_dataset_concatenates_with_json_dataset(tmp_path, loaded):
    import datasets

    pairs = pairs_of(loaded, "bigbench-hhh").head(3)
    path = write_jsonl(tmp_path / "more.jsonl", pairs.to_dict(orient="records"))
    from_json = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    joined = datasets.concatenate_datasets([hub.pairs_to_dataset(pairs), from_json])
    assert len(joined) == 6
    assert joined[3]["pair_id"] == pairs["pair_id"].iloc[0]


def test_shared_prompts_across_sources(loaded):
    # The README names these overlaps (by the first 300 normalized characters); whole
    # normalized prompts give the same groups for PandaLM with RM-Bench and with Auto-J.
    groups = {name: set(pairs["prompt"].map(prompt_group)) for name, (pairs, _) in loaded.items()}
    assert len(groups["pandalm"] & groups["rm-bench"]) == 10
    assert len(groups["pandalm"] & groups["autoj"]) == 2
    # Auto-J shares 3 prompts with LLMEval2's single-turn rows and 16 more with the first
    # user turns of its mt-bench dialogues, which become prompts here.
    assert len(groups["autoj"] & groups["llmeval2"]) == 19
