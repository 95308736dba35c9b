"""Compare fine-tune throughput of vrm.finetune with TRL's RewardTrainer on the same work.

Both sides train a Bradley-Terry reward model on the same backbone, pairs, batch size,
max length, number of optimizer steps, learning rate and precision (float32 on a CPU).
Dropout is off on both (RewardTrainer's default, and vrm.finetune's). Each side runs in a
fresh process, so the peak resident memory of a process is that side's alone. Each repeat runs every side
once, and the order of the sides rotates from repeat to repeat.

The pairs are the first RMB pairs (`rmb` source) that fit in the max length as
RewardTrainer tokenizes them (prompt and response concatenated, plus its EOS token), so
neither side truncates: RewardTrainer drops longer pairs instead of truncating them, and
the script counts how many it keeps. RewardTrainer also needs an EOS token, which BERT
tokenizers such as MiniLM's lack; the script checks that it raises TypeError without one
and then gives it "[SEP]".

Example:
    VRM_DATA_ROOT=/path/to/preference python benchmarks/finetune_throughput.py \\
        --pairs 512 --steps 30 --batch-size 8 --max-length 128 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

EOS_FOR_BERT = "[SEP]"


def load_pairs(count: int) -> dict[str, list[str]]:
    from vrm.data.sources import load_source

    pairs, _ = load_source("rmb")
    pairs = pairs.head(count)
    return {side: pairs[side].astype(str).tolist() for side in ("prompt", "chosen", "rejected")}


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def trl_dataset(pairs: dict[str, list[str]]):
    import datasets

    return datasets.Dataset.from_dict(pairs)


def fitting_pairs(pairs: dict[str, list[str]], backbone: str, max_length: int) -> tuple[dict[str, list[str]], int]:
    """Keep the pairs RewardTrainer keeps at this max length; return them and how many there were."""
    from transformers import AutoTokenizer

    from vrm.backbones import resolve_backbone

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(backbone))
    eos = tokenizer.eos_token or EOS_FOR_BERT
    keep = []
    for index, prompt in enumerate(pairs["prompt"]):
        lengths = [len(tokenizer(prompt + pairs[side][index] + eos, verbose=False)["input_ids"])
                   for side in ("chosen", "rejected")]
        if max(lengths) <= max_length:
            keep.append(index)
    return {side: [values[i] for i in keep] for side, values in pairs.items()}, len(pairs["prompt"])


def run_trl(pairs, args) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from vrm.backbones import resolve_backbone

    source = resolve_backbone(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    common = dict(per_device_train_batch_size=args.batch_size, max_length=args.max_length, max_steps=args.steps,
                  learning_rate=args.learning_rate, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                  logging_steps=args.steps, save_strategy="no", report_to="none", bf16=False, use_cpu=True,
                  dataloader_num_workers=0, seed=0, disable_dropout=True, max_grad_norm=1.0)
    with tempfile.TemporaryDirectory() as folder:
        eos_error = None
        if tokenizer.eos_token is None:
            try:
                RewardTrainer(model=model, args=RewardConfig(output_dir=folder, **common), train_dataset=trl_dataset(pairs["fit"]),
                              processing_class=tokenizer)
            except TypeError as error:
                eos_error = f"TypeError: {error}"
        config = RewardConfig(output_dir=folder, eos_token=tokenizer.eos_token or EOS_FOR_BERT, **common)
        unfiltered = RewardTrainer(model=model, args=config, train_dataset=trl_dataset(pairs["all"]),
                                   processing_class=tokenizer)
        kept_of_all = len(unfiltered.train_dataset)
        del unfiltered
        trainer = RewardTrainer(model=model, args=config, train_dataset=trl_dataset(pairs["fit"]),
                                processing_class=tokenizer)
        kept = len(trainer.train_dataset)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {"side": "trl", "seconds": seconds, "pairs_per_second": args.steps * args.batch_size / seconds,
            "peak_rss_bytes": peak_rss_bytes(), "kept_pairs": kept, "kept_of_all": kept_of_all,
            "all_pairs": len(pairs["all"]["prompt"]), "error_without_eos": eos_error}


def run_vrm(pairs, args, group_by_length: bool) -> dict:
    from vrm.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(backbone=args.backbone, lora=None, max_length=args.max_length, batch_size=args.batch_size,
                            max_steps=args.steps, learning_rate=args.learning_rate,
                            head_learning_rate=args.learning_rate, warmup_fraction=0.0, weight_decay=0.0,
                            group_by_length=group_by_length, precision="fp32")
    result = finetune("bt", {"hidden": 0, "dropout": 0.0}, pairs, {}, config, progress=False)
    report = result.report
    return {"side": f"vrm{'' if group_by_length else '-unsorted'}", "seconds": report["train_seconds"],
            "pairs_per_second": report["pairs_per_second"], "peak_rss_bytes": peak_rss_bytes(),
            "truncated_sequences": report["truncated_train_sequences"]}


def child(args) -> None:
    torch.manual_seed(0)
    pairs = json.loads(Path(args.pairs_file).read_text())
    if args.side == "trl":
        result = run_trl(pairs, args)
    else:
        result = run_vrm(pairs["fit"], args, group_by_length=args.side == "vrm")
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--pairs", type=int, default=512, help="RMB pairs to read before keeping those that fit")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sides", nargs="+", default=["trl", "vrm", "vrm-unsorted"])
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", help=argparse.SUPPRESS)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    if args.side:
        child(args)
        return

    everything = load_pairs(args.pairs)
    pairs, read = fitting_pairs(everything, args.backbone, args.max_length)
    print(f"{len(pairs['prompt'])} of {read} RMB pairs fit in {args.max_length} tokens as RewardTrainer tokenizes them")
    if len(pairs["prompt"]) < args.batch_size:
        sys.exit("too few pairs fit: raise --pairs or --max-length")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"fit": pairs, "all": everything}, handle)
        pairs_file = handle.name
    results = []
    for repeat in range(args.repeats):
        order = args.sides[repeat % len(args.sides):] + args.sides[:repeat % len(args.sides)]
        for side in order:
            command = [sys.executable, __file__, "--side", side, "--pairs-file", pairs_file,
                       "--backbone", args.backbone, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--max-length", str(args.max_length), "--learning-rate", str(args.learning_rate)]
            run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
            lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if run.returncode != 0 or not lines:
                sys.exit(f"{side} failed:\n{run.stderr[-3000:]}")
            result = {**json.loads(lines[-1][len("RESULT "):]), "repeat": repeat}
            results.append(result)
            print(f"repeat {repeat} {result['side']:<13} {result['pairs_per_second']:7.2f} pairs/s  "
                  f"peak RSS {result['peak_rss_bytes'] / 2**20:7.0f} MiB")
    os.unlink(pairs_file)
    print("\nmedians over repeats")
    summary = {}
    for side in args.sides:
        rows = [r for r in results if r["side"] == side]
        summary[side] = {"pairs_per_second": statistics.median(r["pairs_per_second"] for r in rows),
                         "peak_rss_mib": statistics.median(r["peak_rss_bytes"] for r in rows) / 2**20}
        print(f"{side:<13} {summary[side]['pairs_per_second']:7.2f} pairs/s  peak RSS {summary[side]['peak_rss_mib']:7.0f} MiB")
    trl = [r for r in results if r["side"] == "trl"]
    if trl:
        print(f"RewardTrainer kept {trl[0]['kept_of_all']} of the {trl[0]['all_pairs']} pairs read and "
              f"{trl[0]['kept_pairs']} of the {len(pairs['prompt'])} that fit; "
              f"without an EOS token: {trl[0]['error_without_eos']}")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads()}
    print(json.dumps(machine))
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "machine": machine, "results": results,
                                                 "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
