"""Fine-tune mode on the real MiniLM and a small GPT-2 saved to disk: inputs, training, export, scoring."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from test_backbones import build_tiny_gpt2
from vrm.errors import UserError
from vrm.finetune import (
    PAD_TOKEN,
    FinetuneConfig,
    build_reward_model,
    export_reward_model,
    finetune,
    load_reward_model,
    pad_batch,
    response_nll,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def autoj_pairs(data_root: Path) -> dict[str, list[str]]:
    """Auto-J pairs with a preference, chosen and rejected by the label, from short to very long."""
    path = data_root / "autoj-pairwise-test" / "data" / "test" / "testdata_pairwise.jsonl"
    pairs = {"prompt": [], "chosen": [], "rejected": []}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["label"] not in (0, 1):
                continue
            first, second = record["response 1"], record["response 2"]
            chosen, rejected = (first, second) if record["label"] == 0 else (second, first)
            pairs["prompt"].append(record["prompt"])
            pairs["chosen"].append(chosen)
            pairs["rejected"].append(rejected)
            if len(pairs["prompt"]) == 48:
                break
    return pairs


def take(pairs: dict[str, list[str]], start: int, stop: int) -> dict[str, list[str]]:
    return {key: values[start:stop] for key, values in pairs.items()}


@pytest.fixture(scope="module")
def chat_gpt2(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 whose tokenizer has a chat template and no pad token."""
    folder = build_tiny_gpt2(tmp_path_factory.mktemp("chat-gpt2"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def small(**overrides) -> FinetuneConfig:
    settings = {"max_length": 64, "batch_size": 4, "max_steps": 3, "eval_batch_size": 8}
    settings.update(overrides)
    return FinetuneConfig(**settings)


# Inputs: templates, truncation, padding, pad tokens.


def test_long_pair_keeps_the_end_of_the_response(autoj_pairs):
    model = build_reward_model("bt", {}, small())
    tokens = model.tokens
    tokenizer = tokens.tokenizer
    prompt, response = autoj_pairs["prompt"][0], " ".join(autoj_pairs["chosen"][:6])
    encoded = tokens.pair(prompt, response)
    assert encoded.truncated and len(encoded.input_ids) == 64
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    # [CLS] stays first, [SEP] last, and the response's last tokens sit just before it.
    assert encoded.input_ids[0] == tokenizer.cls_token_id
    assert encoded.input_ids[-1] == tokenizer.sep_token_id
    assert encoded.input_ids[-11:-1] == response_ids[-10:]
    assert encoded.token_type_ids[-1] == 1

    short = tokens.pair("Name a color.", "Blue.")
    assert not short.truncated
    text = tokenizer.decode(short.input_ids[short.response_start:], skip_special_tokens=True)
    assert text == "blue."


def test_chat_template_pad_token_and_response_span(chat_gpt2):
    model = build_reward_model("bt", {}, small(backbone=str(chat_gpt2), lora=None))
    tokenizer = model.tokens.tokenizer
    assert model.tokens.use_template
    assert model.is_decoder
    assert model.pooling == "last"
    # The tokenizer had no pad token; the new one is not EOS and has an embedding row.
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.backbone.get_input_embeddings().weight.shape[0] == len(tokenizer)

    encoded = model.tokens.pair("which answer is more helpful", "the quick brown fox")
    assert tokenizer.decode(encoded.input_ids).startswith("<|user|>which answer is more helpful")
    assert tokenizer.decode(encoded.input_ids[encoded.response_start:]) == "the quick brown fox<|endoftext|>"
    prompt = model.tokens.prompt("which answer is more helpful")
    assert tokenizer.decode(prompt.input_ids).endswith("<|assistant|>")


def test_pad_token_equal_to_eos_is_replaced(tmp_path):
    folder = build_tiny_gpt2(tmp_path / "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(folder)
    model = build_reward_model("bt", {}, small(backbone=str(folder), lora=None))
    assert model.tokens.tokenizer.pad_token == PAD_TOKEN


def test_right_padding_matches_single_rows(chat_gpt2, autoj_pairs):
    for backbone in ("minilm", str(chat_gpt2)):
        model = build_reward_model("bt", {}, small(backbone=backbone, lora=None)).eval()
        prompts = autoj_pairs["prompt"][:3]
        responses = ["Yes.", autoj_pairs["chosen"][1], "No, " * 5]
        together = model.features(prompts, responses, batch_size=3)["response"]
        alone = torch.cat([model.features([p], [r], batch_size=1)["response"] for p, r in zip(prompts, responses)])
        assert torch.allclose(together, alone, atol=1e-5), backbone


def test_response_nll_counts_only_response_tokens():
    logits = torch.randn(2, 5, 11)
    input_ids = torch.randint(0, 11, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.bool)
    log_probs = torch.log_softmax(logits, dim=-1)
    terms = [log_probs[0, 1, input_ids[0, 2]], log_probs[0, 2, input_ids[0, 3]], log_probs[0, 3, input_ids[0, 4]],
             log_probs[1, 2, input_ids[1, 3]]]
    assert torch.isclose(response_nll(logits, input_ids, mask), -torch.stack(terms).mean())


def test_pad_batch_masks():
    from vrm.finetune import Encoded

    batch = pad_batch([Encoded([5, 6, 7], None, 1, False), Encoded([8], None, 1, False)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["response_mask"].tolist() == [[False, True, True], [False, False, False]]


# Training.


def test_lora_training_lowers_loss(autoj_pairs):
    train = take(autoj_pairs, 0, 8)
    config = small(max_steps=25, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, warmup_fraction=0.0,
                   lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})
    result = finetune("bt", {"dropout": 0.0}, train, {}, config, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.report["trainable_backbone_parameters"] < 1_000_000
    assert result.report["pairs_seen"] == 25 * 8
    base = [p for n, p in result.model.backbone.named_parameters() if "lora_" not in n]
    assert not any(p.requires_grad for p in base)


def test_gradient_accumulation_matches_one_large_batch(autoj_pairs):
    train = take(autoj_pairs, 0, 8)
    common = {"max_steps": 1, "warmup_fraction": 0.0, "group_by_length": False, "lora": None,
              "learning_rate": 1e-3, "max_grad_norm": 0.0}
    one = finetune("bt", {"dropout": 0.0}, train, {}, small(batch_size=8, **common), progress=False)
    two = finetune("bt", {"dropout": 0.0}, train, {}, small(batch_size=4, gradient_accumulation=2, **common),
                   progress=False)
    # Adam's first step moves each weight by about lr * sign(gradient), so weights whose
    # gradient is near 0 (embedding rows of absent tokens) can differ by rounding alone.
    # The head's weights all have clear gradients and must agree.
    assert one.report["pairs_seen"] == two.report["pairs_seen"] == 8
    for (name, a), (_, b) in zip(one.model.head.named_parameters(), two.model.head.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    initial = finetune("bt", {"dropout": 0.0}, train, {}, small(batch_size=8, head_learning_rate=1e-12, **{**common, "learning_rate": 1e-12}),
                       progress=False)
    assert not torch.allclose(initial.model.head.head[0].weight, one.model.head.head[0].weight, atol=1e-4)


def test_same_seed_same_rewards(autoj_pairs):
    train, test = take(autoj_pairs, 0, 8), take(autoj_pairs, 40, 44)
    runs = [finetune("vrm", {}, train, {}, small(seed=3), progress=False) for _ in range(2)]
    rewards = [run.model.rewards(test["prompt"], test["chosen"]) for run in runs]
    assert rewards[0].tobytes() == rewards[1].tobytes()


def test_grm_needs_fine_tune_mode_and_a_decoder(autoj_pairs, chat_gpt2):
    from vrm.methods import build_method

    head = build_method("grm", 4, {})
    x = torch.randn(3, 4)
    with pytest.raises(UserError, match="fine-tune mode only"):
        head.loss({"prompt": x, "chosen": x, "rejected": x}, 1.0)
    with pytest.raises(UserError, match="needs a decoder"):
        build_reward_model("grm", {}, small())

    train = take(autoj_pairs, 0, 8)
    result = finetune("grm", {"sft_weight": 0.5}, train, {}, small(backbone=str(chat_gpt2), max_steps=2), progress=False)
    assert result.model.lm_head


# Export, reload and scoring.


@pytest.mark.parametrize("method, backbone", [("vrm", "minilm"), ("bt", "minilm"), ("grm", "gpt2")])
def test_export_reload_gives_the_same_rewards(method, backbone, autoj_pairs, chat_gpt2, tmp_path):
    name = str(chat_gpt2) if backbone == "gpt2" else backbone
    train, test = take(autoj_pairs, 0, 8), take(autoj_pairs, 40, 48)
    result = finetune(method, {}, train, {}, small(backbone=name, learning_rate=1e-2), progress=False)
    assert any(p.requires_grad for n, p in result.model.backbone.named_parameters() if "lora_" in n)
    in_memory = result.model.rewards(test["prompt"], test["chosen"], batch_size=3)
    folder = export_reward_model(result.model, tmp_path / method)
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "reward_head.safetensors"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    settings = json.loads((folder / "config.json").read_text())["vrm_reward_head"]
    assert settings["method"] == method
    assert settings["max_length"] == 64
    reloaded = load_reward_model(folder)
    assert not any("lora_" in n for n, _ in reloaded.backbone.named_parameters())
    assert np.allclose(reloaded.rewards(test["prompt"], test["chosen"], batch_size=1), in_memory, atol=1e-5)


def test_score_command_batch_sizes_and_errors(autoj_pairs, tmp_path):
    train = take(autoj_pairs, 0, 8)
    result = finetune("vrm", {}, train, {}, small(learning_rate=1e-2), progress=False)
    folder = export_reward_model(result.model, tmp_path / "model")
    rows = [{"prompt": "Hi", "response": "Hello!", "id": "a"},
            {"prompt": autoj_pairs["prompt"][3], "response": autoj_pairs["chosen"][3] * 3, "id": "b"},
            {"prompt": "2+2?", "response": "4"},
            {"prompt": autoj_pairs["prompt"][5], "response": "Short answer."}]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    outputs = {}
    for batch_size in (1, 3):
        target = tmp_path / f"scored{batch_size}.jsonl"
        run = subprocess.run([sys.executable, "-m", "vrm", "score", "--model", str(folder), "--input", str(source),
                              "--output", str(target), "--batch-size", str(batch_size)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs[batch_size] = [json.loads(line) for line in target.read_text().splitlines()]
    for row, one, three in zip(rows, outputs[1], outputs[3]):
        assert {key: one[key] for key in row} == row
        assert abs(one["reward"] - three["reward"]) < 1e-4
    expected = result.model.rewards([r["prompt"] for r in rows], [r["response"] for r in rows])
    assert np.allclose([row["reward"] for row in outputs[1]], expected, atol=1e-4)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "response": "Hello"}\n{"prompt": "Hi"}\n')
    target = tmp_path / "never.jsonl"
    run = subprocess.run([sys.executable, "-m", "vrm", "score", "--model", str(folder), "--input", str(bad),
                          "--output", str(target)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "bad.jsonl:2" in run.stderr
    assert "'response'" in run.stderr
    assert "Traceback" not in run.stderr
    assert not target.exists()
    run = subprocess.run([sys.executable, "-m", "vrm", "score", "--model", str(tmp_path), "--input", str(source),
                          "--output", str(target)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "config.json is missing" in run.stderr
    assert "Traceback" not in run.stderr


def test_config_errors_name_the_key():
    with pytest.raises(UserError, match="finetune.precision"):
        FinetuneConfig(precision="fp8")
    with pytest.raises(UserError, match="unknown key"):
        FinetuneConfig.from_options({"max_step": 3})
    with pytest.raises(UserError, match="finetune.lora has unknown key"):
        FinetuneConfig(lora={"rank": 4})


# The DAG job, in one process and in two under accelerate launch.


def write_job(tmp_path: Path, pairs: dict[str, list[str]], processes: int, batch_size: int) -> dict:
    import pandas as pd

    count = len(pairs["prompt"])
    frame = pd.DataFrame({**pairs, "pair_id": [f"p{i}" for i in range(count)], "train_set": "autoj",
                          "split": ["train"] * (count - 4) + ["test"] * 4})
    folder = tmp_path / f"job{processes}"
    folder.mkdir()
    frame.to_parquet(folder / "pairs.parquet")
    finetune_options = {"max_length": 64, "batch_size": batch_size, "max_steps": 2, "lora": None,
                        "group_by_length": False, "warmup_fraction": 0.0, "max_grad_norm": 0.0,
                        "processes": processes}
    config = {"finetune": finetune_options, "methods": {"bt": {"dropout": 0.0}}, "evaluation": {}}
    return {"config": config, "pairs_path": str(folder / "pairs.parquet"), "train_set": "autoj", "method": "bt",
            "seed": 0, "model_dir": str(folder / "model"), "scores_path": str(folder / "scores.parquet"),
            "threads": 2}


def test_two_processes_match_one(autoj_pairs, tmp_path):
    import pandas as pd
    from safetensors.torch import load_file

    from vrm.pipeline import finetune_stage

    pairs = take(autoj_pairs, 0, 20)
    heads = {}
    for processes, batch_size in ((1, 8), (2, 4)):
        spec = write_job(tmp_path, pairs, processes, batch_size)
        finetune_stage(spec["config"], spec["pairs_path"], "autoj", "bt", 0, spec["model_dir"], spec["scores_path"],
                       threads=2)
        heads[processes] = load_file(str(Path(spec["model_dir"]) / "reward_head.safetensors"))
        report = json.loads((Path(spec["model_dir"]) / "training.json").read_text())["report"]
        assert report["processes"] == processes
        assert report["pairs_seen"] == 16
        assert len(pd.read_parquet(spec["scores_path"])) == 4
    for name, value in heads[1].items():
        assert torch.allclose(value, heads[2][name], atol=1e-5), name
