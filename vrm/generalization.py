"""PAC-Bayes certificates for trained reward heads, computed the same way for every method.

The stochastic predictor of a trained head with parameters theta_hat draws
theta ~ Q = N(theta_hat, s^2 I) over every trainable parameter, plus the method's own
latent noise (`RewardMethod.sample_margin`: VRM draws w and z), and predicts the chosen
response when its margin is positive. The prior is P = N(theta_0, s^2 I), where theta_0
is the initialization drawn from the training seed before any data is seen. The latent
noise has the same law under P and Q, so KL(Q || P) = ||theta_hat - theta_0||^2 / (2 s^2).
The scale s is picked from a fixed grid, paid for by a union bound (see vrm.bounds).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from vrm.bounds import certify
from vrm.methods.registry import Batch, RewardMethod

# Posterior standard deviations tried per model: a fixed grid, so the union bound pays ln(21).
DEFAULT_SCALES = tuple(float(s) for s in np.logspace(-4, 1, 21))


def trainable_state(model: RewardMethod) -> dict[str, torch.Tensor]:
    """Return a detached copy of the trainable parameters, by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def squared_distance(model: RewardMethod, initial: dict[str, torch.Tensor]) -> float:
    """Return ||theta_hat - theta_0||^2 over the trainable parameters."""
    total = 0.0
    for name, value in trainable_state(model).items():
        total += float((value.double() - initial[name].double()).pow(2).sum())
    return total


def error_rate(margin: torch.Tensor) -> float:
    """Return the pairwise 0-1 error: 1 for a negative margin, 1/2 for a tie."""
    return float(((margin < 0).double() + 0.5 * (margin == 0).double()).mean())


class _MarginCall(torch.nn.Module):
    """Wrap a method so that functional_call runs its sample_margin."""

    def __init__(self, model: RewardMethod):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.sample_margin(batch)


def gibbs_errors(model: RewardMethod, pairs: Batch, scale: float, repeats: int, seed: int,
                 batch_size: int = 256) -> np.ndarray:
    """Return 0-1 errors of predictors drawn from Q = N(theta_hat, s^2 I), one fresh draw per pair.

    The result has shape [repeats, N]: entry (j, i) is the error on pair i of its own draw
    theta ~ Q (with the method's latent noise). Draws are independent across entries, so the
    mean of all repeats * N entries estimates the Gibbs risk with repeats * N independent
    terms in [0, 1], which the Monte Carlo bound of vrm.bounds needs.
    """
    from torch.func import vmap

    model.eval()
    wrapper = _MarginCall(model)
    base = trainable_state(model)
    generator = torch.Generator().manual_seed(seed)
    # Latent noise inside sample_margin (VRM) draws from the global generator, so seed it too.
    torch.manual_seed(seed)

    def one_pair(params: dict[str, torch.Tensor], pair: Batch) -> torch.Tensor:
        single = {key: value.unsqueeze(0) for key, value in pair.items()}
        return functional_call(wrapper, params, (single,), strict=False)[0]

    margin_per_pair = vmap(one_pair, in_dims=(0, 0), randomness="different")
    count = pairs["chosen"].shape[0]
    errors = np.empty((repeats, count))
    with torch.no_grad():
        for repeat in range(repeats):
            for start in range(0, count, batch_size):
                chunk = {key: value[start:start + batch_size] for key, value in pairs.items()}
                size = chunk["chosen"].shape[0]
                params = {f"model.{name}": value + scale * torch.randn((size, *value.shape), generator=generator)
                          for name, value in base.items()}
                margin = margin_per_pair(params, chunk)
                errors[repeat, start:start + size] = ((margin < 0).double() + 0.5 * (margin == 0).double()).numpy()
    return errors


def certificate(model: RewardMethod, initial: dict[str, torch.Tensor], train_pairs: Batch, *,
                delta: float = 0.05, scales: tuple[float, ...] = DEFAULT_SCALES, repeats: int = 4,
                seed: int = 0, selection_pairs: int | None = 256) -> dict[str, Any]:
    """Return the certificate at the best scale of the grid, with the Gibbs risk and KL it used.

    The scale is chosen by the PAC-Bayes-kl bound computed on at most `selection_pairs`
    training pairs (all of them when None), which is cheaper than all n. The union bound
    over the grid makes any choice among its scales valid, and the certificate at the chosen
    scale then uses fresh draws on all n training pairs.
    """
    n = train_pairs["chosen"].shape[0]
    distance = squared_distance(model, initial)
    subset = train_pairs
    if selection_pairs is not None and n > selection_pairs:
        picked = torch.from_numpy(np.random.default_rng(seed).choice(n, selection_pairs, replace=False))
        subset = {key: value[picked] for key, value in train_pairs.items()}
    best_scale, best_bound = scales[0], float("inf")
    for index, scale in enumerate(scales):
        errors = gibbs_errors(model, subset, scale, repeats, seed + index)
        kl = distance / (2.0 * scale**2)
        bound = certify(float(errors.mean()), errors.size, kl, n, delta=delta, grid_size=len(scales)).bound_kl
        if bound < best_bound:
            best_scale, best_bound = scale, bound
    errors = gibbs_errors(model, train_pairs, best_scale, repeats, seed + len(scales))
    result = certify(float(errors.mean()), errors.size, distance / (2.0 * best_scale**2), n, delta=delta,
                     grid_size=len(scales))
    return {"scale": best_scale, "squared_distance": distance, **asdict(result)}


def gibbs_risk(model: RewardMethod, pairs: Batch, scale: float, repeats: int, seed: int) -> float:
    """Return the mean 0-1 error of draws from Q, one per pair and repeat, for example on held-out pairs."""
    return float(gibbs_errors(model, pairs, scale, repeats, seed).mean())
