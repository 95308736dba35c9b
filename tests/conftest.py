"""Shared test fixtures: the real preference data and the real MiniLM backbone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Test setup only: CI and developer checkouts keep the shared data next to the repository.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "preference"


def _data_root() -> Path | None:
    configured = os.environ.get("VRM_DATA_ROOT")
    candidates = [Path(configured)] if configured else []
    candidates.append(SHARED_DATA)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with the real preference data; the test fails when it is missing."""
    root = _data_root()
    if root is None:
        pytest.fail("preference data not found: set VRM_DATA_ROOT to the data folder")
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
