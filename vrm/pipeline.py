"""The stages of the DAG. Each Snakemake rule calls one function here with its paths."""

from __future__ import annotations

from collections import Counter
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vrm.config import method_options, resolve_data_root
from vrm.errors import UserError
from vrm.io import write_csv, write_json, write_parquet, write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


# Prepare: sources -> one table of pairs with a split per pair.


def source_entry(entry: str | dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Split a source entry of the config into (name in results, adapter, adapter options).

    An entry is a registered source name, or a mapping such as
    {source: local, name: my-pairs, path: data/my_pairs.jsonl} whose other keys are
    options of the adapter.
    """
    if isinstance(entry, str):
        return entry, entry, {}
    options = dict(entry)
    adapter = options.pop("source")
    name = options.pop("name", adapter)
    return name, adapter, options


def _sources_by_role(config: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Map each training source to its training set, and list the benchmark-only sources."""
    training: dict[str, str] = {}
    for train_set, spec in config["train_sets"].items():
        for entry in spec["sources"]:
            source = source_entry(entry)[0]
            if source in training:
                raise UserError(
                    f"config: source {source!r} is in train_sets {training[source]!r} and {train_set!r}; "
                    "a source may belong to one training set"
                )
            training[source] = train_set
    benchmark_only = [s for s in config.get("benchmark_sources", {}) if s not in training]
    for spec in config["benchmarks"]:
        if spec["source"] == "in-distribution":
            continue
        if spec["source"] not in training and spec["source"] not in benchmark_only:
            raise UserError(
                f"config: benchmark {spec['name']!r} reads source {spec['source']!r}, which is in neither "
                "train_sets nor benchmark_sources; add it to benchmark_sources"
            )
    return training, benchmark_only


def prepare(config: dict[str, Any], pairs_path: str, report_path: str, report_dir: str,
            files_path: str | None = None) -> pd.DataFrame:
    """Load every source, deduplicate, split by prompt group, subsample, and write the pairs.

    `files_path` receives the list of data files read (and hub datasets loaded), which the
    manifest hashes.
    """
    from vrm.data.readers import FILES_READ
    from vrm.data.sources import SOURCES, load_source, source_names
    from vrm.data.split import assign_splits, dedupe_pairs, prompt_group, subsample_groups

    data_root = resolve_data_root(config)
    training, benchmark_only = _sources_by_role(config)
    split_seed = config.get("split", {}).get("seed", 0)
    fractions = config.get("split", {}).get("fractions", {"train": 0.6, "validation": 0.2, "test": 0.2})

    entries = {}
    for spec in config["train_sets"].values():
        entries.update({source_entry(entry)[0]: source_entry(entry)[1:] for entry in spec["sources"]})
    for name in benchmark_only:
        options = dict(config["benchmark_sources"].get(name) or {})
        options.pop("max_pairs", None)
        entries[name] = (options.pop("source", name), options)

    frames, summary = [], {}
    for source in list(training) + benchmark_only:
        adapter, options = entries[source]
        if adapter not in source_names():
            raise UserError(f"config: unknown source {adapter!r}; registered sources: {', '.join(source_names())}")
        accepted = SOURCES[adapter].options
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise UserError(
                f"config: source {source!r}: unknown option(s) {', '.join(unknown)}; "
                f"accepted options: {', '.join(accepted) or 'none'}"
            )
        pairs, report = load_source(adapter, data_root=data_root, **options)
        if source != adapter:
            pairs["source"] = source
            pairs["pair_id"] = source + ":" + pairs["pair_id"].astype(str)
        rows_before = len(pairs)
        pairs = dedupe_pairs(pairs, report)
        report.pairs_kept = len(pairs)
        write_json(Path(report_dir) / f"{source}.json", report.to_dict())
        pairs = pairs.copy()
        pairs["group"] = pairs["prompt"].map(prompt_group)
        pairs["train_set"] = training.get(source, "")
        frames.append(pairs)
        summary[source] = {"loaded": rows_before, "after_dedupe": len(pairs), **report.to_dict()}
        log.info("%s: %d rows read, %d pairs kept, dropped %s", source, report.rows_read, len(pairs), dict(report.dropped))

    pairs = pd.concat(frames, ignore_index=True)
    pairs["split"] = assign_splits(pairs, fractions=fractions, seed=split_seed).to_numpy()

    # Subsample training sets by whole prompt groups.
    keep = pd.Series(True, index=pairs.index)
    for train_set, spec in config["train_sets"].items():
        members = pairs["train_set"] == train_set
        if spec.get("max_pairs_per_source"):
            for source in (source_entry(entry)[0] for entry in spec["sources"]):
                rows = pairs[members & (pairs["source"] == source)]
                kept = subsample_groups(rows, spec["max_pairs_per_source"], split_seed)
                keep[rows.index.difference(kept.index)] = False
        if spec.get("max_pairs"):
            rows = pairs[members & keep]
            kept = subsample_groups(rows, spec["max_pairs"], split_seed)
            keep[rows.index.difference(kept.index)] = False

    # Benchmark-only sources: every pair is a test pair, except prompts seen in training.
    seen = set(pairs.loc[keep & (pairs["train_set"] != "") & pairs["split"].isin(["train", "validation"]), "group"])
    benchmark_rows = pairs["train_set"] == ""
    pairs.loc[benchmark_rows, "split"] = "test"
    leaked = benchmark_rows & pairs["group"].isin(seen)
    for source, spec in config.get("benchmark_sources", {}).items():
        rows = pairs[(pairs["source"] == source) & ~leaked]
        if spec and spec.get("max_pairs"):
            kept = subsample_groups(rows, spec["max_pairs"], split_seed)
            keep[rows.index.difference(kept.index)] = False

    for source in summary:
        rows = pairs["source"] == source
        summary[source]["subsampled_out"] = int((rows & ~keep & ~leaked).sum())
        summary[source]["left_out_prompt_in_training"] = int((rows & leaked).sum())
        final = pairs[rows & keep & ~leaked]
        summary[source]["final"] = {split: int((final["split"] == split).sum()) for split in SPLITS}
    pairs = pairs[keep & ~leaked].reset_index(drop=True)
    if pairs.empty:
        raise UserError("no pairs left after filtering; check data_root and the train_sets in the config")
    for train_set in config["train_sets"]:
        counts = Counter(pairs.loc[pairs["train_set"] == train_set, "split"])
        for split in SPLITS:
            if counts[split] < 2:
                raise UserError(
                    f"training set {train_set!r} has {counts[split]} pair(s) in its {split} split; "
                    "raise max_pairs or add sources"
                )
        summary[f"train_set:{train_set}"] = {split: counts[split] for split in SPLITS}

    write_parquet(pairs_path, pairs)
    write_json(report_path, summary)
    if files_path:
        write_json(files_path, {"data_root": None if data_root is None else str(Path(data_root).resolve()),
                                "files": sorted(FILES_READ)})
    log.info("wrote %d pairs to %s", len(pairs), pairs_path)
    return pairs


# Features: pairs -> frozen backbone representations.


def features(config: dict[str, Any], pairs_path: str, features_path: str, threads: int) -> None:
    """Encode h_x and h_xy of every pair with the frozen backbone, through the feature cache."""
    from vrm.backbones.cache import FeatureCache
    from vrm.backbones.encoder import Backbone
    from vrm.backbones.features import build_pair_features, save_pair_features

    settings = config["backbone"]
    pairs = pd.read_parquet(pairs_path)
    backbone = Backbone(settings["name"], trust_remote_code=settings.get("trust_remote_code", False))
    cache = FeatureCache(config.get("cache_dir", "results/cache"))
    tensors = build_pair_features(
        pairs["prompt"].tolist(), pairs["chosen"].tolist(), pairs["rejected"].tolist(),
        backbone=backbone, cache=cache, max_length=settings.get("max_length", 256),
        batch_size=settings.get("batch_size", 64), threads=threads,
    )
    metadata = {
        "backbone": settings["name"],
        "fingerprint": backbone.fingerprint,
        "max_length": str(settings.get("max_length", 256)),
        "pairs": str(len(pairs)),
    }
    save_pair_features(features_path, tensors, metadata)
    log.info("wrote features of %d pairs to %s", len(pairs), features_path)


def _load_features(pairs_path: str, features_path: str):
    import torch

    from vrm.backbones.features import load_pair_features

    pairs = pd.read_parquet(pairs_path)
    tensors, _ = load_pair_features(features_path)
    if tensors["chosen"].shape[0] != len(pairs):
        raise UserError(
            f"{features_path} contains {tensors['chosen'].shape[0]} pairs but {pairs_path} has {len(pairs)}; "
            "delete the features file and rerun"
        )
    # Response lengths in words, for methods that model length (ODIN) and length metrics.
    for side in ("chosen", "rejected"):
        words = pairs[side].map(lambda text: len(str(text).split())).to_numpy(dtype=np.float32)
        tensors[f"{side}_length"] = torch.from_numpy(words)
    for key, value in tensors.items():
        if not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value.reshape(len(value), -1))).any(dim=1).nonzero()[0, 0])
            raise UserError(
                f"{features_path}: {key} features of pair {pairs['pair_id'].iloc[bad]} contain NaN or infinite "
                "values; delete the file and the feature cache, then rerun"
            )
    return pairs, tensors


