"""Hyperparameter sweeps with Ray Tune: one sweep per (training set, method), on train and validation pairs only.

A sweep samples configurations from the search space in the config (random search by
default, Optuna's TPE on request), stops weak trials early by successive halving, retries
failed trials, and resumes an interrupted sweep with `Tuner.restore` instead of starting
over. The halving decisions follow the trials' order, not the order in which concurrent
trials happen to report (see `RungBoard`), so the same config gives the same sweep.
Ray runs on this machine only (node address 127.0.0.1, no dashboard, usage statistics
off) unless the config names a running cluster with `ray_address`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vrm.errors import UserError
from vrm.io import write_text
from vrm.methods.registry import Batch, get_method
from vrm.train import TrainConfig

log = logging.getLogger(__name__)

TRAIN_FIELDS = {field.name for field in dataclasses.fields(TrainConfig)} - {"seed", "threads"}
# Metrics a sweep can rank trials by, and whether lower or higher is better.
METRIC_MODES = {"validation_pair_nll": "min", "validation_loss": "min", "validation_pair_accuracy": "max"}
METRIC_LABELS = {
    "validation_pair_nll": "validation NLL of preferences",
    "validation_loss": "validation loss",
    "validation_pair_accuracy": "validation accuracy",
}
SAMPLERS = ("loguniform", "uniform", "choice", "randint", "qloguniform", "quniform")


def build_space(spec: dict[str, Any]) -> dict[str, Any]:
    """Turn the config's search space into Ray Tune domains.

    Each key maps to {loguniform: [low, high]}, {uniform: [low, high]},
    {randint: [low, high]} (high excluded), {choice: [values]}, or a plain value (fixed).
    """
    from ray import tune

    space = {}
    for key, value in spec.items():
        if not isinstance(value, dict):
            space[key] = value
            continue
        if len(value) != 1 or next(iter(value)) not in SAMPLERS:
            raise UserError(f"config: tune search space {key!r} = {value!r}; expected one of {', '.join(SAMPLERS)} with its arguments")
        kind, arguments = next(iter(value.items()))
        if kind == "choice":
            space[key] = tune.choice(list(arguments))
        else:
            space[key] = getattr(tune, kind)(*arguments)
    return space


def split_trial_config(method: str, trial: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a sampled configuration into (method options, training options)."""
    method_fields = {field.name for field in dataclasses.fields(get_method(method).Config)}
    options, training = {}, {}
    for key, value in trial.items():
        if key in TRAIN_FIELDS:
            training[key] = value
        elif key in method_fields:
            options[key] = value
        else:
            raise UserError(
                f"config: tune.spaces.{method}.{key} is neither a training option ({', '.join(sorted(TRAIN_FIELDS))}) "
                f"nor an option of method {method!r} ({', '.join(sorted(method_fields))})"
            )
    return options, training


def _to_builtin(value: Any) -> Any:
    """Convert NumPy scalars from the samplers into plain Python values for YAML and JSON."""
    return value.item() if isinstance(value, np.generic) else value


class _StopTrial(Exception):
    """Raised from the epoch callback when successive halving stops the trial."""


