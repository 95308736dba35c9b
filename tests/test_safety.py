"""No pickle: weights and caches are safetensors, any torch.load is weights_only, and remote
model code runs only when the config sets trust_remote_code."""

from __future__ import annotations

from pathlib import Path
import re

import pytest

SOURCE_FOLDERS = ("vrm", "baselines", "workflows", "benchmarks")


def source_files(repo_root: Path) -> list[Path]:
    files = [path for folder in SOURCE_FOLDERS for path in (repo_root / folder).rglob("*.py")]
    files += list((repo_root / "workflows").rglob("*.smk")) + [repo_root / "Snakefile"]
    assert len(files) > 20
    return files


def test_no_pickle_and_safe_torch_load(repo_root):
    for path in source_files(repo_root):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|cloudpickle|dill|joblib)\b", text, flags=re.MULTILINE), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert ".to_pickle(" not in text, path
        assert "read_pickle(" not in text, path


def test_config_schema_rejects_string_trust_remote_code(repo_root):
    from vrm.config import load_config, validate_config
    from vrm.errors import UserError

    config = load_config(repo_root / "workflows/config/ci.yaml")
    config["backbone"]["trust_remote_code"] = "yes"
    with pytest.raises(UserError) as raised:
        validate_config(config)
    assert "trust_remote_code" in str(raised.value)
