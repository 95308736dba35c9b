"""ArmoRM-style multi-objective reward: prompt-conditioned softmax gating over K objective heads.

Source: Wang et al., "Interpretable Preferences via Multi-Objective Reward Modeling and
Mixture-of-Experts", 2024, arXiv 2406.12845.

r(x, y) = sum_k g_k(x) r_k(x, y), with g(x) = softmax(gate(h_x)) and r_k heads on h_xy;
deterministic, trained with the Bradley-Terry loss. Unlike VRM there are no latent
variables and no KL terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vrm.methods.layers import mlp
from vrm.methods.registry import Batch, RewardMethod, register_method


@dataclass
class ArmoConfig:
    num_objectives: int = 16  # K objective heads
    hidden: int = 256
    dropout: float = 0.1
    temperature: float = 1.0  # of the gating softmax


@register_method("armo")
class ArmoRM(RewardMethod):
    """Softmax gating from the prompt over K deterministic objective rewards."""

    Config = ArmoConfig
    summary = "ArmoRM-style: prompt-conditioned softmax gating over K objective heads (Wang et al. 2024, arXiv 2406.12845)"

    def __init__(self, input_dim: int, config: ArmoConfig):
        super().__init__(input_dim, config)
        self.gate = mlp(input_dim, config.hidden, config.num_objectives, config.dropout)
        self.objectives = mlp(input_dim, config.hidden, config.num_objectives, config.dropout, output_bias=False)

    def gating(self, prompt: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.gate(prompt) / self.config.temperature, dim=-1)  # [B, K]

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        return (self.gating(prompt) * self.objectives(response)).sum(-1)  # [B, K] -> [B]

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        weights = self.gating(batch["prompt"])  # one gating per pair, shared by both responses
        margin = (weights * (self.objectives(batch["chosen"]) - self.objectives(batch["rejected"]))).sum(-1)
        loss = -F.logsigmoid(margin).mean()
        return loss, {"nll": loss.item(), "accuracy": (margin > 0).float().mean().item()}
