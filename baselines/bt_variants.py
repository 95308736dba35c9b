"""Bradley-Terry variants: a margin, reward centering and label smoothing.

Each keeps the BT reward head (an MLP on h_xy) and changes only the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines.bt import BradleyTerry, BTConfig
from vrm.methods.registry import Batch, register_method


def reward_margin(model: BradleyTerry, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return r+, r- and r+ - r-, each [B]."""
    chosen = model.reward(batch["prompt"], batch["chosen"])
    rejected = model.reward(batch["prompt"], batch["rejected"])
    return chosen, rejected, chosen - rejected


@dataclass
class BTMarginConfig(BTConfig):
    margin: float = 0.5  # m, used for pairs without a margin of their own in the batch


@register_method("bt-margin")
class BTMargin(BradleyTerry):
    """Bradley-Terry with a margin: -log sigma(r+ - r- - m).

    Source: Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models", 2023,
    arXiv 2307.09288. The margin comes from the batch key "margin" (a score difference
    given by the source) when present, otherwise the configured constant m.
    """

    Config = BTMarginConfig
    summary = "Bradley-Terry with a margin m: -log sigma(r+ - r- - m) (Touvron et al. 2023, arXiv 2307.09288)"

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        _, _, margin = reward_margin(self, batch)
        target = batch.get("margin")
        if target is None:
            target = torch.full_like(margin, self.config.margin)
        loss = -F.logsigmoid(margin - target).mean()
        return loss, {"nll": loss.item(), "accuracy": (margin > 0).float().mean().item()}


@dataclass
class BTCenterConfig(BTConfig):
    centering: float = 0.01  # coefficient of mean((r+ + r-)^2)


@register_method("bt-center")
class BTCenter(BradleyTerry):
    """Bradley-Terry with reward centering: BT loss + c * mean((r+ + r-)^2).

    Source: Eisenstein et al., "Helping or Herding? Reward Model Ensembles Mitigate but do
    not Eliminate Reward Hacking", 2023, arXiv 2312.09244.
    """

    Config = BTCenterConfig
    summary = "Bradley-Terry plus reward centering c * mean((r+ + r-)^2) (Eisenstein et al. 2023, arXiv 2312.09244)"

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        chosen, rejected, margin = reward_margin(self, batch)
        nll = -F.logsigmoid(margin).mean()
        centering = (chosen + rejected).pow(2).mean()
        loss = nll + self.config.centering * centering
        return loss, {"nll": nll.item(), "centering": centering.item(), "accuracy": (margin > 0).float().mean().item()}


@dataclass
class BTSmoothConfig(BTConfig):
    label_smoothing: float = 0.1  # eps, the weight on the flipped label


@register_method("bt-smooth")
class BTSmooth(BradleyTerry):
    """Bradley-Terry with label smoothing: -(1 - eps) log sigma(d) - eps log sigma(-d), d = r+ - r-.

    Source: Wang et al., "Secrets of RLHF in Large Language Models Part II: Reward
    Modeling", 2024, arXiv 2401.06080.
    """

    Config = BTSmoothConfig
    summary = "Bradley-Terry with label smoothing eps on the preference label (Wang et al. 2024, arXiv 2401.06080)"

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        _, _, margin = reward_margin(self, batch)
        eps = self.config.label_smoothing
        loss = (-(1 - eps) * F.logsigmoid(margin) - eps * F.logsigmoid(-margin)).mean()
        return loss, {"nll": loss.item(), "accuracy": (margin > 0).float().mean().item()}
