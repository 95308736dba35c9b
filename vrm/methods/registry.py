"""Registry of reward-model methods: every method is one class with a loss and a reward."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

import torch
from torch import nn

from vrm.errors import UserError

# A batch of pairs: "prompt" is h_x with shape [B, D]; "chosen" and "rejected" are
# h_xy for each response with shape [B, D].
Batch = dict[str, torch.Tensor]

METHODS: dict[str, type["RewardMethod"]] = {}


class RewardMethod(nn.Module):
    """Base class of a reward model head on (prompt, prompt+response) features.

    Subclasses set `Config` to a dataclass of their hyperparameters, implement `loss`
    and `reward`, and may override `preference_probability` (by default the sigmoid of
    the reward margin).
    """

    Config: type = None  # type: ignore[assignment]
    summary: str = ""
    # Training modes the method supports: "head" (frozen features) and "finetune".
    modes: tuple[str, ...] = ("head", "finetune")
    # Fine-tune mode loads the backbone with its LM head and passes the SFT term as batch["sft_nll"].
    needs_lm_head: bool = False
    # False when loss and reward never read batch["prompt"] (h_x): fine-tune mode then skips
    # encoding the prompt alone and passes zeros. A test checks this for every method.
    reads_prompt: bool = True

    def __init__(self, input_dim: int, config: Any):
        super().__init__()
        self.input_dim = input_dim
        self.config = config

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the training loss on a batch and named terms to log.

        `progress` is the fraction of the planned optimisation steps done so far, in
        [0, 1]; methods with a warm-up schedule read it.
        """
        raise NotImplementedError

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """Return the point reward r(x, y) with shape [B] used for scoring."""
        raise NotImplementedError

    def preference_probability(self, batch: Batch, samples: int = 0) -> torch.Tensor:
        """Return P(chosen preferred over rejected) with shape [B].

        Stochastic methods average over `samples` draws when it is positive; the default
        is the sigmoid of the reward margin.
        """
        margin = self.reward(batch["prompt"], batch["chosen"]) - self.reward(
            batch["prompt"], batch["rejected"]
        )
        return torch.sigmoid(margin)

    def sample_margin(self, batch: Batch) -> torch.Tensor:
        """Return r(x, y+) - r(x, y-) of one draw of the stochastic predictor, shape [B].

        Deterministic methods return the scored margin. Methods with latent noise draw it
        here, so PAC-Bayes bounds count that noise as part of the predictor.
        """
        return self.reward(batch["prompt"], batch["chosen"]) - self.reward(batch["prompt"], batch["rejected"])

    def training_report(self, batch: Batch) -> dict[str, Any]:
        """Return diagnostics computed on held-out pairs after training (none by default)."""
        return {}


def register_method(name: str) -> Callable[[type[RewardMethod]], type[RewardMethod]]:
    """Register a RewardMethod subclass under `name`, the key used in configs."""

    def decorate(cls: type[RewardMethod]) -> type[RewardMethod]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} is registered twice: {METHODS[name]} and {cls}")
        if cls.Config is None or not dataclasses.is_dataclass(cls.Config):
            raise TypeError(f"method {name!r}: {cls.__name__}.Config must be a dataclass")
        cls.method_name = name
        METHODS[name] = cls
        return cls

    return decorate


def load_builtin_methods() -> None:
    """Import vrm.methods and every module of the baselines package so they register."""
    importlib.import_module("vrm.methods.vrm")
    baselines = importlib.import_module("baselines")
    for module in pkgutil.iter_modules(baselines.__path__):
        importlib.import_module(f"baselines.{module.name}")


def load_plugins(modules: list[str]) -> None:
    """Import out-of-tree method modules named in the config under `plugins`."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UserError(
                f"plugin module {module!r} could not be imported: {error}. "
                "Check the name under `plugins` and that the module is on PYTHONPATH"
            ) from error


def get_method(name: str) -> type[RewardMethod]:
    load_builtin_methods()
    if name not in METHODS:
        known = ", ".join(sorted(METHODS))
        raise UserError(f"unknown method {name!r}; registered methods: {known}")
    return METHODS[name]


def build_method(name: str, input_dim: int, options: dict[str, Any] | None = None) -> RewardMethod:
    """Instantiate method `name` with `options` checked against its Config fields."""
    cls = get_method(name)
    options = dict(options or {})
    fields = {field.name for field in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise UserError(
            f"method {name!r}: unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    return cls(input_dim, cls.Config(**options))
