"""Data layer: preference sources normalized to one pair schema, with splits and checks."""

from vrm.data.check import check_main
from vrm.data.local import load_local
from vrm.data.pairs import render_conversation
from vrm.data.schema import PAIR_COLUMNS, DataError, DataFormatError, DatasetNotFoundError, DropReport
from vrm.data.sources import SOURCES, load_source, load_sources, resolve_data_root, source_names
from vrm.data.split import (
    assign_splits,
    dedupe_pairs,
    normalize_prompt,
    prompt_group,
    prompt_groups,
    subsample_groups,
)

__all__ = [
    "PAIR_COLUMNS",
    "SOURCES",
    "DataError",
    "DataFormatError",
    "DatasetNotFoundError",
    "DropReport",
    "assign_splits",
    "check_main",
    "dedupe_pairs",
    "load_local",
    "load_source",
    "load_sources",
    "normalize_prompt",
    "prompt_group",
    "prompt_groups",
    "render_conversation",
    "resolve_data_root",
    "source_names",
    "subsample_groups",
]