class RungBoard:
    """Successive halving (the rule of ASHA) whose decisions do not depend on timing.

    Ray's ASHA compares a trial reaching a rung with the trials that reached it before,
    so with concurrent trials the outcome depends on which one reports first. Here trial
    i, at a rung, writes its metric to a file and waits until every trial with a lower
    index has either written its own or ended before that rung. It is then stopped when
    its metric is worse than the (1 - 1/reduction_factor) quantile of those earlier
    trials' metrics, as Ray's ASHA (2.60) would decide had the trials reported in index
    order. Unlike ASHA, a trial whose metric is NaN or infinite at a rung is stopped.
    The files live in the sweep's folder, so a resumed sweep keeps them. With a Ray
    cluster (`ray_address`) that folder must be on storage every node reads.

    NOTE: a trial that raises records its end, so later trials decide without it until
    its retry starts, and such a sweep may differ from a rerun. A trial whose worker
    process dies without raising records nothing, and later trials wait `timeout_s` for it.
    """

    def __init__(self, folder: str | Path, metric: str, mode: str, grace_period: int, reduction_factor: float,
                 max_t: int, timeout_s: float = 3600.0):
        self.folder = Path(folder)
        self.metric = metric
        self.reduction_factor = float(reduction_factor)
        self.mode = mode
        self.timeout_s = timeout_s
        self.rungs = []
        rung = int(grace_period)
        while rung < max_t:
            self.rungs.append(rung)
            rung = int(math.ceil(rung * self.reduction_factor))

    def _rung_file(self, rung: int, index: int) -> Path:
        return self.folder / f"rung{rung}" / f"{index:05d}"

    def _end_file(self, index: int) -> Path:
        return self.folder / "ended" / f"{index:05d}"

    def start(self, index: int) -> None:
        """Forget an earlier end of trial `index` (a retry after a failure restarts it)."""
        self._end_file(index).unlink(missing_ok=True)

    def end(self, index: int, epochs: int) -> None:
        """Record that trial `index` ended after `epochs` epochs."""
        write_text(self._end_file(index), str(epochs))

    def should_stop(self, index: int, epoch: int, record: dict[str, float]) -> bool:
        """Record trial `index`'s metric after `epoch` epochs (1-based) and decide whether it stops."""
        if epoch not in self.rungs:
            return False
        value = float(record.get(self.metric, math.nan))
        write_text(self._rung_file(epoch, index), repr(value))
        earlier = []
        for other in range(index):
            other_value = self._wait_for(index, other, epoch)
            if other_value is not None and math.isfinite(other_value):
                earlier.append(other_value)
        if not math.isfinite(value):
            return True
        if not earlier:
            return False
        # ASHA keeps the top 1/reduction_factor of the metrics recorded at a rung, on a
        # scale where higher is better.
        sign = 1.0 if self.mode == "max" else -1.0
        cutoff = np.percentile(sign * np.array(earlier), (1.0 - 1.0 / self.reduction_factor) * 100.0)
        return bool(sign * value < cutoff)

    def _wait_for(self, index: int, other: int, rung: int) -> float | None:
        """Return the metric of trial `other` at `rung`, or None when it ended before reaching it."""
        rung_file, end_file = self._rung_file(rung, other), self._end_file(other)
        deadline = time.monotonic() + self.timeout_s
        while True:
            if rung_file.exists():
                return float(rung_file.read_text())
            if end_file.exists() and int(end_file.read_text() or 0) < rung:
                return None
            if time.monotonic() > deadline:
                log.warning(
                    "trial %d waited %.0f s for trial %d at epoch %d; deciding without it, so this "
                    "sweep may differ from a rerun", index, self.timeout_s, other, rung,
                )
                return None
            time.sleep(0.05)


def _trial_index(trial_id: str) -> int:
    """Index of a trial in its sweep, from Ray's id (`<experiment>_<index>`)."""
    match = re.search(r"_(\d+)$", trial_id)
    if not match:
        raise RuntimeError(f"cannot read the trial index from Ray trial id {trial_id!r}")
    return int(match.group(1))


def _trial(trial_config, *, method, plugins, base_options, base_training, seed, threads, train_features,
           validation_features, events_path, halving=None):
    """Body of one Ray Tune trial: train with the sampled configuration, report every epoch."""
    from ray import tune

    from vrm.methods import load_plugins
    from vrm.train import train_method

    load_plugins(plugins)  # a Ray worker is a fresh process: out-of-tree methods register here

    trial_id = tune.get_context().get_trial_id()
    index = _trial_index(trial_id)
    _log_event(events_path, "start", trial_id)
    options, training = split_trial_config(method, trial_config)
    config = TrainConfig(**{**base_training, **training}, seed=seed, threads=threads)
    board = RungBoard(**halving) if halving else None
    epochs = 0

    def report(record: dict[str, float]) -> None:
        nonlocal epochs
        epochs += 1
        tune.report({key: value for key, value in record.items() if isinstance(value, (int, float))})
        if board is not None and board.should_stop(index, epochs, record):
            raise _StopTrial

    if board is not None:
        board.start(index)
    try:
        train_method(method, {**base_options, **options}, train_features, validation_features, config, on_epoch=report)
    except _StopTrial:
        pass
    finally:
        if board is not None:
            board.end(index, epochs)
    _log_event(events_path, "end", trial_id)


