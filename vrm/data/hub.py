"""Load preference sets through `datasets.load_dataset`, from the hub or from local files.

Each hub source has one conversion from a loaded `datasets.Dataset` to pairs. The same
conversion serves `load_dataset(HUB_ID, ...)` and `load_dataset("json" or "parquet",
data_files=...)` on local files in the hub's schema, so both paths give the same pairs.

pandas 3 stores text as the `str` dtype, and `Dataset.from_pandas` turns such columns into
`large_string` features, which `datasets.concatenate_datasets` refuses to join with the
`string` features of JSON-loaded datasets (checked with datasets 5.2 and pandas 3.1). Pair
frames use object columns for that reason, and `pairs_to_dataset` sets `string` features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from vrm.data.adapters import add_hh_rlhf_record, add_note
from vrm.data.local import add_chat_or_text_record
from vrm.data.pairs import PairCollector
from vrm.data.readers import FILES_READ, Record, note_file_read, require_field, require_type
from vrm.data.schema import DROP_TIE, PAIR_COLUMNS, DatasetNotFoundError

if TYPE_CHECKING:
    import datasets

HH_RLHF_HUB_ID = "Anthropic/hh-rlhf"
ULTRAFEEDBACK_HUB_ID = "HuggingFaceH4/ultrafeedback_binarized"
REWARDBENCH_HUB_ID = "allenai/reward-bench"
NOTE_UNKNOWN_SUBSET = "pairs whose subset is in no section"


def hub_label(hub_id: str, data_dir: str | None = None, split: str | None = None) -> str:
    """Describe a hub dataset for messages, for example "hub Anthropic/hh-rlhf (data_dir=..., split=test)"."""
    details = [f"{key}={value}" for key, value in (("data_dir", data_dir), ("split", split)) if value]
    return f"hub {hub_id}" + (f" ({', '.join(details)})" if details else "")


def load_hub_dataset(
    hub_id: str, *, split: str, data_dir: str | None = None, cache_dir: str | Path | None = None
) -> "datasets.Dataset":
    """Load one split of a hub dataset; raises OSError (ConnectionError offline) on failure."""
    import datasets

    FILES_READ.add(hub_label(hub_id, data_dir, split))
    return datasets.load_dataset(
        hub_id, data_dir=data_dir, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
    )


def load_files_dataset(data_files: str | Path | Sequence[str | Path], cache_dir: str | Path | None = None) -> "datasets.Dataset":
    """Load local files in a hub schema with the `json` or `parquet` builder of `datasets`.

    JSON Lines (.jsonl, .json, also .gz) uses the json builder and .parquet the parquet
    builder; all files must use the same one. Raises DatasetNotFoundError for a missing file.
    """
    import datasets

    paths = [Path(data_files)] if isinstance(data_files, (str, Path)) else [Path(file) for file in data_files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DatasetNotFoundError(f"data files not found: {', '.join(missing)}. Check the paths")
    for path in paths:
        note_file_read(path)
    builders = {"parquet" if path.name.endswith(".parquet") else "json" for path in paths}
    if len(builders) != 1:
        raise ValueError("data_files mixes Parquet and JSON files; load them separately")
    return datasets.load_dataset(
        builders.pop(),
        data_files=[str(path) for path in paths],
        split="train",
        cache_dir=None if cache_dir is None else str(cache_dir),
    )


def dataset_records(dataset: "datasets.Dataset", origin: str) -> Iterator[Record]:
    """Yield the rows of a Dataset as records named "row i" of `origin` (no line numbers)."""
    for index, row in enumerate(dataset):
        yield Record(row, origin, None, index, label="row")


def pairs_from_hh_rlhf(
    dataset: "datasets.Dataset", collector: PairCollector, *, origin: str, row_prefix: str, aspect: str, subset: str
) -> None:
    """Convert a Dataset in the hh-rlhf schema ({"chosen", "rejected"} transcripts) to pairs.

    A pair's row id is `row_prefix` followed by the 1-based row number, which equals the
    line number in the hub's JSON Lines file.
    """
    for record in dataset_records(dataset, origin):
        add_hh_rlhf_record(record, collector, f"{row_prefix}{record.index + 1}", aspect, subset)


def pairs_from_ultrafeedback(dataset: "datasets.Dataset", collector: PairCollector, *, origin: str, row_prefix: str) -> None:
    """Convert a Dataset in the ultrafeedback_binarized schema to pairs.

    `chosen` and `rejected` are message lists that share the user turn. The prompt is that
    shared prefix rendered by render_conversation (the `prompt` text for a single turn), and
    each response is the final assistant message. Rows with score_chosen equal to
    score_rejected are dropped as ties. The row id is `row_prefix` plus prompt_id, or plus
    the 0-based row index where prompt_id is missing or repeated.
    """
    seen: set[str] = set()
    for record in dataset_records(dataset, origin):
        score_chosen = require_field(record, "score_chosen")
        score_rejected = require_field(record, "score_rejected")
        prompt_id = record.data.get("prompt_id")
        row_id = str(prompt_id) if prompt_id and str(prompt_id) not in seen else str(record.index)
        seen.add(row_id)
        if score_chosen is not None and score_chosen == score_rejected:
            collector.report.rows_read += 1
            collector.drop(DROP_TIE)
            continue
        add_chat_or_text_record(record, collector, f"{row_prefix}{row_id}")


def pairs_from_rewardbench(
    dataset: "datasets.Dataset", collector: PairCollector, *, origin: str, sections: dict[str, str]
) -> None:
    """Convert a Dataset in the RewardBench layout (prompt, chosen, rejected, subset, id) to pairs.

    `subset` is kept as the pair's subset and its section (from `sections`, subset ->
    section) becomes the aspect; subsets in no section keep an empty aspect and are
    counted in the report's notes. The row id is the `id` column, or the 0-based row
    index where `id` is missing or repeated.
    """
    seen: set[str] = set()
    for record in dataset_records(dataset, origin):
        prompt = require_type(record, "prompt", str, "a string")
        chosen = require_type(record, "chosen", str, "a string")
        rejected = require_type(record, "rejected", str, "a string")
        subset = require_type(record, "subset", str, "a string")
        row = record.data.get("id")
        row_id = str(row) if row is not None and str(row) not in seen else str(record.index)
        seen.add(row_id)
        collector.report.rows_read += 1
        if subset not in sections:
            add_note(collector, NOTE_UNKNOWN_SUBSET)
        collector.add(row_id, prompt, chosen, rejected, aspect=sections.get(subset, ""), subset=subset)


def pairs_to_dataset(pairs: pd.DataFrame) -> "datasets.Dataset":
    """Convert a pair frame to a Dataset whose columns all have the `string` feature.

    The explicit features keep the result joinable with JSON-loaded datasets (see the
    module docstring about `large_string`).
    """
    import datasets

    features = datasets.Features({column: datasets.Value("string") for column in PAIR_COLUMNS})
    frame = pairs[PAIR_COLUMNS].astype(object).reset_index(drop=True)
    return datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)
