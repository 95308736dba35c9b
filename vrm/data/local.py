"""Load pairs from a generic local file: JSON Lines, a JSON list of records, or Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vrm.data.adapters import require_messages
from vrm.data.pairs import PairCollector, render_conversation
from vrm.data.readers import (
    Record,
    format_error,
    optional_str,
    read_json_records,
    read_jsonl,
    read_parquet_records,
    read_text,
    require_str,
    require_type,
)
from vrm.data.schema import DROP_PREFIX_MISMATCH, DataFormatError, DatasetNotFoundError, DropReport

LOCAL_FORMATS = ("jsonl", "json", "parquet")
_FORMAT_FIX = "Pass the format explicitly: jsonl, json or parquet"


def detect_format(path: str | Path) -> str:
    """Return "jsonl", "json" or "parquet" from the file name.

    A .json file whose first character is "[" is a JSON list. Any other .json file is read
    as JSON Lines, because several published sets use .json for JSON Lines.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".json", ".json.gz")):
        return "json" if read_text(path).lstrip().startswith("[") else "jsonl"
    raise DataFormatError(path, None, "cannot tell the format from the file name", _FORMAT_FIX)


def read_records(path: str | Path, format: str | None = None) -> list[Record]:
    """Read the records of a JSON Lines, JSON list or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: file not found. Check the path")
    format = format or detect_format(path)
    if format == "jsonl":
        return read_jsonl(path)
    if format == "json":
        return read_json_records(path)
    if format == "parquet":
        return read_parquet_records(path)
    raise ValueError(f"unknown format {format!r}; expected one of {', '.join(LOCAL_FORMATS)}")


def split_chat_pair(record: Record, chosen: list[dict], rejected: list[dict]) -> tuple[str, str, str] | None:
    """Split chosen and rejected conversations into (prompt, chosen response, rejected response).

    Both conversations must end with an assistant message, the response. The messages
    before it must be the same on both sides, and they render into the prompt with
    render_conversation. When that prefix is empty, the record's "prompt" field is used.
    Returns None when the prefixes differ.
    """
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages or messages[-1]["role"] != "assistant":
            last_role = messages[-1]["role"] if messages else "none"
            raise format_error(
                record,
                f"the last message of {field!r} has role {last_role!r}, expected 'assistant'",
                "End each conversation with the assistant response being compared",
            )
    prefix = chosen[:-1]
    rejected_prefix = rejected[:-1]
    same_prefix = len(prefix) == len(rejected_prefix) and all(
        left["role"] == right["role"] and left["content"] == right["content"]
        for left, right in zip(prefix, rejected_prefix)
    )
    if not same_prefix:
        return None
    prompt = render_conversation(prefix) if prefix else optional_str(record, "prompt")
    return prompt, chosen[-1]["content"], rejected[-1]["content"]


def add_chat_or_text_record(record: Record, collector: PairCollector, row_id: str) -> None:
    """Add the pair of one record in text form (prompt, chosen, rejected strings) or chat form."""
    collector.report.rows_read += 1
    chosen_value = require_type(record, "chosen", (str, list), "a string or a list of {role, content} messages")
    if isinstance(chosen_value, str):
        prompt = require_str(record, "prompt")
        chosen = chosen_value
        rejected = require_str(record, "rejected")
    else:
        parts = split_chat_pair(record, require_messages(record, "chosen"), require_messages(record, "rejected"))
        if parts is None:
            collector.drop(DROP_PREFIX_MISMATCH)
            return
        prompt, chosen, rejected = parts
    aspect = optional_str(record, "aspect")
    subset = optional_str(record, "subset")
    collector.add(row_id, prompt, chosen, rejected, aspect=aspect, subset=subset)


def record_row_id(record: Record, seen: set[str]) -> str:
    """Return the record's `id` field as text, or its 0-based index when it has none."""
    if record.data.get("id") is None:
        return str(record.index)
    row_id = str(require_type(record, "id", (str, int), "a string or integer id"))
    if row_id in seen:
        raise format_error(record, f"duplicate id {row_id!r}", "Give every record a unique id")
    seen.add(row_id)
    return row_id


def load_local(
    path: str | Path, format: str | None = None, *, label_kind: str = "human", source: str = "local"
) -> tuple[pd.DataFrame, DropReport]:
    """Load pairs from a local JSON Lines, JSON list or Parquet file.

    Each record contains either `prompt`, `chosen` and `rejected` strings, or `chosen` and
    `rejected` lists of {role, content} messages that share every message but the final
    assistant one. A record whose prefixes differ is dropped as prefix mismatch. Optional
    `aspect`, `subset` and `id` fields are kept. The pair_id is
    "{source}:{file name}/{id}", with the record's 0-based index when it has no id.
    `format` is "jsonl", "json" or "parquet"; None detects it from the file name.
    """
    path = Path(path)
    if format is not None and format not in LOCAL_FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(LOCAL_FORMATS)}")
    report = DropReport(dataset=source, files=[str(path)])
    collector = PairCollector(source, label_kind, report)
    seen_ids: set[str] = set()
    for record in read_records(path, format):
        row_id = record_row_id(record, seen_ids)
        add_chat_or_text_record(record, collector, f"{path.name}/{row_id}")
    return collector.frame(), report
