"""Bradley-Terry reward model head.

Source: Bradley and Terry, "Rank Analysis of Incomplete Block Designs", Biometrika 1952;
as a reward model for language models: Ouyang et al. 2022, arXiv 2203.02155.

Loss: -log sigma(r(x, y+) - r(x, y-)), averaged over pairs, where r is an MLP on the
prompt+response representation h_xy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from vrm.methods.registry import Batch, RewardMethod, register_method


@dataclass
class BTConfig:
    hidden: int = 256  # width of the MLP; 0 gives a linear reward
    dropout: float = 0.1


@register_method("bt")
class BradleyTerry(RewardMethod):
    """Scalar reward from an MLP on h_xy, trained with the Bradley-Terry likelihood."""

    reads_prompt = False
    Config = BTConfig
    summary = "Bradley-Terry: -log sigma(r+ - r-) on an MLP reward (Bradley and Terry 1952; Ouyang et al. 2022, arXiv 2203.02155)"

    def __init__(self, input_dim: int, config: BTConfig):
        super().__init__(input_dim, config)
        if config.hidden > 0:
            self.head = nn.Sequential(
                nn.Linear(input_dim, config.hidden),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, 1, bias=False),
            )
        else:
            self.head = nn.Linear(input_dim, 1, bias=False)

    # The output layer has no bias: a constant reward offset cancels in r+ - r-, so the
    # Bradley-Terry likelihood cannot identify it.

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        return self.head(response).squeeze(-1)  # [B, 1] -> [B]

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        margin = self.reward(batch["prompt"], batch["chosen"]) - self.reward(batch["prompt"], batch["rejected"])
        loss = -F.logsigmoid(margin).mean()
        return loss, {"nll": loss.item(), "accuracy": (margin > 0).float().mean().item()}
