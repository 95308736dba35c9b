"""Collect pairs into the normalized frame, with the drop checks every adapter shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from vrm.data.schema import (
    DROP_EMPTY_SIDE,
    DROP_IDENTICAL_SIDES,
    LABEL_KINDS,
    PAIR_COLUMNS,
    DropReport,
)

NOTE_CANDIDATE_PAIRS = "candidate pairs"
NOTE_EMPTY_PROMPT = "kept pairs with an empty prompt"


def role_label(role: str) -> str:
    """Return the label a role gets in rendered text: "user" becomes "User"."""
    return role[:1].upper() + role[1:]


def render_conversation(messages: Sequence[Mapping[str, Any]]) -> str:
    """Render chat messages ({"role", "content"} mappings) as plain text.

    A conversation of one message renders as its content alone, so a single user turn is
    the bare prompt and a single assistant turn the bare response. Longer conversations
    render each message as "Role: content" (role capitalized), separated by blank lines.
    """
    if len(messages) == 1:
        return str(messages[0]["content"])
    return "\n\n".join(f"{role_label(str(message['role']))}: {message['content']}" for message in messages)


def shared_prefix_length(left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]) -> int:
    """Count the leading messages two conversations share (same role and content)."""
    count = 0
    for left_message, right_message in zip(left, right):
        if left_message["role"] != right_message["role"] or left_message["content"] != right_message["content"]:
            break
        count += 1
    return count


class PairCollector:
    """Collect the pairs of one source, dropping and counting empty and identical sides.

    Responses are stored stripped of surrounding whitespace. Each candidate pair passed to
    `add` is either kept or counted under one drop reason, so for every source
    pairs_kept + sum(dropped) equals the number of candidate pairs.
    """

    def __init__(self, source: str, label_kind: str, report: DropReport):
        if label_kind not in LABEL_KINDS:
            raise ValueError(f"invalid label_kind {label_kind!r}; expected one of {', '.join(LABEL_KINDS)}")
        self.source = source
        self.label_kind = label_kind
        self.report = report
        self.rows: dict[str, list[str]] = {column: [] for column in PAIR_COLUMNS}
        self.candidates = 0
        self._ids: set[str] = set()

    def drop(self, reason: str, count: int = 1) -> None:
        """Count `count` candidate pairs as dropped for `reason`."""
        self.candidates += count
        self.report.drop(reason, count)

    def add(self, row_id: str, prompt: str, chosen: str, rejected: str, aspect: str = "", subset: str = "") -> bool:
        """Add one candidate pair; return False when it is dropped for an empty or identical side."""
        chosen = chosen.strip()
        rejected = rejected.strip()
        if not chosen or not rejected:
            self.drop(DROP_EMPTY_SIDE)
            return False
        if chosen == rejected:
            self.drop(DROP_IDENTICAL_SIDES)
            return False

        pair_id = f"{self.source}:{row_id}"
        if pair_id in self._ids:
            # A repeated id is a bug in the adapter, not in the data.
            raise ValueError(f"duplicate pair_id {pair_id!r} in source {self.source!r}")
        self._ids.add(pair_id)
        self.candidates += 1
        if not prompt.strip():
            self.report.notes[NOTE_EMPTY_PROMPT] = self.report.notes.get(NOTE_EMPTY_PROMPT, 0) + 1

        values = {
            "pair_id": pair_id,
            "source": self.source,
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "label_kind": self.label_kind,
            "aspect": aspect,
            "subset": subset,
        }
        for column in PAIR_COLUMNS:
            self.rows[column].append(values[column])
        return True

    def frame(self, note_candidates: bool = False) -> pd.DataFrame:
        """Return the kept pairs as a frame of object columns and record pairs_kept.

        With `note_candidates`, also store the number of candidate pairs in the report's
        notes; sources that build several pairs from one row use this.
        """
        self.report.pairs_kept = len(self.rows["pair_id"])
        if note_candidates:
            self.report.notes[NOTE_CANDIDATE_PAIRS] = self.candidates
        return pairs_frame(self.rows)


def pairs_frame(columns: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Build a pair frame from column lists, every column of dtype object."""
    return pd.DataFrame({column: pd.Series(list(columns[column]), dtype=object) for column in PAIR_COLUMNS})