def _log_event(path: str | None, event: str, trial_id: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{event} {trial_id}\n")


def init_ray(address: str | None, num_cpus: int) -> None:
    """Start a local Ray on 127.0.0.1 with usage statistics off, or connect to `address`."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return
    ray.init(
        num_cpus=num_cpus,
        num_gpus=0,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )


def run_sweep(
    method: str,
    train_features: Batch,
    validation_features: Batch,
    settings: dict[str, Any],
    base_options: dict[str, Any],
    base_training: dict[str, Any],
    storage: str | Path,
    threads: int,
    events_path: str | None = None,
    plugins: list[str] = (),
):
    """Run or resume the sweep of one method and return Ray Tune's ResultGrid.

    The sweep receives only the train and validation features passed in. Its state is
    stored under `storage`, so a rerun after an interruption resumes it.
    """
    from ray import tune

    metric = settings.get("metric", "validation_pair_nll")
    mode = METRIC_MODES[metric]
    spaces = settings.get("spaces", {})
    spec = spaces.get(method, spaces.get("default"))
    if spec is None:
        raise UserError(
            f"config: tune.spaces has no search space for method {method!r} and no `default` space; "
            "add one or set tune.enabled: false"
        )
    space = build_space(spec)
    split_trial_config(method, {key: None for key in space})  # reject unknown keys before Ray starts

    resources = settings.get("resources_per_trial", {"cpu": 1, "gpu": 0})
    trial_threads = max(1, int(resources.get("cpu", 1)))
    init_ray(settings.get("ray_address"), threads)

    storage = Path(storage).resolve()
    experiment = storage / "sweep"
    asha = settings.get("asha")
    halving = None
    if asha:
        halving = {
            "folder": str(storage / "rungs"), "metric": metric, "mode": mode,
            "grace_period": int(asha.get("grace_period", 5)),
            "reduction_factor": float(asha.get("reduction_factor", 3)),
            "max_t": int(base_training.get("max_epochs", 60)),
        }
    trainable = tune.with_parameters(
        _trial, method=method, plugins=list(plugins), base_options=base_options, base_training=base_training,
        seed=int(settings.get("seed", 0)), threads=trial_threads,
        train_features=train_features, validation_features=validation_features,
        events_path=events_path, halving=halving,
    )
    trainable = tune.with_resources(trainable, {"cpu": resources.get("cpu", 1), "gpu": resources.get("gpu", 0)})

    # Save the sweep state at least every second (Ray's default is 10 s or more), so a
    # killed sweep repeats at most the trials that ended in its last second. Ray Tune
    # stops cleanly only on SIGINT; SIGTERM, which batch schedulers and Snakemake send,
    # is routed to the same path.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))

    if tune.Tuner.can_restore(str(experiment)):
        log.info("resuming the sweep stored in %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, restart_errored=True)
        return tuner.fit()

    shutil.rmtree(storage / "rungs", ignore_errors=True)  # a new sweep: earlier rung records do not apply
    seed = int(settings.get("seed", 0))
    if settings.get("search", "random") == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(sampler=TPESampler(seed=seed))
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search = BasicVariantGenerator(random_state=seed)

    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode, num_samples=int(settings.get("num_samples", 16)),
            search_alg=search, reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="sweep", storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=int(settings.get("max_failures", 1))),
            verbose=0,
        ),
    )
    return tuner.fit()


def trial_statuses(results) -> list[tuple[str, str]]:
    """(trial id, status) of each trial of a ResultGrid, in its order.

    The status is ERROR for a trial that raised. It is TERMINATED for one whose last result
    is marked done, because it ran to the end or the scheduler stopped it. Any other trial
    is UNFINISHED, as happens when a sweep is interrupted.
    """
    statuses = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id", "")
        if not trial_id and result.path:
            match = re.search(r"_([0-9a-f]+_\d{5})", Path(result.path).name)
            trial_id = match.group(1) if match else Path(result.path).name
        if result.error is not None:
            status = "ERROR"
        elif metrics.get("done"):
            status = "TERMINATED"
        else:
            status = "UNFINISHED"
        statuses.append((trial_id, status))
    return statuses


def unfinished_trials(results) -> list[str]:
    """Ids of trials that neither finished nor failed, as after an interrupted sweep."""
    return [trial_id for trial_id, status in trial_statuses(results) if status == "UNFINISHED"]


def trials_table(results, metric: str) -> pd.DataFrame:
    """Build one row per trial: its configuration, final and best validation metrics, status and error."""
    mode = METRIC_MODES[metric]
    rows = []
    for result, (trial_id, status) in zip(results, trial_statuses(results)):
        history = result.metrics_dataframe
        row: dict[str, Any] = {"trial_id": trial_id, "status": status}
        row["error"] = describe_error(result.error)
        row.update({f"config/{key}": _to_builtin(value) for key, value in sorted((result.config or {}).items())})
        row["epochs"] = 0 if history is None or history.empty else int(history["training_iteration"].max())
        for name in METRIC_MODES:
            final = (result.metrics or {}).get(name)
            row[f"final_{name}"] = final if final is not None else math.nan
            if history is not None and name in history:
                values = history[name].dropna()
                best = values.min() if METRIC_MODES[name] == "min" else values.max()
                row[f"best_{name}"] = float(best) if len(values) else math.nan
            else:
                row[f"best_{name}"] = math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    ascending = mode == "min"
    return table.sort_values([f"best_{metric}", "trial_id"], ascending=[ascending, True], na_position="last").reset_index(drop=True)


def describe_error(error: BaseException | None) -> str:
    """Describe in one line the exception a trial raised, unwrapped from Ray's RayTaskError."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"[:300]


def best_configuration(table: pd.DataFrame, method: str, metric: str) -> dict[str, Any]:
    """Return the configuration of the trial with the best validation metric, as best_config.yaml stores it."""
    finished = table[table[f"best_{metric}"].notna()]
    if finished.empty:
        errors = "; ".join(table["error"].astype(str).head(3))
        raise UserError(f"every trial of the {method} sweep failed; first errors: {errors}. See trials.csv and the sweep log")
    best = finished.iloc[0]
    sampled = {key.removeprefix("config/"): _to_builtin(best[key]) for key in table.columns if key.startswith("config/")}
    options, training = split_trial_config(method, sampled)
    return {
        "method": method,
        "trial_id": str(best["trial_id"]),
        "metric": metric,
        "value": float(best[f"best_{metric}"]),
        "trials": int(len(table)),
        "failed_trials": int((table["status"] == "ERROR").sum()),
        "method_options": options,
        "training": training,
    }


def plot_sweep(table: pd.DataFrame, metric: str, png_path: str, pdf_path: str | None = None,
               method: str | None = None, note: str = "fewer than 3 finished trials") -> list[str]:
    """Scatter the validation metric against the two hyperparameters most rank-correlated with it.

    The points take `method`'s color and marker from the shared figure style. `note` is
    drawn instead when no hyperparameter can be ranked (fewer than 3 finished trials).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    from vrm.report.figures import method_styles

    style = method_styles([method])[method] if method else {"color": "#0072B2", "marker": "o"}
    if f"best_{metric}" not in table:
        table = table.assign(**{f"best_{metric}": pd.Series(dtype=float)})
    finished = table[table[f"best_{metric}"].notna()]
    scores = {}
    for column in (c for c in table.columns if c.startswith("config/")):
        values = pd.to_numeric(finished[column], errors="coerce")
        if values.notna().sum() >= 3 and values.nunique() > 1:
            rho = spearmanr(values, finished[f"best_{metric}"], nan_policy="omit").statistic
            scores[column] = 0.0 if np.isnan(rho) else abs(float(rho))
    top = sorted(scores, key=lambda c: (-scores[c], c))[:2]

    figure, axes = plt.subplots(1, max(1, len(top)), figsize=(4.5 * max(1, len(top)), 3.4), squeeze=False)
    for axis, column in zip(axes[0], top):
        values = pd.to_numeric(finished[column], errors="coerce")
        axis.scatter(values, finished[f"best_{metric}"], color=style["color"], marker=style["marker"], s=18)
        if values.min() > 0 and values.max() / values.min() > 10:
            axis.set_xscale("log")
        axis.set_xlabel(f"{column.removeprefix('config/')} (|Spearman| {scores[column]:.2f})")
        axis.set_ylabel(METRIC_LABELS[metric])
    if not top:
        axes[0][0].text(0.5, 0.5, note, ha="center", va="center")
    if method:
        figure.suptitle(f"sweep of {method}", fontsize=10)
    figure.tight_layout()
    figure.savefig(png_path, dpi=130)
    if pdf_path:
        figure.savefig(pdf_path)
    plt.close(figure)
    return [column.removeprefix("config/") for column in top]
