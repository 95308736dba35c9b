"""Gaussian reward model: each response gets a reward mean and variance.

Source: Lou et al., "Uncertainty-aware Reward Model: Teaching Reward Models to Know What
is Unknown", 2024, arXiv 2410.00847 (a reward distribution per response).

r(x, y) ~ N(mu(h_xy), sigma(h_xy)^2), independent across responses, so
P(chosen > rejected) = Phi((mu+ - mu-) / sqrt(sigma+^2 + sigma-^2)), the normal CDF of
the margin over the standard deviation of the difference. Loss: -log of that
probability. The point reward for scoring is mu.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch

from vrm.methods.layers import mlp
from vrm.methods.registry import Batch, RewardMethod, register_method


@dataclass
class GaussianConfig:
    hidden: int = 256
    dropout: float = 0.1
    min_variance: float = 1e-3  # floor on sigma^2, keeps the probability finite


@register_method("gaussian")
class GaussianReward(RewardMethod):
    """Reward mean and variance; preferences use the variance of the difference."""

    reads_prompt = False
    Config = GaussianConfig
    summary = "Gaussian reward: mean and variance per response, P = Phi(dmu / sqrt(var+ + var-)) (Lou et al. 2024, arXiv 2410.00847)"

    def __init__(self, input_dim: int, config: GaussianConfig):
        super().__init__(input_dim, config)
        self.head = mlp(input_dim, config.hidden, 2, config.dropout)

    def moments(self, response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.head(response).unbind(-1)  # [B, 2] -> 2 x [B]
        return mean, torch.nn.functional.softplus(raw) + self.config.min_variance

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        return self.moments(response)[0]

    def _z(self, batch: Batch) -> torch.Tensor:
        mean_c, var_c = self.moments(batch["chosen"])
        mean_r, var_r = self.moments(batch["rejected"])
        return (mean_c - mean_r) / torch.sqrt(var_c + var_r)

    def preference_probability(self, batch: Batch, samples: int = 0) -> torch.Tensor:
        return torch.special.ndtr(self._z(batch))

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        z = self._z(batch)
        loss = -torch.special.log_ndtr(z).mean()
        return loss, {"nll": loss.item(), "accuracy": (z > 0).float().mean().item()}
