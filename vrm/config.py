"""Loading and validation of the experiment configuration."""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from vrm.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflows" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "workflows" / "config" / "default.yaml"


def _describe(path: list) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    """Turn a jsonschema error into a message naming the key, the value and what is allowed."""
    where = _describe(list(error.absolute_path))
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [key for key in error.instance if key not in allowed]
        hints = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"config: unknown key {', '.join(hints)} in {where}; allowed keys: {', '.join(allowed)}"
    if error.validator == "required":
        return f"config: {where}: {error.message}"
    if error.validator == "enum":
        return f"config: {where} = {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator == "type":
        return f"config: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    return f"config: {where} = {error.instance!r}: {error.message}"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check `config` against the schema and the cross-key rules; return it.

    A training set or benchmark source set to false is removed from `config` (in place),
    as a method set to false is left out, so a --configfile can drop entries of the
    default config. Raises UserError naming the key, the value and what is allowed.
    """
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise UserError("\n".join(_explain(error) for error in errors[:5]))
    for section in ("train_sets", "benchmark_sources"):
        config[section] = {name: spec for name, spec in (config.get(section) or {}).items() if spec is not False}
    if not config["train_sets"]:
        raise UserError("config: train_sets leaves no training set; set at least one to a mapping with sources")

    fractions = config.get("split", {}).get("fractions")
    if fractions and abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise UserError(f"config: split.fractions must sum to 1, not {sum(fractions.values())}")
    names = [benchmark["name"] for benchmark in config["benchmarks"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or "in-distribution" in names:
        raise UserError(f"config: benchmark names must be unique and not 'in-distribution': {duplicates or names}")
    cues = config.get("cues")
    if cues:
        from vrm.evaluate.cues import check_template

        _check_section_targets(config, "cues")
        for name, template in cues["templates"].items():
            check_template(name, template)
    study = config.get("generalization")
    if study:
        _check_section_targets(config, "generalization")
        if study["scales"]["low"] > study["scales"]["high"]:
            raise UserError("config: generalization.scales.low must not exceed generalization.scales.high")
    _check_mode(config)
    _check_methods(config)
    baseline = config["evaluation"].get("baseline", "bt")
    if config["methods"].get(baseline) is False or baseline not in config["methods"]:
        raise UserError(
            f"config: evaluation.baseline = {baseline!r} is not one of the methods: {', '.join(config['methods'])}"
        )
    return config


def _suggest(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_methods(config: dict[str, Any]) -> None:
    """Check that every enabled method is registered (after the plugins load) and its options exist."""
    import dataclasses

    from vrm.methods.registry import METHODS, load_builtin_methods, load_plugins

    load_builtin_methods()
    load_plugins(config.get("plugins") or [])
    registered = sorted(METHODS)
    for name, options in config["methods"].items():
        if options is False:
            continue
        if name not in METHODS:
            raise UserError(
                f"config: methods.{name}: unknown method{_suggest(name, registered)}; "
                f"registered methods: {', '.join(registered)}. A method from another package needs its module under `plugins`"
            )
        fields = sorted(field.name for field in dataclasses.fields(METHODS[name].Config))
        for key in options or {}:
            if key not in fields:
                raise UserError(
                    f"config: methods.{name}.{key}: unknown option{_suggest(key, fields)}; "
                    f"options of {name}: {', '.join(fields)}"
                )


def _check_mode(config: dict[str, Any]) -> None:
    """Check the keys that only one training mode reads."""
    mode = config.get("mode", "head")
    if mode == "finetune":
        for key in ("cues", "generalization"):
            if config.get(key):
                raise UserError(f"config: {key} needs cached features and runs in head mode only; "
                                f"set {key}: null with mode: finetune")
    elif config.get("export"):
        raise UserError("config: export writes fine-tuned models and needs mode: finetune; set export: null in head mode")
    export = config.get("export") or {}
    if export.get("train_set") is not None and export["train_set"] not in config["train_sets"]:
        raise UserError(f"config: export.train_set = {export['train_set']!r} is not a training set; "
                        f"use one of {', '.join(config['train_sets'])}")
    if export.get("seed") is not None and export["seed"] not in config["seeds"]:
        raise UserError(f"config: export.seed = {export['seed']} is not one of the seeds {config['seeds']}")
    unknown = [m for m in export.get("methods") or [] if m not in config["methods"]]
    if unknown:
        raise UserError(f"config: export.methods lists {', '.join(unknown)}, which are not in methods")


def _check_section_targets(config: dict[str, Any], key: str) -> None:
    """Check that `key`.train_set is a training set and `key`.methods lists only known methods."""
    section = config[key]
    if section["train_set"] not in config["train_sets"]:
        raise UserError(
            f"config: {key}.train_set = {section['train_set']!r} is not a training set; "
            f"use one of {', '.join(config['train_sets'])}"
        )
    unknown = [m for m in section.get("methods") or [] if m not in config["methods"]]
    if unknown:
        raise UserError(f"config: {key}.methods lists {', '.join(unknown)}, which are not in methods")


def merge(base: dict, override: dict) -> dict:
    """Merge `override` into a copy of `base`: nested mappings merge, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Load the default config, merge each file in `paths` over it, and validate."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return validate_config(config)


def resolve_data_root(config: dict[str, Any]) -> str | None:
    """Return config `data_root`, else the environment variable VRM_DATA_ROOT, else None."""
    return config.get("data_root") or os.environ.get("VRM_DATA_ROOT") or None


def method_options(config: dict[str, Any], method: str) -> dict[str, Any]:
    return dict(config["methods"].get(method) or {})
