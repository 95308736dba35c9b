"""InfoRM: a variational information bottleneck reward model.

Source: Miao et al., "InfoRM: Mitigating Reward Hacking in RLHF via Information-Theoretic
Reward Modeling", NeurIPS 2024.

The response representation h_xy is encoded into a Gaussian latent
q(z | x, y) = N(mu(h_xy), diag sigma(h_xy)^2); the reward is decoded from z. Loss:

    - E_q[log sigma(r(z+) - r(z-))] + beta * (KL(q(z+) || N(0, I)) + KL(q(z-) || N(0, I)))

with the KL summed over latent dimensions and averaged over pairs. Scoring uses the
posterior mean of z.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from vrm.methods.layers import mlp
from vrm.methods.registry import Batch, RewardMethod, register_method
from vrm.methods.vrm import gaussian_kl


@dataclass
class InfoRMConfig:
    latent: int = 16  # size of the bottleneck z
    hidden: int = 256
    dropout: float = 0.1
    beta: float = 0.001  # weight of the KL term
    init_logvar: float = -4.0  # starting log-variance of q(z | x, y)


@register_method("inform")
class InfoRM(RewardMethod):
    """Reward decoded from a Gaussian information bottleneck on h_xy."""

    reads_prompt = False
    Config = InfoRMConfig
    summary = "InfoRM: variational information bottleneck on h_xy, reward decoded from z (Miao et al., NeurIPS 2024)"

    def __init__(self, input_dim: int, config: InfoRMConfig):
        super().__init__(input_dim, config)
        self.encoder = mlp(input_dim, config.hidden, 2 * config.latent, config.dropout)
        self.decoder = nn.Linear(config.latent, 1, bias=False)
        output = self.encoder if isinstance(self.encoder, nn.Linear) else self.encoder[-1]
        with torch.no_grad():
            output.bias[config.latent:].fill_(config.init_logvar)

    def posterior(self, response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(response).chunk(2, dim=-1)  # [B, 2L] -> 2 x [B, L]
        return mu, logvar.clamp(-10.0, 10.0)

    def reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        mu, _ = self.posterior(response)
        return self.decoder(mu).squeeze(-1)  # [B, 1] -> [B]

    def loss(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        mu_c, logvar_c = self.posterior(batch["chosen"])
        mu_r, logvar_r = self.posterior(batch["rejected"])
        z_c = mu_c + (0.5 * logvar_c).exp() * torch.randn_like(mu_c)
        z_r = mu_r + (0.5 * logvar_r).exp() * torch.randn_like(mu_r)
        margin = (self.decoder(z_c) - self.decoder(z_r)).squeeze(-1)  # [B]
        nll = -F.logsigmoid(margin).mean()
        kl = (gaussian_kl(mu_c, logvar_c).sum(-1) + gaussian_kl(mu_r, logvar_r).sum(-1)).mean()
        loss = nll + self.config.beta * kl
        return loss, {"nll": nll.item(), "kl": kl.item(), "accuracy": (margin > 0).float().mean().item()}
