"""Ablations of VRM, each the VRM head with one part switched off.

- `vrm-no-weights`: one objective with w fixed to 1, so the prompt sets no weights.
- `vrm-deterministic`: no sampling and no KL terms; the latents become plain layers.
- `vrm-no-feature-kl`: beta_z = 0, so the semantic features are not regularized.
"""

from __future__ import annotations

from dataclasses import dataclass

from vrm.methods.registry import register_method
from vrm.methods.vrm import VRM, VRMConfig


@dataclass
class NoWeightsConfig(VRMConfig):
    num_objectives: int = 1
    fixed_weights: bool = True


@register_method("vrm-no-weights")
class VRMNoWeights(VRM):
    Config = NoWeightsConfig
    summary = "VRM ablation: one objective with w fixed to 1 (no prompt-dependent weights)"


@dataclass
class DeterministicConfig(VRMConfig):
    deterministic: bool = True
    beta_w: float = 0.0
    beta_z: float = 0.0


@register_method("vrm-deterministic")
class VRMDeterministic(VRM):
    Config = DeterministicConfig
    summary = "VRM ablation: no sampling and no KL terms (latents become plain layers)"


@dataclass
class NoFeatureKLConfig(VRMConfig):
    beta_z: float = 0.0


@register_method("vrm-no-feature-kl")
class VRMNoFeatureKL(VRM):
    Config = NoFeatureKLConfig
    summary = "VRM ablation: beta_z = 0 (no KL on the semantic features)"
