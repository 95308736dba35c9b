"""Section tables: which subsets of a benchmark make up each section, and their weights.

A table is a YAML mapping {section: {subset: weight}}. Tables shipped with vrm-bench live
in vrm/data/tables/ and are named by their file stem (for example "rewardbench"). Any
other YAML file can be given by its path.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from vrm.errors import UserError

TABLES = Path(__file__).with_name("tables")


def table_names() -> list[str]:
    return sorted(path.stem for path in TABLES.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_section_table(name: str) -> dict[str, dict[str, float]]:
    """Return {section: {subset: weight}} for a shipped table name or a YAML path."""
    path = TABLES / f"{name}.yaml"
    if not path.is_file():
        path = Path(name)
    if not path.is_file():
        raise UserError(f"section table {name!r} not found; use one of {', '.join(table_names())} or a YAML file path")
    table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(table, dict) or not table:
        raise UserError(f"{path}: a section table maps each section to {{subset: weight}}")
    seen: dict[str, str] = {}
    for section, weights in table.items():
        if not isinstance(weights, dict) or not weights:
            raise UserError(f"{path}: section {section!r} must map subsets to weights")
        for subset, weight in weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
                raise UserError(f"{path}: {section}/{subset}: weight {weight!r} must be a positive number")
            if subset in seen:
                raise UserError(f"{path}: subset {subset!r} is in sections {seen[subset]!r} and {section!r}")
            seen[subset] = section
    return {str(section): {str(s): float(w) for s, w in weights.items()} for section, weights in table.items()}


def section_of(table: dict[str, dict[str, float]]) -> dict[str, str]:
    """Map each subset to its section."""
    return {subset: section for section, weights in table.items() for subset in weights}
