"""Synthetic preference pairs with planted objective weights and semantic features.

The generator follows the generative story of VRM in feature space, so the true risk of
any reward model can be measured on as many fresh pairs as needed:

- a prompt vector h_x ~ N(0, I_D / D) sets objective weights w = softmax(A h_x / tau_w);
- a response vector h_xy ~ N(0, I_D / D) has semantic features z = B h_xy, scored by
  the objectives as g(z) = G z, so the true reward is r = w . G B h_xy;
- of two responses, the first is preferred with probability sigma((r1 - r2) / noise);
- optionally a spurious cue: a fixed unit direction added with `cue_strength` to the
  chosen response with probability `cue_rate`, else to the rejected one.

A, B and G are drawn once from the task seed; `sample` draws pairs from its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SyntheticTask:
    dim: int = 32  # D, size of the prompt and response vectors
    num_objectives: int = 8  # K
    num_features: int = 4  # d
    weight_temperature: float = 0.5  # tau_w of the objective-weight softmax
    reward_scale: float = 4.0  # scales r, so the labels depend on the reward more than on noise
    noise: float = 1.0  # temperature of the Bradley-Terry label draw; 0 gives noiseless labels
    cue_strength: float = 0.0  # norm of the spurious direction added to one response
    cue_rate: float = 0.5  # probability that the cue is on the chosen response
    seed: int = 0

    def __post_init__(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        D, K, d = self.dim, self.num_objectives, self.num_features
        self.weights_map = torch.randn(K, D, generator=generator)  # A
        self.features_map = torch.randn(d, D, generator=generator) / d**0.5  # B
        self.objective_scores = torch.randn(K, d, generator=generator) / d**0.5  # G
        cue = torch.randn(D, generator=generator)
        self.cue_direction = cue / cue.norm()

    def true_reward(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """Return the planted reward r = w(x) . G B h_xy, shape [N]."""
        w = torch.softmax(prompt @ self.weights_map.T / self.weight_temperature, dim=-1)  # [N, K]
        scores = response @ self.features_map.T @ self.objective_scores.T  # [N, d] -> [N, K]
        return self.reward_scale * (w * scores).sum(-1)

    def sample(self, count: int, seed: int) -> dict[str, torch.Tensor]:
        """Draw `count` labelled pairs as features {"prompt", "chosen", "rejected"}, each [N, D]."""
        generator = torch.Generator().manual_seed(seed)
        scale = self.dim**-0.5
        prompt = torch.randn(count, self.dim, generator=generator) * scale
        first = torch.randn(count, self.dim, generator=generator) * scale
        second = torch.randn(count, self.dim, generator=generator) * scale
        margin = self.true_reward(prompt, first) - self.true_reward(prompt, second)
        if self.noise > 0:
            first_wins = torch.rand(count, generator=generator) < torch.sigmoid(margin / self.noise)
        else:
            first_wins = margin > 0
        chosen = torch.where(first_wins[:, None], first, second)
        rejected = torch.where(first_wins[:, None], second, first)
        if self.cue_strength > 0:
            on_chosen = (torch.rand(count, generator=generator) < self.cue_rate)[:, None]
            cue = self.cue_strength * self.cue_direction
            chosen = chosen + on_chosen * cue
            rejected = rejected + ~on_chosen * cue
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
