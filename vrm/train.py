"""One trainer for every registered method: AdamW, early stopping on validation loss, seeds."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
import json
import logging
import math
from pathlib import Path
import random
from typing import Any, Callable

import numpy as np
import torch

from vrm.io import atomic_write
from vrm.methods.registry import Batch, RewardMethod, build_method

log = logging.getLogger(__name__)

# Validation losses of stochastic methods use this fixed RNG seed, so the early-stopping
# criterion compares epochs on the same noise.
VALIDATION_SEED = 12345


@dataclass
class TrainConfig:
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 8  # epochs without a lower validation loss before stopping
    min_delta: float = 1e-4  # a decrease smaller than this does not count as lower
    seed: int = 0
    threads: int = 1


@dataclass
class TrainResult:
    model: RewardMethod
    history: list[dict[str, float]]
    best_epoch: int
    best_validation_loss: float
    report: dict[str, Any]


def set_seed(seed: int, threads: int = 1) -> None:
    """Seed Python, NumPy and torch, and make CPU kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True)


def _batch_at(features: Batch, index: torch.Tensor) -> Batch:
    return {key: value[index] for key, value in features.items()}


def _evaluate_loss(model: RewardMethod, features: Batch, batch_size: int) -> tuple[float, dict[str, float]]:
    """Mean loss and terms over `features` at full KL weight, with dropout off and fixed noise.

    The terms also hold `pair_nll` and `pair_accuracy`: the NLL and accuracy of the scored
    preference probability, which mean the same for every method and so rank sweeps.
    """
    model.eval()
    count = next(iter(features.values())).shape[0]
    totals: dict[str, float] = {"pair_nll": 0.0, "pair_accuracy": 0.0}
    total_loss = 0.0
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(VALIDATION_SEED)
        for start in range(0, count, batch_size):
            index = torch.arange(start, min(count, start + batch_size))
            batch = _batch_at(features, index)
            loss, terms = model.loss(batch, progress=1.0)
            probability = model.preference_probability(batch).clamp(1e-7, 1 - 1e-7)
            terms["pair_nll"] = float(-probability.log().mean())
            terms["pair_accuracy"] = float((probability > 0.5).float().mean() + 0.5 * (probability == 0.5).float().mean())
            weight = len(index) / count
            total_loss += float(loss) * weight
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + value * weight
    return total_loss, totals


def train_method(
    method: str,
    method_options: dict[str, Any],
    train_features: Batch,
    validation_features: Batch,
    config: TrainConfig,
    progress_bar: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train `method` on pair features and keep the epoch with the lowest validation loss.

    `on_epoch` receives each epoch's record (losses and validation terms), for example
    to report it to a sweep scheduler. `initial_state` (parameter name to tensor) replaces
    the seeded initialization of those parameters, for example with a prior's mean.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> def pairs(n):
    ...     x = torch.randn(n, 4, generator=g)
    ...     return {"prompt": x, "chosen": x + 1.0, "rejected": x - 1.0}
    >>> result = train_method("bt", {"hidden": 0}, pairs(64), pairs(32), TrainConfig(learning_rate=0.05, max_epochs=20))
    >>> result.history[-1]["validation_accuracy"] > 0.9
    True
    """
    set_seed(config.seed, config.threads)
    input_dim = train_features["chosen"].shape[1]
    model = build_method(method, input_dim, method_options)
    if initial_state is not None:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in initial_state:
                    parameter.copy_(initial_state[name])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    count = train_features["chosen"].shape[0]
    steps_per_epoch = max(1, math.ceil(count / config.batch_size))
    planned_steps = steps_per_epoch * config.max_epochs
    generator = torch.Generator().manual_seed(config.seed)

    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state, stale = math.inf, -1, None, 0
    step = 0
    epochs = range(config.max_epochs)
    if progress_bar:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"train {method}", unit="epoch")

    for epoch in epochs:
        model.train()
        order = torch.randperm(count, generator=generator)
        epoch_loss = 0.0
        for start in range(0, count, config.batch_size):
            index = order[start : start + config.batch_size]
            loss, _ = model.loss(_batch_at(train_features, index), progress=step / planned_steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * len(index) / count
            step += 1
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(
                f"{method}: training loss became {epoch_loss} at epoch {epoch}; "
                "lower the learning rate or check the features for NaN or infinite values"
            )

        validation_loss, terms = _evaluate_loss(model, validation_features, config.batch_size)
        record = {"epoch": epoch, "train_loss": epoch_loss, "validation_loss": validation_loss}
        record.update({f"validation_{key}": value for key, value in terms.items()})
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)

        if validation_loss < best_loss - config.min_delta:
            best_loss, best_epoch, stale = validation_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break

    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        report = model.training_report(validation_features)
    log.info(
        "%s: %d epochs, best epoch %d, validation loss %.4f",
        method, len(history), best_epoch, best_loss,
    )
    return TrainResult(model, history, best_epoch, best_loss, report)


def save_model(result: TrainResult, method: str, method_options: dict[str, Any], config: TrainConfig, folder: str | Path) -> None:
    """Write the weights (safetensors), the settings and the training history into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous() for key, value in result.model.state_dict().items()}
    atomic_write(folder / "model.safetensors", lambda path: save_file(state, str(path)))
    settings = {
        "method": method,
        "method_options": asdict(result.model.config),
        "input_dim": result.model.input_dim,
        "train": asdict(config),
        "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss,
        "epochs_run": len(result.history),
        "report": result.report,
    }
    atomic_write(folder / "config.json", lambda path: Path(path).write_text(json.dumps(settings, indent=2) + "\n"))
    lines = [",".join(result.history[0].keys())]
    lines += [",".join(f"{value:.6g}" for value in row.values()) for row in result.history]
    atomic_write(folder / "history.csv", lambda path: Path(path).write_text("\n".join(lines) + "\n"))


def load_model(folder: str | Path) -> RewardMethod:
    """Load a model written by save_model, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    settings = json.loads((folder / "config.json").read_text())
    model = build_method(settings["method"], settings["input_dim"], settings["method_options"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return model

