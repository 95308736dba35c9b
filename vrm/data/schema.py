"""The normalized pair schema every adapter produces, and the errors of the data layer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import json
from pathlib import Path

import pandas as pd

from vrm.errors import UserError

# One row per labelled pair. `label_kind` is "human", "ai" or "constructed";
# `aspect` and `subset` are optional tags ("" when a source has none).
PAIR_COLUMNS = [
    "pair_id",
    "source",
    "prompt",
    "chosen",
    "rejected",
    "label_kind",
    "aspect",
    "subset",
]
LABEL_KINDS = ("human", "ai", "constructed")

# Reasons a row of a source is not turned into a pair.
DROP_TIE = "tie"
DROP_EMPTY_SIDE = "empty side"
DROP_IDENTICAL_SIDES = "identical sides"
DROP_PREFIX_MISMATCH = "transcript prefix mismatch"
DROP_DUPLICATE_PAIR = "duplicate pair"
# The dialogue in a response does not start with the user's first turn, so no shared
# prompt can be recovered (LLMEval2 mt-bench rows).
DROP_TRUNCATED_DIALOGUE = "truncated dialogue"
DROP_REASONS = (
    DROP_TIE,
    DROP_EMPTY_SIDE,
    DROP_IDENTICAL_SIDES,
    DROP_PREFIX_MISMATCH,
    DROP_DUPLICATE_PAIR,
    DROP_TRUNCATED_DIALOGUE,
)


class DataError(UserError):
    """A user-facing data problem: the message names the file, the line and the fix."""


class DataFormatError(DataError):
    """Malformed input: invalid JSON or UTF-8, a missing field, a wrong type, an empty file."""

    def __init__(self, path: str | Path, line: int | None, message: str, fix: str = ""):
        self.path = str(path)
        self.line = line
        self.message = message
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        text = f"{where}: {message}"
        if fix:
            text += f". {fix}"
        super().__init__(text)


class DatasetNotFoundError(DataError):
    """No local copy of a dataset and no reachable hub."""


@dataclass
class DropReport:
    """Counts of rows read, pairs kept and rows dropped by reason for one dataset."""

    dataset: str
    rows_read: int = 0
    pairs_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "rows_read": self.rows_read,
            "pairs_kept": self.pairs_kept,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": int(sum(self.dropped.values())),
            "files": list(self.files),
            "notes": dict(sorted(self.notes.items())),
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def empty_pairs() -> pd.DataFrame:
    """Return an empty frame with the pair columns, all of dtype object."""
    return pd.DataFrame({column: pd.Series([], dtype=object) for column in PAIR_COLUMNS})
