"""Building blocks shared by method heads."""

from __future__ import annotations

from torch import nn


def mlp(input_dim: int, hidden: int, output_dim: int, dropout: float = 0.0, output_bias: bool = True) -> nn.Module:
    """Build a one-hidden-layer GELU MLP, or a single linear layer when `hidden` is 0."""
    if hidden <= 0:
        return nn.Linear(input_dim, output_dim, bias=output_bias)
    return nn.Sequential(
        nn.Linear(input_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, output_dim, bias=output_bias),
    )
