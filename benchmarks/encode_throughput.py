"""Compare the encoding throughput of vrm.backbones with SentenceTransformer.encode.

Both encoders get the same distinct texts, batch size and max length in one process.
Each repeat runs both back to back, alternating which one goes first, and its ratio
compares those two runs, so a slow drift in machine load affects both sides alike.
The script reports texts per second and the ratio per repeat, their medians, the
largest difference between the two outputs, and the time of a cold (empty) and a warm
(filled) feature cache.

On a shared machine other processes slow both encoders down unevenly. The script reads
/proc/stat (Linux only) to measure the cores that other processes used during each run,
waits up to ``--max-wait`` seconds for a quiet machine before each repeat, and reports
medians over all repeats and over the quiet ones.

Example:
    VRM_DATA_ROOT=/path/to/preference python benchmarks/encode_throughput.py \\
        --max-length 128 256 --repeats 3
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import platform
import statistics
import sys
import tempfile
import time

import sentence_transformers
from sentence_transformers import SentenceTransformer
import torch
import transformers

from vrm.backbones import Backbone, FeatureCache
from vrm.manifest import cpu_model

AUTOJ_FILE = Path("autoj-pairwise-test") / "data" / "test" / "testdata_pairwise.jsonl"
TEXT_FIELDS = ("prompt", "response 1", "response 2", "chosen", "rejected", "response", "text")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        help="JSONL or JSON file of texts: strings, or records with prompt/response fields "
        f"({', '.join(TEXT_FIELDS)}). Default: $VRM_DATA_ROOT/{AUTOJ_FILE}",
    )

    parser.add_argument("--backbone", default="minilm", help="model folder, hub id or 'minilm' (default)")
    parser.add_argument("--texts", type=int, default=1000, help="number of distinct texts to encode (default 1000)")
    parser.add_argument(
        "--items",
        choices=("texts", "pairs"),
        default="texts",
        help="encode single texts, or (prompt, response) text pairs (default texts)",
    )

    parser.add_argument(
        "--max-length", type=int, nargs="+", default=[128, 256], help="max tokens per item (default 128 256)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="items per batch for both encoders (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder and max length (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own setting)")

    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.1,
        help="a repeat counts as quiet when other processes used fewer cores than this (default 0.1)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        help="seconds to wait for a quiet machine before each repeat, then run anyway (default 60)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def default_data_path() -> Path:
    root = os.environ.get("VRM_DATA_ROOT")
    if not root:
        sys.exit("no data: pass --data FILE or set VRM_DATA_ROOT to the preference data folder")
    path = Path(root) / AUTOJ_FILE
    if not path.is_file():
        sys.exit(f"data file not found: {path}. Pass --data FILE")
    return path


def read_records(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return loaded if isinstance(loaded, list) else [loaded]


def load_items(path: Path, count: int, kind: str) -> list:
    """Return up to ``count`` distinct texts, or (prompt, response) pairs, in file order."""
    items: dict = {}
    for record in read_records(path):
        if isinstance(record, str):
            candidates = [record] if kind == "texts" else []
        elif kind == "texts":
            candidates = [record[field] for field in TEXT_FIELDS if isinstance(record.get(field), str)]
        else:
            prompt = record.get("prompt")
            responses = [record[field] for field in TEXT_FIELDS[1:] if isinstance(record.get(field), str)]
            candidates = [(prompt, response) for response in responses] if isinstance(prompt, str) else []
        for candidate in candidates:
            items.setdefault(candidate, None)
            if len(items) == count:
                return list(items)
    return list(items)


def busy_cpu_seconds() -> float:
    """Return the CPU seconds all processes have spent busy since boot, from /proc/stat (Linux)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    # Fields after "cpu": user nice system idle iowait irq softirq steal, in clock ticks.
    ticks = [int(value) for value in fields[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Timing:
    """Wall seconds of one call, and the cores that other processes used meanwhile (on average)."""

    seconds: float
    other_cores: float


def time_call(function) -> tuple[Timing, object]:
    busy_start, own_start, start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    output = function()
    seconds = time.perf_counter() - start
    other_seconds = (busy_cpu_seconds() - busy_start) - (own_cpu_seconds() - own_start)
    return Timing(seconds, max(other_seconds, 0.0) / seconds), output


def wait_for_quiet(threshold: float, max_wait: float) -> bool:
    """Wait until other processes used under ``threshold`` cores for 2 s, or ``max_wait`` s passed."""
    deadline = time.monotonic() + max_wait
    while True:
        busy_start = busy_cpu_seconds()
        time.sleep(2.0)
        if (busy_cpu_seconds() - busy_start) / 2.0 < threshold:
            return True
        if time.monotonic() > deadline:
            return False


def describe_machine() -> dict:
    cpu = cpu_model()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def benchmark_length(backbone, sentence_model, items, max_length, args) -> dict:
    sentence_model.max_seq_length = max_length

    def run_ours():
        return backbone.encode(items, max_length=max_length, batch_size=args.batch_size, progress=False)

    def run_sentence_transformers():
        return sentence_model.encode(items, batch_size=args.batch_size, convert_to_tensor=True).cpu()

    # Warm up both (allocator, one-time kernel setup) on a few items.
    backbone.encode(items[:8], max_length=max_length, batch_size=args.batch_size, progress=False)
    sentence_model.encode(items[:8], batch_size=args.batch_size)

    repeats = []
    max_difference = 0.0
    for repeat in range(args.repeats):
        wait_for_quiet(args.quiet_cores, args.max_wait)
        order = [("vrm", run_ours), ("st", run_sentence_transformers)]
        if repeat % 2 == 1:
            order.reverse()
        timings, outputs = {}, {}
        for name, function in order:
            timings[name], outputs[name] = time_call(function)
        max_difference = max(max_difference, (outputs["vrm"] - outputs["st"]).abs().max().item())

        record = {
            "vrm_texts_per_s": len(items) / timings["vrm"].seconds,
            "st_texts_per_s": len(items) / timings["st"].seconds,
            "other_cores": max(timing.other_cores for timing in timings.values()),
        }
        record["ratio"] = record["vrm_texts_per_s"] / record["st_texts_per_s"]
        record["quiet"] = record["other_cores"] < args.quiet_cores
        repeats.append(record)
        print(
            f"  max_length {max_length} repeat {repeat + 1}: vrm {record['vrm_texts_per_s']:.1f} texts/s, "
            f"sentence-transformers {record['st_texts_per_s']:.1f} texts/s, ratio {record['ratio']:.2f}, "
            f"other processes {record['other_cores']:.2f} cores",
            file=sys.stderr,
        )

    wait_for_quiet(args.quiet_cores, args.max_wait)
    with tempfile.TemporaryDirectory() as cache_dir:
        cold, _ = time_call(
            lambda: FeatureCache(cache_dir).get_or_encode(
                backbone, items, max_length=max_length, batch_size=args.batch_size, progress=False
            )
        )
        warm, _ = time_call(
            lambda: FeatureCache(cache_dir).get_or_encode(
                backbone, items, max_length=max_length, batch_size=args.batch_size, progress=False
            )
        )

    quiet = [record for record in repeats if record["quiet"]]
    return {
        "max_length": max_length,
        "repeats": repeats,
        "vrm_median": statistics.median(record["vrm_texts_per_s"] for record in repeats),
        "st_median": statistics.median(record["st_texts_per_s"] for record in repeats),
        "ratio_median": statistics.median(record["ratio"] for record in repeats),
        "quiet_repeats": len(quiet),
        "quiet_vrm_median": statistics.median(r["vrm_texts_per_s"] for r in quiet) if quiet else None,
        "quiet_st_median": statistics.median(r["st_texts_per_s"] for r in quiet) if quiet else None,
        "quiet_ratio_median": statistics.median(r["ratio"] for r in quiet) if quiet else None,
        "max_abs_difference": max_difference,
        "cache_cold_s": cold.seconds,
        "cache_cold_other_cores": cold.other_cores,
        "cache_warm_s": warm.seconds,
    }


def format_number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(results: list[dict], item_count: int) -> None:
    print(
        "| max_length | vrm texts/s | sentence-transformers texts/s | vrm / ST | quiet repeats "
        "| vrm texts/s, quiet | ST texts/s, quiet | vrm / ST, quiet | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        cells = [
            str(result["max_length"]),
            format_number(result["vrm_median"]),
            format_number(result["st_median"]),
            format_number(result["ratio_median"], 2),
            f"{result['quiet_repeats']} of {len(result['repeats'])}",
            format_number(result["quiet_vrm_median"]),
            format_number(result["quiet_st_median"]),
            format_number(result["quiet_ratio_median"], 2),
            f"{result['max_abs_difference']:.1e}",
        ]
        print("| " + " | ".join(cells) + " |")

    print()
    print("| max_length | cache cold s (texts/s) | other processes during cold run, cores | cache warm s (texts/s) |")
    print("|---|---|---|---|")
    for result in results:
        cold, warm = result["cache_cold_s"], result["cache_warm_s"]
        print(
            f"| {result['max_length']} | {cold:.2f} ({item_count / cold:.1f}) | {result['cache_cold_other_cores']:.2f} "
            f"| {warm:.3f} ({item_count / warm:.0f}) |"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    data_path = args.data or default_data_path()
    items = load_items(data_path, args.texts, args.items)
    if not items:
        sys.exit(f"no {args.items} found in {data_path}")

    backbone = Backbone(args.backbone)
    sentence_model = SentenceTransformer(backbone.source, device="cpu")
    machine = describe_machine()
    print(f"data: {data_path} ({len(items)} distinct {args.items})", file=sys.stderr)

    results = [benchmark_length(backbone, sentence_model, items, length, args) for length in args.max_length]
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]

    print(f"machine: {json.dumps(machine)}")
    print(
        f"data: {data_path.name}, {len(items)} distinct {args.items}, batch size {args.batch_size}, "
        f"{args.repeats} repeats, backbone {args.backbone}. Rates are medians over repeats; "
        f"a repeat is quiet when other processes used under {args.quiet_cores} cores during both runs."
    )
    print()
    print_table(results, len(items))

    if args.json:
        report = {"machine": machine, "args": vars(args) | {"data": str(data_path)}, "results": results}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