def _rows(tensors, index: np.ndarray):
    import torch

    position = torch.as_tensor(index, dtype=torch.long)
    return {key: value[position] for key, value in tensors.items()}


def _require_head_mode(method: str) -> None:
    """Raise a UserError for a method that cannot train on cached features (GRM needs an LM head)."""
    from vrm.methods import get_method

    if "head" not in get_method(method).modes:
        raise UserError(f"method {method!r} runs in fine-tune mode only; set mode: finetune with a causal "
                        f"language model as finetune.backbone, or set methods.{method}: false")


# Tune: one sweep per (training set, method), on train and validation pairs only.


def sweep_inputs(pairs: pd.DataFrame, tensors, train_set: str):
    """Return the train and validation features of a training set, and their pair ids.

    Test pairs are never selected here, so no sweep can see them.
    """
    members = pairs["train_set"] == train_set
    selected = {}
    for split in ("train", "validation"):
        index = np.flatnonzero(members & (pairs["split"] == split))
        selected[split] = (_rows(tensors, index), pairs["pair_id"].iloc[index].tolist())
    return selected


def tune(config: dict[str, Any], pairs_path: str, features_path: str, train_set: str, method: str,
         trials_csv: str, best_yaml: str, figure_png: str, threads: int, figure_pdf: str | None = None) -> None:
    import yaml

    from vrm.methods import load_plugins
    from vrm.tune import best_configuration, plot_sweep, run_sweep, trials_table, unfinished_trials

    load_plugins(config.get("plugins", []))
    _require_head_mode(method)
    settings = config.get("tune", {})
    folder = Path(trials_csv).parent
    if not settings.get("enabled", True):
        write_csv(trials_csv, pd.DataFrame({"trial_id": [], "status": []}))
        write_text(best_yaml, yaml.safe_dump({"method": method, "sweep": "disabled", "method_options": {}, "training": {}}))
        plot_sweep(pd.DataFrame(), settings.get("metric", "validation_pair_nll"), figure_png, figure_pdf, method,
                   note="tune.enabled is false: no sweep")
        log.info("tune.enabled is false: %s on %s trains at the configured hyperparameters", method, train_set)
        return

    pairs, tensors = _load_features(pairs_path, features_path)
    inputs = sweep_inputs(pairs, tensors, train_set)
    log.info("sweep of %s on %s: %d train and %d validation pairs, %s trials",
             method, train_set, len(inputs["train"][1]), len(inputs["validation"][1]), settings.get("num_samples", 16))
    results = run_sweep(
        method, inputs["train"][0], inputs["validation"][0], settings,
        base_options=method_options(config, method), base_training=dict(config.get("training", {})),
        storage=folder / "ray", threads=threads, events_path=str((folder / "trial_events.log").resolve()),
        plugins=config.get("plugins", []),
    )
    unfinished = unfinished_trials(results)
    if unfinished:
        raise UserError(
            f"the sweep of {method} on {train_set} stopped with {len(unfinished)} unfinished trial(s) "
            f"({', '.join(unfinished[:4])}); rerun the same command to resume it from {folder / 'ray'}"
        )
    metric = settings.get("metric", "validation_pair_nll")
    table = trials_table(results, metric)
    best = best_configuration(table, method, metric)
    write_csv(trials_csv, table)
    write_text(best_yaml, yaml.safe_dump(best, sort_keys=False))
    top = plot_sweep(table, metric, figure_png, figure_pdf, method)
    log.info("%d trials (%d failed); best %s %.4f from trial %s; most influential: %s",
             len(table), best["failed_trials"], metric, best["value"], best["trial_id"], ", ".join(top))


