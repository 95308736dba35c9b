"""ODIN: a reward disentangled into a length head and a quality head.

Source: Chen et al., "ODIN: Disentangled Reward Mitigates Hacking in RLHF", 2024,
arXiv 2402.07319.

Two linear heads on a shared MLP trunk over h_xy give r_Q (quality) and r_L (length).
Training uses the Bradley-Terry loss on r = r_Q + r_L plus

    lambda_length * (1 - rho(r_L, length)) + lambda_quality * |rho(r_Q, length)|
    + lambda_orthogonal * |w_Q . w_L|

where rho is the Pearson correlation over the responses of the batch and length is the
response length in words (batch keys "chosen_length" and "rejected_length"). Scoring
uses r_Q alone, as ODIN discards the length head after training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from vrm.errors import UserError
from vrm.methods.layers import mlp
from vrm.methods.registry import Batch, RewardMethod, register_method


def pearson(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two [N] tensors; 0 when either is constant."""
    x = x - x.mean()
    y = y - y.mean()
    return (x * y).sum() / (x.norm() * y.norm() + eps)


@dataclass
class OdinConfig:
    hidden: int = 256
    dropout: float = 0.1
    lambda_length: float = 1.0  # pushes r_L to correlate with response length
    lambda_quality: float = 1.0  # pushes r_Q to be uncorrelated with response length
    lambda_orthogonal: float = 1.0  # keeps the two head weight vectors orthogonal


@register_method("odin")
class Odin(RewardMethod):
    """Quality and length heads; the quality head alone scores responses."""

    reads_prompt = False
    Config = OdinConfig
    summary = "ODIN: length head correlated and quality head decorrelated with length; score by quality (Chen et al. 2024, arXiv 2402.07319)"

    def __init__(self, input_dim: int, config: OdinConfig):
        super().__init__(input_dim, config)
        self.trunk = mlp(input_dim, config.hidden, config.hidden, config.dropout) if config.hidden > 0 else nn.Identity()
        width = config.hidden if config.hidden > 0 else input_dim
        self.quality = nn.Linear(width, 1, bias=False)
        self.length = nn.Linear(width, 1, bias=False)

    def heads(self, response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(response)
        return self.quality(features).squeeze(-1), self.length(features).squeeze(-1)  # 2 x [B]

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        return self.heads(response)[0]

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        if "chosen_length" not in batch:
            raise UserError("odin needs response lengths (batch keys chosen_length and rejected_length)")
        quality_c, length_c = self.heads(batch["chosen"])
        quality_r, length_r = self.heads(batch["rejected"])
        margin = (quality_c + length_c) - (quality_r + length_r)
        nll = -F.logsigmoid(margin).mean()

        lengths = torch.cat([batch["chosen_length"], batch["rejected_length"]]).float()
        rho_length = pearson(torch.cat([length_c, length_r]), lengths)
        rho_quality = pearson(torch.cat([quality_c, quality_r]), lengths)
        overlap = (self.quality.weight * self.length.weight).sum().abs()

        config = self.config
        loss = nll + config.lambda_length * (1 - rho_length) + config.lambda_quality * rho_quality.abs() + config.lambda_orthogonal * overlap
        return loss, {
            "nll": nll.item(),
            "rho_length_head": rho_length.item(),
            "rho_quality_head": rho_quality.item(),
            "accuracy": (quality_c > quality_r).float().mean().item(),
        }
