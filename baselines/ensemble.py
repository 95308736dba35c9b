"""Ensemble of independently initialized Bradley-Terry heads.

Source: Coste et al., "Reward Model Ensembles Help Mitigate Overoptimization", 2023,
arXiv 2310.02743; Eisenstein et al. 2023, arXiv 2312.09244.

M heads r_1..r_M on h_xy, each trained with the Bradley-Terry loss (the loss is their
mean). The score is mean_m r_m - k * std_m r_m: k = 0 for `ensemble`, and k > 0 for the
conservative variant `ensemble-conservative`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from vrm.methods.layers import mlp
from vrm.methods.registry import Batch, RewardMethod, register_method


@dataclass
class EnsembleConfig:
    members: int = 5  # M
    hidden: int = 256
    dropout: float = 0.1
    conservative_k: float = 0.0  # k in mean - k * std


@register_method("ensemble")
class Ensemble(RewardMethod):
    """M Bradley-Terry heads, scored by their mean (minus k standard deviations)."""

    reads_prompt = False
    Config = EnsembleConfig
    summary = "Ensemble of M Bradley-Terry heads scored by the mean reward (Coste et al. 2023, arXiv 2310.02743)"

    def __init__(self, input_dim: int, config: EnsembleConfig):
        super().__init__(input_dim, config)
        self.heads = nn.ModuleList(mlp(input_dim, config.hidden, 1, config.dropout, output_bias=False) for _ in range(config.members))

    def member_rewards(self, response: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(response) for head in self.heads], dim=-1)  # M x [B, 1] -> [B, M]

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        rewards = self.member_rewards(response)
        spread = rewards.std(-1, unbiased=False) if self.config.members > 1 else torch.zeros_like(rewards[:, 0])
        return rewards.mean(-1) - self.config.conservative_k * spread

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        margins = self.member_rewards(batch["chosen"]) - self.member_rewards(batch["rejected"])  # [B, M]
        loss = -F.logsigmoid(margins).mean()
        return loss, {"nll": loss.item(), "accuracy": (margins.mean(-1) > 0).float().mean().item()}


@dataclass
class ConservativeEnsembleConfig(EnsembleConfig):
    conservative_k: float = 1.0


@register_method("ensemble-conservative")
class ConservativeEnsemble(Ensemble):
    """The ensemble scored by mean minus k standard deviations (k = 1 by default)."""

    Config = ConservativeEnsembleConfig
    summary = "Ensemble of M Bradley-Terry heads scored by mean - k * std (Coste et al. 2023, arXiv 2310.02743)"
