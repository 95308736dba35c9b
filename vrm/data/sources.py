"""Registry of named preference sources and `load_source`, which returns normalized pairs.

Local files are looked up under a data root: the `data_root` argument, else the
VRM_DATA_ROOT environment variable. Each source's files sit under the same relative paths
as in the published repositories (see SOURCES). When they are missing and the source is on
the hub, `datasets.load_dataset` is tried next. When that fails too, DatasetNotFoundError
names the dataset, every path tried and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from vrm.data import adapters, hub
from vrm.data.local import load_local
from vrm.data.pairs import PairCollector, pairs_frame
from vrm.data.schema import PAIR_COLUMNS, DatasetNotFoundError, DropReport

if TYPE_CHECKING:
    import datasets

DATA_ROOT_ENV = "VRM_DATA_ROOT"

Reader = Callable[[Sequence[Path], PairCollector], None]


@dataclass(frozen=True)
class Source:
    """A named source: how to load it, its label kind, and the options it accepts."""

    name: str
    label_kind: str
    summary: str
    load: Callable[..., tuple[pd.DataFrame, DropReport]]
    options: tuple[str, ...]
    patterns: tuple[str, ...] = ()


def resolve_data_root(data_root: str | Path | None = None) -> Path | None:
    """Return the data root: the argument, else $VRM_DATA_ROOT, else None."""
    if data_root is not None:
        return Path(data_root)
    configured = os.environ.get(DATA_ROOT_ENV)
    return Path(configured) if configured else None


def find_source_files(data_root: Path | None, patterns: Sequence[str]) -> tuple[list[Path] | None, list[str]]:
    """Match every glob pattern under the data root.

    Returns the matched files, sorted, or None when some pattern matches nothing, together
    with the paths tried (for messages).
    """
    if data_root is None:
        return None, [f"no data root ({DATA_ROOT_ENV} is not set and no data_root was given)"]
    files: list[Path] = []
    tried = []
    for pattern in patterns:
        tried.append(str(data_root / pattern))
        matches = sorted(path for path in data_root.glob(pattern) if path.is_file())
        if not matches:
            return None, tried
        files.extend(matches)
    return files, tried


def not_found_error(name: str, tried: Iterable[str], fix_folder: str | None, on_hub: bool) -> DatasetNotFoundError:
    """Build the error for a dataset found neither locally nor on the hub, naming every path tried."""
    lines = [f"dataset {name!r} not found. Tried:"]
    lines.extend(f"  {entry}" for entry in tried)
    if fix_folder:
        fix = f"Set {DATA_ROOT_ENV} (or the data_root argument or config key) to the folder that contains {fix_folder}"
    else:
        fix = "Pass data_files= with local copies in the hub's schema"
    if on_hub:
        fix += ", or run where the dataset hub is reachable"
    lines.append(fix)
    return DatasetNotFoundError("\n".join(lines))


def explicit_files(name: str, files: str | Path | Sequence[str | Path]) -> list[Path]:
    """Return the `files` option as paths, raising DatasetNotFoundError when one is missing."""
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(file) for file in files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DatasetNotFoundError(f"dataset {name!r}: files not found: {', '.join(missing)}. Check the paths")
    return paths


def load_from_files(
    name: str,
    label_kind: str,
    patterns: tuple[str, ...],
    reader: Reader,
    expands_rows: bool,
    data_root: Path | None,
    files: str | Path | Sequence[str | Path] | None = None,
) -> tuple[pd.DataFrame, DropReport]:
    """Load a source that exists only as files: from `files`, else from the data root."""
    if files is not None:
        paths = explicit_files(name, files)
    else:
        paths, tried = find_source_files(data_root, patterns)
        if paths is None:
            raise not_found_error(name, tried, patterns[0].split("/")[0] + "/", on_hub=False)
    report = DropReport(dataset=name, files=[str(path) for path in paths])
    collector = PairCollector(name, label_kind, report)
    reader(paths, collector)
    return collector.frame(note_candidates=expands_rows), report


# --- hh-rlhf -----------------------------------------------------------------------------


def hh_rlhf_aspect(data_dir: str | None) -> str:
    """Return "harmless" or "helpful" from an hh-rlhf folder name such as "harmless-base"."""
    if data_dir and data_dir.startswith("harmless"):
        return "harmless"
    if data_dir and data_dir.startswith("helpful"):
        return "helpful"
    return ""


def hh_rlhf_local_pattern(data_dir: str, split: str) -> str:
    # The hub stores {data_dir}/{split}.jsonl.gz; a local copy keeps that path inside a
    # folder named hh-rlhf-{data_dir}, as the harmless-base test copy does.
    return f"hh-rlhf-{data_dir}/{data_dir}/{split}.jsonl.gz"


def load_hh_rlhf_source(
    name: str,
    data_root: Path | None,
    *,
    data_dir: str | None,
    split: str,
    row_prefix: str,
    files: str | Path | Sequence[str | Path] | None = None,
    data_files: str | Path | Sequence[str | Path] | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, DropReport]:
    """Load hh-rlhf pairs from `files`, `data_files`, the data root or the hub, in that order.

    `files` and data-root copies are read by this package's JSON Lines reader, which names
    the line of a malformed row. `data_files` and the hub go through `datasets.load_dataset`. Row ids are `row_prefix` plus the 1-based row number, the same
    for a local copy and the hub.
    """
    aspect = hh_rlhf_aspect(data_dir)
    subset = data_dir or ""
    report = DropReport(dataset=name)
    collector = PairCollector(name, "human", report)

    local_paths = None
    tried: list[str] = []
    if files is not None:
        local_paths = explicit_files(name, files)
    elif data_files is None and data_dir is not None:
        local_paths, tried = find_source_files(data_root, (hh_rlhf_local_pattern(data_dir, split),))
    if local_paths is not None:
        report.files = [str(path) for path in local_paths]
        adapters.read_hh_rlhf_files(local_paths, collector, aspect, subset, row_prefix)
        return collector.frame(), report

    if data_files is not None:
        dataset = hub.load_files_dataset(data_files, cache_dir)
        origin = describe_files(data_files)
    else:
        origin = hub.hub_label(hub.HH_RLHF_HUB_ID, data_dir, split)
        try:
            dataset = hub.load_hub_dataset(hub.HH_RLHF_HUB_ID, split=split, data_dir=data_dir, cache_dir=cache_dir)
        except OSError as error:
            tried.append(f"{origin}: {error}")
            fix_folder = hh_rlhf_local_pattern(data_dir, split).split("/")[0] + "/" if data_dir else None
            raise not_found_error(name, tried, fix_folder, on_hub=True) from error
    report.files = [origin]
    hub.pairs_from_hh_rlhf(dataset, collector, origin=origin, row_prefix=row_prefix, aspect=aspect, subset=subset)
    return collector.frame(), report


def load_hh_rlhf(
    data_root: Path | None, *, data_dir: str | None = None, split: str = "test", **options: Any
) -> tuple[pd.DataFrame, DropReport]:
    """Load Anthropic/hh-rlhf; `data_dir` picks a folder such as "harmless-base" (None: all)."""
    row_prefix = f"{data_dir or 'all'}/{split}/"
    return load_hh_rlhf_source("hh-rlhf", data_root, data_dir=data_dir, split=split, row_prefix=row_prefix, **options)


def load_hh_rlhf_harmless(data_root: Path | None, **options: Any) -> tuple[pd.DataFrame, DropReport]:
    """Load the harmless-base test split of hh-rlhf (2,312 rows); row ids are line numbers."""
    return load_hh_rlhf_source(
        "hh-rlhf-harmless", data_root, data_dir="harmless-base", split="test", row_prefix="", **options
    )


# --- UltraFeedback -----------------------------------------------------------------------


def load_files_or_hub(
    name: str,
    hub_id: str,
    split: str,
    files: str | Path | Sequence[str | Path] | None,
    data_files: str | Path | Sequence[str | Path] | None,
    cache_dir: str | Path | None,
) -> tuple["datasets.Dataset", str]:
    """Load local files in a hub schema (`files`, else `data_files`), or else the hub split.

    Returns the dataset and its origin for messages. Raises DatasetNotFoundError naming
    the hub dataset when it cannot be loaded.
    """
    data_files = files if files is not None else data_files
    if data_files is not None:
        return hub.load_files_dataset(data_files, cache_dir), describe_files(data_files)
    origin = hub.hub_label(hub_id, split=split)
    try:
        return hub.load_hub_dataset(hub_id, split=split, cache_dir=cache_dir), origin
    except OSError as error:
        raise not_found_error(name, [f"{origin}: {error}"], None, on_hub=True) from error


def load_ultrafeedback(
    data_root: Path | None,
    *,
    split: str = "test_prefs",
    files: str | Path | Sequence[str | Path] | None = None,
    data_files: str | Path | Sequence[str | Path] | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, DropReport]:
    """Load HuggingFaceH4/ultrafeedback_binarized from `files`/`data_files` or the hub.

    No copy is looked up under the data root; pass local files in the hub's schema as
    `data_files` (or `files`, the same thing here).
    """
    name = "ultrafeedback"
    report = DropReport(dataset=name)
    collector = PairCollector(name, "ai", report)
    dataset, origin = load_files_or_hub(name, hub.ULTRAFEEDBACK_HUB_ID, split, files, data_files, cache_dir)
    report.files = [origin]
    hub.pairs_from_ultrafeedback(dataset, collector, origin=origin, row_prefix=f"{split}/")
    return collector.frame(), report


def load_rewardbench(
    data_root: Path | None,
    *,
    split: str = "filtered",
    hub_id: str = hub.REWARDBENCH_HUB_ID,
    sections: str = "rewardbench",
    files: str | Path | Sequence[str | Path] | None = None,
    data_files: str | Path | Sequence[str | Path] | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, DropReport]:
    """Load RewardBench (allenai/reward-bench, split "filtered") from local files or the hub.

    Local files (`files` or `data_files`: JSON Lines or Parquet) use the hub's layout:
    prompt, chosen, rejected, subset and optionally id. Each pair's aspect is its section
    in the section table `sections` (see vrm.data.sections).
    """
    from vrm.data.sections import load_section_table, section_of

    name = "rewardbench"
    report = DropReport(dataset=name)
    collector = PairCollector(name, "human", report)
    dataset, origin = load_files_or_hub(name, hub_id, split, files, data_files, cache_dir)
    report.files = [origin]
    hub.pairs_from_rewardbench(dataset, collector, origin=origin, sections=section_of(load_section_table(sections)))
    return collector.frame(), report


def describe_files(files: str | Path | Sequence[str | Path]) -> str:
    paths = [files] if isinstance(files, (str, Path)) else list(files)
    return ", ".join(str(path) for path in paths)


# --- generic local files -----------------------------------------------------------------


def load_local_source(
    data_root: Path | None, *, path: str | Path, format: str | None = None, label_kind: str = "human"
) -> tuple[pd.DataFrame, DropReport]:
    """Load the "local" source: one file given by the `path` option (see load_local)."""
    return load_local(path, format, label_kind=label_kind)


# --- registry ----------------------------------------------------------------------------


def file_source(
    name: str, label_kind: str, summary: str, patterns: tuple[str, ...], reader: Reader, expands_rows: bool = False
) -> Source:
    load = functools.partial(load_from_files, name, label_kind, patterns, reader, expands_rows)
    return Source(name, label_kind, summary, load, ("files",), patterns)


_HUB_OPTIONS = ("files", "data_files", "cache_dir")

SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "hh-rlhf-harmless",
            "human",
            "Anthropic hh-rlhf harmless-base test split (local copy, else the hub)",
            load_hh_rlhf_harmless,
            _HUB_OPTIONS,
            (hh_rlhf_local_pattern("harmless-base", "test"),),
        ),
        Source(
            "hh-rlhf",
            "human",
            "Anthropic/hh-rlhf, any folder (data_dir) and split",
            load_hh_rlhf,
            ("data_dir", "split", *_HUB_OPTIONS),
        ),
        Source(
            "ultrafeedback",
            "ai",
            "HuggingFaceH4/ultrafeedback_binarized (split test_prefs by default)",
            load_ultrafeedback,
            ("split", *_HUB_OPTIONS),
        ),
        Source(
            "rewardbench",
            "human",
            "RewardBench (allenai/reward-bench), sections from a section table",
            load_rewardbench,
            ("split", "hub_id", "sections", *_HUB_OPTIONS),
        ),
        file_source(
            "pandalm",
            "human",
            "PandaLM test set, majority of three annotators",
            ("pandalm-testset/data/testset-v1.json",),
            adapters.read_pandalm,
        ),
        file_source(
            "autoj",
            "human",
            "Auto-J pairwise test set",
            ("autoj-pairwise-test/data/test/testdata_pairwise.jsonl",),
            adapters.read_autoj,
        ),
        file_source(
            "llmeval2",
            "human",
            "LLMEval2 benchmark (15 source sets)",
            ("llmeval2/WideDeep/evaluation_data/LLMEval2_benchmark.json",),
            adapters.read_llmeval2,
        ),
        file_source(
            "bigbench-hhh",
            "human",
            "BIG-bench hhh_alignment (helpful, honest, harmless, other)",
            ("bigbench-hhh-alignment/bigbench-1.0.0/bigbench/benchmark_tasks/hhh_alignment/*/task.json",),
            adapters.read_bigbench_hhh,
        ),
        file_source(
            "finegrained-qa",
            "human",
            "FineGrainedRLHF QA feedback, dev split, six comparisons per question",
            ("finegrained-rlhf-qa-feedback/tasks/qa_feedback/data/dev_feedback.json",),
            adapters.read_finegrained_qa,
            expands_rows=True,
        ),
        file_source(
            "rm-bench",
            "constructed",
            "RM-Bench, all nine style combinations per prompt",
            ("rm-bench/data/*_filtered.json",),
            adapters.read_rm_bench,
            expands_rows=True,
        ),
        file_source(
            "rmb",
            "ai",
            "RMB pairwise set",
            ("rmb/RMB_dataset/Pairwise_set/**/*.json",),
            adapters.read_rmb_pairwise,
        ),
        file_source(
            "rmb-bon",
            "ai",
            "RMB best-of-N set as best-against-loser pairs",
            ("rmb/RMB_dataset/BoN_set/**/*.json",),
            adapters.read_rmb_best_of_n,
            expands_rows=True,
        ),
        Source("local", "human", "one local JSONL, JSON or Parquet file", load_local_source, ("path", "format", "label_kind")),
    )
}

# The sources whose files the shared data folder holds, in the order load_sources uses.
LOCAL_FILE_SOURCES = (
    "hh-rlhf-harmless",
    "pandalm",
    "autoj",
    "llmeval2",
    "bigbench-hhh",
    "finegrained-qa",
    "rm-bench",
    "rmb",
    "rmb-bon",
)


def source_names() -> list[str]:
    """Return the registered source names."""
    return list(SOURCES)


def load_source(
    name: str, data_root: str | Path | None = None, *, report_dir: str | Path | None = None, **options: Any
) -> tuple[pd.DataFrame, DropReport]:
    """Load one named source as pairs in the PAIR_COLUMNS schema, with its drop report.

    `data_root` defaults to $VRM_DATA_ROOT. Every file source accepts `files` (its own
    files, in place of the data-root lookup); see SOURCES for the other options of each.
    With `report_dir`, the report is also written to "{report_dir}/{name}.drops.json".
    """
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        accepted = ", ".join(source.options) or "none"
        raise TypeError(f"source {name!r} got unknown options {', '.join(unknown)}; accepted options: {accepted}")

    pairs, report = source.load(resolve_data_root(data_root), **options)
    if report_dir is not None:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        report.write(folder / f"{report.dataset}.drops.json")
    return pairs, report


def load_sources(
    names: Iterable[str] = LOCAL_FILE_SOURCES, data_root: str | Path | None = None, report_dir: str | Path | None = None
) -> tuple[pd.DataFrame, dict[str, DropReport]]:
    """Load several sources and concatenate their pairs; returns the frame and a report per source."""
    frames = []
    reports = {}
    for name in names:
        pairs, report = load_source(name, data_root, report_dir=report_dir)
        frames.append(pairs)
        reports[name] = report
    if not frames:
        return pairs_frame({column: [] for column in PAIR_COLUMNS}), reports
    return pd.concat(frames, ignore_index=True), reports
