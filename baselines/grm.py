"""Generalizable Reward Model (GRM): a Bradley-Terry head whose backbone keeps its language modeling.

Source: Yang, Ding, Lin, Zhang, Zhang, "Regularizing Hidden States Enables Learning
Generalizable Reward Model for LLMs", NeurIPS 2024, arXiv 2406.10216. The reward head
reads the last hidden state, and the LM head stays on the same hidden states. The SFT
term, the negative log-likelihood of the chosen response under the LM head, keeps those
states useful for text generation:

    loss = (1 - alpha) * (-log sigma(r(x, y+) - r(x, y-))) + alpha * NLL_LM(y+ | x)

The authors' scripts use alpha = 0.01 and an MLP head. The SFT term needs the LM head,
so GRM runs in fine-tune mode with a causal decoder only; fine-tune mode puts the term
in the batch under "sft_nll".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines.bt import BradleyTerry
from vrm.errors import UserError
from vrm.methods.registry import Batch, register_method


@dataclass
class GRMConfig:
    hidden: int = 256  # width of the MLP head; 0 gives a linear reward
    dropout: float = 0.1
    sft_weight: float = 0.01  # alpha: weight of the SFT term on the chosen response


@register_method("grm")
class GeneralizableRewardModel(BradleyTerry):
    """Bradley-Terry head plus an SFT term through the backbone's LM head (fine-tune mode only)."""

    Config = GRMConfig
    summary = "GRM: Bradley-Terry with an SFT term on the chosen response, fine-tune mode only (Yang et al. 2024, arXiv 2406.10216)"
    modes = ("finetune",)
    needs_lm_head = True

    def __init__(self, input_dim: int, config: GRMConfig):
        if not 0.0 <= config.sft_weight < 1.0:
            raise UserError(f"method 'grm': sft_weight = {config.sft_weight}; it must be in [0, 1)")
        super().__init__(input_dim, config)

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        if "sft_nll" not in batch:
            raise UserError("method 'grm' needs the LM head of a decoder and runs in fine-tune mode only; "
                            "set mode: finetune with a causal language model as finetune.backbone")
        margin = self.reward(batch["prompt"], batch["chosen"]) - self.reward(batch["prompt"], batch["rejected"])
        preference = -F.logsigmoid(margin).mean()
        alpha = self.config.sft_weight
        loss = (1.0 - alpha) * preference + alpha * batch["sft_nll"]
        return loss, {"nll": preference.item(), "sft_nll": float(batch["sft_nll"].detach()),
                      "accuracy": (margin > 0).float().mean().item()}