def best_options(config: dict[str, Any], method: str, best_yaml: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Method options and training options: the config's, overridden by the sweep's best trial."""
    import yaml

    options = method_options(config, method)
    training = dict(config.get("training", {}))
    if best_yaml:
        best = yaml.safe_load(Path(best_yaml).read_text()) or {}
        options.update(best.get("method_options") or {})
        training.update(best.get("training") or {})
    return options, training


# Train: one method, one seed, one training set.


def train(config: dict[str, Any], pairs_path: str, features_path: str, train_set: str, method: str,
          seed: int, model_dir: str, threads: int, best_yaml: str | None = None) -> None:
    from vrm.methods import load_plugins
    from vrm.train import TrainConfig, save_model, train_method

    load_plugins(config.get("plugins", []))
    _require_head_mode(method)
    pairs, tensors = _load_features(pairs_path, features_path)
    members = pairs["train_set"] == train_set
    train_index = np.flatnonzero(members & (pairs["split"] == "train"))
    validation_index = np.flatnonzero(members & (pairs["split"] == "validation"))
    log.info("%s on %s, seed %d: %d train pairs, %d validation pairs",
             method, train_set, seed, len(train_index), len(validation_index))

    options, training = best_options(config, method, best_yaml)
    train_config = TrainConfig(**training, seed=seed, threads=threads)
    result = train_method(method, options, _rows(tensors, train_index), _rows(tensors, validation_index), train_config)
    save_model(result, method, options, train_config, model_dir)
    if result.report.get("inactive_z") or result.report.get("inactive_w"):
        log.info("inactive latent dimensions (mean KL < %s nats): z %s, w %s",
                 result.report.get("inactive_threshold_nats"), result.report.get("inactive_z"),
                 result.report.get("inactive_w", []))


# Evaluate: score every test pair.


def score_pairs(model, batch, pair_ids: np.ndarray, samples: int) -> pd.DataFrame:
    """Return the rewards of both responses and P(chosen preferred) of each pair in `batch`.

    Stochastic methods draw from the global torch generator, so callers seed it first.
    """
    import torch

    with torch.no_grad():
        return pd.DataFrame({
            "pair_id": pair_ids,
            "reward_chosen": model.reward(batch["prompt"], batch["chosen"]).double().numpy(),
            "reward_rejected": model.reward(batch["prompt"], batch["rejected"]).double().numpy(),
            "p_chosen": model.preference_probability(batch, samples=samples).double().numpy(),
        })


def evaluate(config: dict[str, Any], pairs_path: str, features_path: str, model_dir: str, scores_path: str) -> None:
    from vrm.methods import load_plugins
    from vrm.train import load_model, set_seed

    load_plugins(config.get("plugins", []))
    pairs, tensors = _load_features(pairs_path, features_path)
    test_index = np.flatnonzero(pairs["split"] == "test")
    set_seed(0)
    model = load_model(model_dir)
    samples = config["evaluation"].get("probability_samples", 0)
    scores = score_pairs(model, _rows(tensors, test_index), pairs["pair_id"].iloc[test_index].to_numpy(), samples)
    write_parquet(scores_path, scores)
    log.info("scored %d test pairs into %s", len(scores), scores_path)


# Fine-tune mode: backbone and head trained together, then every test pair scored.


def _pair_texts(pairs: pd.DataFrame, index: np.ndarray) -> dict[str, list[str]]:
    rows = pairs.iloc[index]
    return {side: rows[side].astype(str).tolist() for side in ("prompt", "chosen", "rejected")}


def finetune_stage(config: dict[str, Any], pairs_path: str, train_set: str, method: str, seed: int, model_dir: str,
                   scores_path: str, threads: int, log_path: str | None = None) -> None:
    """Fine-tune `method` on a training set, export it to `model_dir` and score every test pair.

    With `finetune.processes` above 1 the job runs in that many processes started by
    torchrun (one per GPU, or gloo processes on a CPU); the first process exports and scores.
    """
    import json
    import subprocess
    import sys
    import tempfile

    from vrm.finetune import FinetuneConfig
    from vrm.methods import get_method, load_plugins

    load_plugins(config.get("plugins", []))
    get_method(method)
    settings = FinetuneConfig.from_options({**(config.get("finetune") or {}), "seed": seed})
    spec = {"config": config, "pairs_path": pairs_path, "train_set": train_set, "method": method, "seed": seed,
            "model_dir": model_dir, "scores_path": scores_path, "threads": threads}
    if settings.processes == 1:
        run_finetune_job(spec)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({**spec, "threads": max(1, threads // settings.processes), "log_path": log_path}, handle)
    # torchrun sets RANK, WORLD_SIZE and the rendezvous on this machine. The Accelerator in
    # each process reads them and wraps the model in DistributedDataParallel (NCCL on GPUs,
    # gloo on a CPU).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(settings.processes), "-m", "vrm.finetune_job", handle.name]
    log.info("starting %d processes: %s", settings.processes, " ".join(command))
    try:
        status = subprocess.run(command).returncode
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if status != 0:
        raise UserError(f"the fine-tuning processes of {method} on {train_set} (seed {seed}) exited with status "
                        f"{status}; their messages are above and in the job's log")


def run_finetune_job(spec: dict[str, Any]) -> None:
    """Train, then (in the first process) export the model and score every test pair."""
    from dataclasses import asdict

    import torch

    from vrm.finetune import FinetuneConfig, export_reward_model, finetune, pair_features, write_training_files
    from vrm.methods import load_plugins

    config, method, train_set, seed = spec["config"], spec["method"], spec["train_set"], spec["seed"]
    load_plugins(config.get("plugins", []))
    torch.set_num_threads(max(1, spec["threads"]))
    settings = FinetuneConfig.from_options({**(config.get("finetune") or {}), "seed": seed})
    pairs = pd.read_parquet(spec["pairs_path"])
    members = pairs["train_set"] == train_set
    train_index = np.flatnonzero(members & (pairs["split"] == "train"))
    validation_index = np.flatnonzero(members & (pairs["split"] == "validation"))
    test_index = np.flatnonzero(pairs["split"] == "test")
    options = method_options(config, method)
    log.info("fine-tune %s on %s, seed %d, backbone %s (%s): %d train, %d validation pairs; %d steps of %d x %d pairs",
             method, train_set, seed, settings.backbone, "LoRA" if settings.lora else "all weights",
             len(train_index), len(validation_index), settings.max_steps, settings.batch_size,
             settings.gradient_accumulation)
    result = finetune(method, options, _pair_texts(pairs, train_index), _pair_texts(pairs, validation_index), settings)
    if not result.is_main_process:
        return
    log.info("%.2f pairs/s, peak memory %.2f GiB on %s (%s, %d process(es))", result.report["pairs_per_second"],
             result.report["peak_memory_bytes"] / 2**30, result.report["device"], result.report["precision"],
             result.report["processes"])

    samples = config.get("evaluation", {}).get("probability_samples", 0)
    test = _pair_texts(pairs, test_index)
    torch.manual_seed(0)
    with torch.no_grad():
        batch = pair_features(result.model, test, settings.eval_batch_size)
    frame = score_pairs(result.model.head, batch, pairs["pair_id"].iloc[test_index].to_numpy(), samples)
    truncated = sum(result.model.tokens.pair(p, r).truncated
                    for side in ("chosen", "rejected") for p, r in zip(test["prompt"], test[side]))
    log.info("scored %d test pairs; %d of %d responses were cut from the left to %d tokens",
             len(test_index), truncated, 2 * len(test_index), settings.max_length)
    model_dir = spec["model_dir"]
    export_reward_model(result.model, model_dir, extra={"train_set": train_set, "seed": seed})
    write_training_files(result, model_dir, {"finetune": asdict(settings), "method": method, "method_options": options})
    write_parquet(spec["scores_path"], frame)


def export_stage(model_dir: str, export_dir: str) -> None:
    """Copy an exported model folder to its place under the export folder, atomically."""
    import shutil

    from vrm.io import atomic_directory

    target = atomic_directory(export_dir, lambda staging: shutil.copytree(model_dir, staging, dirs_exist_ok=True))
    log.info("exported %s to %s", model_dir, target)


# Spurious-cue stress test: the cue training set with a cue planted, at several rates.


def _cue_rows(pairs: pd.DataFrame, train_set: str) -> np.ndarray:
    rows = np.flatnonzero(pairs["train_set"] == train_set)
    if len(rows) == 0:
        raise UserError(f"config: cues.train_set = {train_set!r} has no pairs; use one of the train_sets")
    return rows


def cue_features(config: dict[str, Any], pairs_path: str, cue: str, features_path: str, report_path: str,
                 threads: int) -> None:
    """Encode (prompt, cued response) for both responses of every pair of the cue training set."""
    from vrm.backbones.cache import FeatureCache
    from vrm.backbones.encoder import Backbone
    from vrm.backbones.features import build_pair_features, save_pair_features
    from vrm.evaluate.cues import PLACEHOLDER, apply_cue, check_template

    settings, cues = config["backbone"], config["cues"]
    template = cues["templates"][cue]
    check_template(cue, template)
    pairs = pd.read_parquet(pairs_path)
    rows = pairs.iloc[_cue_rows(pairs, cues["train_set"])]
    prompts = rows["prompt"].tolist()
    chosen = [apply_cue(template, text) for text in rows["chosen"]]
    rejected = [apply_cue(template, text) for text in rows["rejected"]]
    backbone = Backbone(settings["name"], trust_remote_code=settings.get("trust_remote_code", False))
    max_length = settings.get("max_length", 256)
    tensors = build_pair_features(
        prompts, chosen, rejected, backbone=backbone, cache=FeatureCache(config.get("cache_dir", "results/cache")),
        max_length=max_length, batch_size=settings.get("batch_size", 64), threads=threads,
    )
    # A pair longer than max_length loses tokens from the end of its longer part, so a cue
    # after the response can be cut off there. Count those texts.
    lengths = [len(ids) for ids in backbone.tokenizer(prompts * 2, chosen + rejected, truncation=False, verbose=False)["input_ids"]]
    over = int(sum(length > max_length for length in lengths))
    cue_at_end = bool(template.split(PLACEHOLDER)[1].strip())
    report = {
        "cue": cue, "template": template, "train_set": cues["train_set"], "pairs": len(rows),
        "cued_texts": len(lengths), "cued_texts_over_max_length": over, "max_length": max_length,
        "cue_text_after_response": cue_at_end,
    }
    if cue_at_end and over:
        log.warning("cue %s ends after the response: in %d of %d cued texts longer than %d tokens it can be cut "
                    "off; a cue before the response survives truncation", cue, over, len(lengths), max_length)
    save_pair_features(features_path, tensors, {"cue": cue, "train_set": cues["train_set"], "pairs": str(len(rows))})
    write_json(report_path, report)
    log.info("wrote cued features of %d pairs (cue %s) to %s; %d of %d cued texts exceed %d tokens",
             len(rows), cue, features_path, over, len(lengths), max_length)


def cue_train(config: dict[str, Any], pairs_path: str, features_path: str, cue_features_path: str, cue: str,
              rho: float, method: str, best_yaml: str | None, model_root: str, scores_path: str, threads: int) -> None:
    """Train `method` on the cued training set at rate rho for every cue seed; score clean and reversed tests."""
    import torch

    from vrm.backbones.features import load_pair_features
    from vrm.evaluate.cues import apply_cue, benchmark_names, cue_on_chosen
    from vrm.methods import load_plugins
    from vrm.train import TrainConfig, save_model, set_seed, train_method

    load_plugins(config.get("plugins", []))
    cues = config["cues"]
    template = cues["templates"][cue]
    pairs, tensors = _load_features(pairs_path, features_path)
    rows = _cue_rows(pairs, cues["train_set"])
    cued, _ = load_pair_features(cue_features_path)
    if cued["chosen"].shape[0] != len(rows):
        raise UserError(f"{cue_features_path} contains {cued['chosen'].shape[0]} pairs, expected {len(rows)}; "
                        "delete it and rerun")
    subset = pairs.iloc[rows]
    split = subset["split"].to_numpy()
    for side in ("chosen", "rejected"):
        words = [len(apply_cue(template, str(text)).split()) for text in subset[side]]
        cued[f"{side}_length"] = torch.tensor(words, dtype=torch.float32)
    clean = _rows(tensors, rows)

    # Each train and validation pair takes the cued features on one side and the clean ones on the other.
    on_chosen = torch.from_numpy(cue_on_chosen(subset["pair_id"], cue, rho, config.get("split", {}).get("seed", 0)))
    planted = dict(clean)
    for key in ("chosen", "chosen_length", "rejected", "rejected_length"):
        mask = on_chosen.view(-1, *[1] * (clean[key].dim() - 1))
        if key.startswith("rejected"):
            mask = ~mask
        planted[key] = torch.where(mask, cued[key], clean[key])
    train_index, validation_index, test_index = (np.flatnonzero(split == name) for name in SPLITS)
    reversed_test = dict(clean)
    reversed_test["rejected"], reversed_test["rejected_length"] = cued["rejected"], cued["rejected_length"]
    log.info("%s with cue %s at rho %s: %d train, %d validation, %d test pairs; cue on the chosen side of %d of %d "
             "training pairs", method, cue, rho, len(train_index), len(validation_index), len(test_index),
             int(on_chosen[train_index].sum()), len(train_index))

    options, training = best_options(config, method, best_yaml)
    clean_name, reversed_name = benchmark_names(rho)
    samples = config["evaluation"].get("probability_samples", 0)
    frames = []
    for seed in cues["seeds"]:
        train_config = TrainConfig(**training, seed=int(seed), threads=threads)
        result = train_method(method, options, _rows(planted, train_index), _rows(planted, validation_index), train_config)
        save_model(result, method, options, train_config, Path(model_root) / f"seed{seed}")
        model = result.model.eval()
        for name, source in ((clean_name, clean), (reversed_name, reversed_test)):
            set_seed(0)
            frame = score_pairs(model, _rows(source, test_index), subset["pair_id"].iloc[test_index].to_numpy(), samples)
            frames.append(frame.assign(seed=int(seed), benchmark=name))
    scores = pd.concat(frames, ignore_index=True)
    write_parquet(scores_path, scores)
    for name in (clean_name, reversed_name):
        accuracy = (scores.loc[scores["benchmark"] == name, "reward_chosen"]
                    > scores.loc[scores["benchmark"] == name, "reward_rejected"]).mean()
        log.info("%s: accuracy %.3f over %d seeds", name, accuracy, len(cues["seeds"]))


# Generalization: empirical gaps against PAC-Bayes certificates, by training-set size.


def training_sizes(start: int, pool: int) -> list[int]:
    """Return the sizes start, 2 start, 4 start, ... below `pool`, then `pool` itself.

    >>> training_sizes(125, 1839)
    [125, 250, 500, 1000, 1839]
    """
    sizes = []
    size = start
    while size < pool:
        sizes.append(size)
        size *= 2
    return sizes + [pool]


def _synthetic_splits(spec: dict[str, Any]):
    """Draw train, validation, test and fresh pairs from the synthetic task of the config."""
    from vrm.synthetic import SyntheticTask

    spec = dict(spec)
    counts = {key: spec.pop(key, default) for key, default in
              (("train_pairs", 2000), ("validation_pairs", 500), ("test_pairs", 1000), ("fresh_pairs", 100_000))}
    task = SyntheticTask(**spec)
    return [task.sample(counts[key], seed=task.seed + 1 + i)
            for i, key in enumerate(("train_pairs", "validation_pairs", "test_pairs", "fresh_pairs"))]


def generalization(config: dict[str, Any], pairs_path: str, features_path: str, method: str, best_yaml: str | None,
                   table_path: str, threads: int, synthetic: bool = False) -> None:
    """Train `method` on nested subsets of a training set and certify each model (see vrm.generalization).

    With `synthetic`, the pairs come from the synthetic task of `generalization.synthetic`
    (at the method's configured hyperparameters, not a sweep's), and each row also gets the
    Gibbs risk on the task's fresh pairs, its true risk up to Monte Carlo error.
    """
    from vrm.generalization import trainable_state
    from vrm.methods import build_method, load_plugins
    from vrm.train import TrainConfig, set_seed, train_method

    load_plugins(config.get("plugins", []))
    settings = config["generalization"]
    options, training = best_options(config, method, best_yaml)
    if synthetic:
        train_set = "synthetic"
        pool, validation, test, fresh = _synthetic_splits(settings["synthetic"])
    else:
        train_set, fresh = settings["train_set"], None
        pairs, tensors = _load_features(pairs_path, features_path)
        members = pairs["train_set"] == train_set
        train_index, validation_index, test_index = (
            np.flatnonzero(members & (pairs["split"] == name)) for name in SPLITS
        )
        # One fixed order of the training pairs, so every smaller training set is part of every larger one.
        pool = _rows(tensors, np.random.default_rng(settings.get("order_seed", 0)).permutation(train_index))
        validation, test = _rows(tensors, validation_index), _rows(tensors, test_index)
    sizes = training_sizes(settings.get("start_size", 125), pool["chosen"].shape[0])
    scales = tuple(float(s) for s in np.logspace(np.log10(settings["scales"]["low"]), np.log10(settings["scales"]["high"]),
                                                 settings["scales"]["count"]))
    data_prior = settings.get("data_prior") or {}
    rows = []
    for seed in settings["seeds"]:
        for n in sizes:
            train = {key: value[:n] for key, value in pool.items()}
            train_config = TrainConfig(**training, seed=int(seed), threads=threads)
            # train_method seeds the same way before building the model, so this is its initialization.
            set_seed(int(seed), threads)
            initial = trainable_state(build_method(method, train["chosen"].shape[1], options))
            priors = [("initialization", initial, train, None)]
            if data_prior:
                # The prior's mean is a head trained on the first pairs. The bound counts only the
                # other pairs, which the prior never saw, and the posterior's training starts there.
                held_out = int(data_prior["fraction"] * n)
                prior_model = train_method(method, options, {k: v[:held_out] for k, v in train.items()}, validation,
                                           train_config).model
                prior_mean = trainable_state(prior_model)
                priors.append((f"data ({held_out} held-out pairs)", prior_mean,
                               {k: v[held_out:] for k, v in train.items()}, prior_mean))
            for prior_name, prior_mean, bound_pairs, start in priors:
                rows.append(_certified_row(
                    method, train_set, n, int(seed), prior_name, prior_mean, bound_pairs, start, options, validation,
                    test, fresh, train_config, settings, scales))
    write_csv(table_path, pd.DataFrame(rows))


def _certified_row(method, train_set, n, seed, prior_name, prior_mean, bound_pairs, start, options, validation, test,
                   fresh, train_config, settings, scales) -> dict[str, Any]:
    """Train the posterior mean on `bound_pairs` (from `start`, or the seed's initialization) and certify it."""
    import torch

    from vrm.generalization import certificate, error_rate, gibbs_risk
    from vrm.train import train_method

    model = train_method(method, options, bound_pairs, validation, train_config, initial_state=start).model
    result = certificate(model, prior_mean, bound_pairs, delta=settings.get("delta", 0.05), scales=scales,
                         repeats=settings.get("repeats", 1), seed=seed)
    with torch.no_grad():
        point = {
            name: error_rate(model.reward(batch["prompt"], batch["chosen"])
                             - model.reward(batch["prompt"], batch["rejected"]))
            for name, batch in (("train", bound_pairs), ("test", test))
        }
    gibbs_test = gibbs_risk(model, test, result["scale"], settings.get("test_repeats", 4), seed=seed + 7919)
    true_error = float("nan") if fresh is None else gibbs_risk(model, fresh, result["scale"], 1, seed + 104729)
    log.info("%s on %s, n=%d seed %s, prior %s: Gibbs train %.3f test %.3f, bound_kl %.3f at scale %.3g (KL %.1f)",
             method, train_set, n, seed, prior_name, result["risk_estimate"], gibbs_test, result["bound_kl"],
             result["scale"], result["kl"])
    return {
        "train_set": train_set, "method": method, "n": n, "seed": seed,
        "train_error": result["risk_estimate"], "test_error": gibbs_test,
        "gap": gibbs_test - result["risk_estimate"], "true_error": true_error,
        "mean_train_error": point["train"], "mean_test_error": point["test"],
        "mean_gap": point["test"] - point["train"],
        "kl": result["kl"], "scale": result["scale"], "squared_distance": result["squared_distance"],
        "train_error_upper": result["risk_upper"], "bound_kl": result["bound_kl"],
        "bound_mcallester": result["bound_mcallester"], "bound_lambda": result["bound_lambda"],
        "delta": result["delta"], "grid_size": result["grid_size"], "n_test": test["chosen"].shape[0],
        "prior": prior_name, "n_bound": bound_pairs["chosen"].shape[0],
    }


# Aggregate and figures.


def write_manifest(config: dict[str, Any], git: dict[str, Any], files_path: str, manifest_path: str,
                   workflow_folder: str) -> None:
    """Write the results folder's manifest.json (vrm.manifest)."""
    import json

    from vrm.manifest import build_manifest

    files = json.loads(Path(files_path).read_text())
    manifest = build_manifest(config, git, files["files"], files["data_root"], workflow_folder)
    write_json(manifest_path, manifest)
    log.info("manifest %s: commit %s%s, %d data files, %d backbone files", manifest["id"],
             git.get("commit"), " with uncommitted changes" if git.get("dirty") else "",
             len(manifest["data_files"]), len(manifest["backbone"].get("files", {})))


def _stamp(frame: pd.DataFrame, manifest: str | None) -> pd.DataFrame:
    """Add the `manifest` column: the id of the manifest.json the table came from."""
    return frame if manifest is None else frame.assign(manifest=manifest)


def aggregate(config: dict[str, Any], pairs_path: str, prepare_report: str, score_paths: list[str],
              keys: list[tuple[str, str, int]], cue_paths: list[str], cue_keys: list[tuple[str, str, str]],
              outputs: dict[str, str], manifest_path: str | None = None) -> None:
    """Write the result tables: main, per seed, comparisons, reliability bins and benchmark sizes."""
    import json

    from vrm.manifest import read_manifest_id
    from vrm.report.aggregate import (
        ScoreFile, benchmark_table, compare_to_baseline, per_seed_metrics, reliability_table, summarize, to_markdown,
    )

    pairs = pd.read_parquet(pairs_path)
    files = [ScoreFile(t, m, s, pd.read_parquet(p)) for (t, m, s), p in zip(keys, score_paths)]
    for (cue, _, method), path in zip(cue_keys, cue_paths):
        scores = pd.read_parquet(path)
        train_set = f"{config['cues']['train_set']}+{cue}"
        for seed, frame in scores.groupby("seed", sort=True):
            files.append(ScoreFile(train_set, method, int(seed), frame.drop(columns="seed").reset_index(drop=True)))
    evaluation = config["evaluation"]
    bins = evaluation.get("ece_bins", 15)
    per_seed = per_seed_metrics(pairs, files, config["benchmarks"], bins)
    main = summarize(per_seed)
    comparisons = compare_to_baseline(
        pairs, files, config["benchmarks"], evaluation.get("baseline", "bt"),
        evaluation.get("bootstrap_samples", 2000), evaluation.get("bootstrap_seed", 0),
    )
    summary = json.loads(Path(prepare_report).read_text())
    manifest = read_manifest_id(manifest_path) if manifest_path else None
    write_csv(outputs["per_seed"], _stamp(per_seed, manifest))
    write_csv(outputs["main"], _stamp(main, manifest))
    markdown = to_markdown(main)
    if manifest:
        markdown += f"\nFrom manifest {manifest} ({Path(manifest_path).name} in the results folder).\n"
    write_text(outputs["markdown"], markdown)
    write_csv(outputs["comparisons"], _stamp(comparisons, manifest))
    write_csv(outputs["reliability"], _stamp(reliability_table(pairs, files, bins), manifest))
    benchmarks = benchmark_table(pairs, list(config["train_sets"]), config["benchmarks"], summary)
    write_csv(outputs["benchmarks"], _stamp(benchmarks, manifest))
    for row in benchmarks.drop_duplicates("source").itertuples():
        if row.left_out_prompt_in_training:
            log.info("source %s: %d pairs left out because their prompt is in a training or validation split",
                     row.source, row.left_out_prompt_in_training)
    log.info("main table: %d rows from %d score files; comparisons: %d rows", len(main), len(files), len(comparisons))


def figures(main_csv: str, reliability_csv: str, outputs: dict[str, str]) -> None:
    from vrm.report.figures import plot_cues, plot_main, plot_reliability

    main = pd.read_csv(main_csv)
    plot_main(main, outputs["main_png"], outputs["main_pdf"])
    plot_reliability(pd.read_csv(reliability_csv), main, outputs["reliability_png"], outputs["reliability_pdf"])
    if "cue_png" in outputs:
        plot_cues(main, outputs["cue_png"], outputs["cue_pdf"])


def generalization_table(table_paths: list[str], table_path: str, png_path: str, pdf_path: str,
                         manifest_path: str | None = None) -> None:
    """Join the per-method generalization tables and draw gap and bound against n."""
    from vrm.manifest import read_manifest_id
    from vrm.report.figures import plot_generalization

    table = pd.concat([pd.read_csv(path) for path in table_paths], ignore_index=True)
    for column in ("test_error", "true_error"):
        below = table[table["bound_kl"] < table[column]]
        if len(below):
            log.warning("%d rows have a PAC-Bayes-kl bound below their %s (%s)", len(below), column,
                        ", ".join(f"{r.train_set} {r.method} n={r.n} seed {r.seed} prior {r.prior}"
                                  for r in below.head(5).itertuples()))
    write_csv(table_path, _stamp(table, read_manifest_id(manifest_path) if manifest_path else None))
    plot_generalization(table, png_path, pdf_path)


# Dispatch from a Snakemake rule.


def _dispatch(job) -> None:
    rule, cfg = job.rule, getattr(job.params, "config", {})
    if rule == "prepare":
        prepare(cfg, job.output.pairs, job.output.report, job.params.report_dir, job.output.files)
    elif rule == "manifest":
        write_manifest(cfg, dict(job.params.git), job.input.files, job.output.manifest, job.params.workflow_folder)
    elif rule == "features":
        features(cfg, job.input.pairs, job.output.features, job.threads)
    elif rule == "train":
        w = job.wildcards
        train(cfg, job.input.pairs, job.input.features, w.train_set, w.method, int(w.seed),
              str(Path(job.output.model).parent), job.threads, best_yaml=job.input.best)
    elif rule == "tune":
        w = job.wildcards
        tune(cfg, job.input.pairs, job.input.features, w.train_set, w.method, job.output.trials,
             job.output.best, job.output.figure, job.threads, job.output.figure_pdf)
    elif rule == "evaluate":
        evaluate(cfg, job.input.pairs, job.input.features, str(Path(job.input.model).parent), job.output.scores)
    elif rule == "aggregate":
        keys = [tuple(key) for key in job.params.score_keys]
        cue_keys = [tuple(key) for key in job.params.cue_keys]
        aggregate(cfg, job.input.pairs, job.input.prepare, list(job.input.scores), keys, list(job.input.cue_scores),
                  cue_keys, dict(job.output.items()), job.input.manifest)
    elif rule == "plot":
        figures(job.input.main, job.input.reliability, dict(job.output.items()))
    elif rule == "generalization":
        generalization(cfg, job.input.pairs, job.input.features, job.wildcards.method, job.input.best,
                       job.output.table, job.threads)
    elif rule == "generalization_synthetic":
        generalization(cfg, None, None, job.wildcards.method, None, job.output.table, job.threads, synthetic=True)
    elif rule == "generalization_table":
        generalization_table(list(job.input.tables), job.output.table, job.output.png, job.output.pdf,
                             job.input.manifest)
    elif rule == "finetune":
        w = job.wildcards
        finetune_stage(cfg, job.input.pairs, w.train_set, w.method, int(w.seed), str(Path(job.output.config).parent),
                       job.output.scores, job.threads, job.log[0] if job.log else None)
    elif rule == "export":
        export_stage(str(Path(job.input.config).parent), str(Path(job.output.config).parent))
    elif rule == "cue_features":
        cue_features(cfg, job.input.pairs, job.wildcards.cue, job.output.features, job.output.report, job.threads)
    elif rule == "cue_train":
        w = job.wildcards
        cue_train(cfg, job.input.pairs, job.input.features, job.input.cue_features, w.cue, float(w.rho), w.method,
                  job.input.best, job.params.model_root, job.output.scores,
                  job.threads)
    else:
        raise ValueError(f"no stage for rule {rule!r}")


def run_rule(job) -> None:
    """Run the stage of a Snakemake job, logging to its log file and to stderr.

    A UserError ends the job with its message and exit status 1, without a traceback.
    """
    import sys
    import time

    handlers = [logging.StreamHandler(sys.stderr)]
    if job.log:
        Path(job.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(job.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        handlers=handlers, force=True)
    started = time.perf_counter()
    log.info("rule %s started", job.rule)
    try:
        _dispatch(job)
    except UserError as error:
        log.error("%s", error)
        sys.exit(1)
    log.info("rule %s finished in %.1f s", job.rule, time.perf_counter() - started)
