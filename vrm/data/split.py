"""Deduplicate pairs and split them into train/validation/test by prompt group.

Every pair whose normalized prompt is the same belongs to one prompt group, and a group is
assigned to a split by a hash of the seed and the group alone. The assignment therefore
does not depend on row order or on which other sources are loaded, and a prompt that two
sources share lands on the same side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import hashlib
import math
import unicodedata

import pandas as pd

from vrm.data.schema import DROP_DUPLICATE_PAIR, DropReport

DEFAULT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def normalize_prompt(text: str) -> str:
    """Normalize text for comparison: Unicode NFKC, casefold, collapse whitespace, strip.

    Whitespace is what str.split() splits on; each run becomes one space.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def prompt_group(text: str) -> str:
    """Return a 16-hex-digit group id: the BLAKE2b hash of the normalized prompt."""
    return hashlib.blake2b(normalize_prompt(text).encode("utf-8"), digest_size=8).hexdigest()


def map_unique(function, texts: Iterable[str]) -> list[str]:
    """Apply `function` to each text, computing it once per distinct text.

    Sources repeat prompts and responses many times (RM-Bench builds nine pairs per prompt),
    so this saves most of the normalization time.
    """
    cache: dict[str, str] = {}
    results = []
    for text in texts:
        if text not in cache:
            cache[text] = function(text)
        results.append(cache[text])
    return results


def prompt_groups(pairs: pd.DataFrame) -> pd.Series:
    """Return the prompt group of every pair, with the frame's index."""
    return pd.Series(map_unique(prompt_group, pairs["prompt"]), index=pairs.index, dtype=object, name="group")


def unit_interval_hash(seed: int, key: str) -> float:
    """Map (seed, key) to a number in [0, 1), the same on every run and machine."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def dedupe_pairs(pairs: pd.DataFrame, report: DropReport) -> pd.DataFrame:
    """Drop pairs whose normalized prompt, chosen and rejected texts all equal an earlier pair's.

    The first occurrence is kept. Dropped pairs are counted in `report` as duplicate pair,
    and report.pairs_kept is set to the number of pairs left.
    """
    columns = [map_unique(normalize_prompt, pairs[column]) for column in ("prompt", "chosen", "rejected")]
    keys = pd.Series(list(zip(*columns)), index=pairs.index, dtype=object)
    duplicated = keys.duplicated(keep="first")
    count = int(duplicated.sum())
    if count:
        report.drop(DROP_DUPLICATE_PAIR, count)
    unique_pairs = pairs.loc[~duplicated].copy()
    report.pairs_kept = len(unique_pairs)
    return unique_pairs


def check_fractions(fractions: Mapping[str, float]) -> None:
    """Raise ValueError unless the fractions are positive and sum to 1."""
    if not fractions:
        raise ValueError("fractions must name at least one split")
    if any(not value > 0 for value in fractions.values()):
        raise ValueError(f"every split fraction must be positive, got {dict(fractions)}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"split fractions must sum to 1, got {total} from {dict(fractions)}")


def split_for_group(group: str, fractions: Mapping[str, float], seed: int) -> str:
    """Return the split of one prompt group: the fraction interval its hash falls in."""
    position = unit_interval_hash(seed, group)
    upper = 0.0
    names = list(fractions)
    for name in names:
        upper += fractions[name]
        if position < upper:
            return name
    # Rounding can leave the sum of the fractions just under 1.
    return names[-1]


def assign_splits(
    pairs: pd.DataFrame, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> pd.Series:
    """Return each pair's split name, the same for every pair of one prompt group.

    Splits take the fractions of prompt groups in expectation; the fraction of pairs
    varies with group sizes. The result has the frame's index.
    """
    check_fractions(fractions)
    splits = map_unique(lambda group: split_for_group(group, fractions, seed), prompt_groups(pairs))
    return pd.Series(splits, index=pairs.index, dtype=object, name="split")


def subsample_groups(pairs: pd.DataFrame, max_pairs: int, seed: int) -> pd.DataFrame:
    """Keep whole prompt groups, in an order set by the seed, up to `max_pairs` pairs.

    Groups are visited in the order of their seeded hash. A group that would push the total
    past `max_pairs` is skipped, and smaller groups after it may still fit. Rows keep their
    original order. The result is the same for the same pairs and seed.
    """
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0, got {max_pairs}")
    if len(pairs) <= max_pairs:
        return pairs.copy()
    groups = prompt_groups(pairs)
    sizes = groups.value_counts()
    # A separate hash stream from the split's: with the same one, the groups visited first
    # would all fall in the first split.
    order = sorted(sizes.index, key=lambda group: (unit_interval_hash(seed, f"subsample:{group}"), group))
    chosen_groups = set()
    total = 0
    for group in order:
        size = int(sizes[group])
        if total + size <= max_pairs:
            chosen_groups.add(group)
            total += size
        if total == max_pairs:
            break
    return pairs.loc[groups.isin(chosen_groups)].copy()
