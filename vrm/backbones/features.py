"""Frozen backbone features for preference pairs, and their safetensors files.

For a pair (x, y_chosen, y_rejected) the reward heads get three vectors:

- ``prompt``: h_x, the pooled encoding of the prompt x alone.
- ``chosen`` and ``rejected``: h_xy, the pooled encoding of the text pair (x, y) for that
  response. The prompt and response are encoded together, not separately, so every
  response token attends to the prompt and h_xy represents the response in the context
  of the prompt. A reward is a function of both, and a response vector encoded on its
  own could not tell "correct answer to this question" from "correct answer to another".

h_x is kept as well because heads can use it as a prompt-only baseline (for example,
features such as h_xy - h_x, or a prompt-dependent prior as in variational reward
models). When x + y is longer than ``max_length`` tokens, the pair is truncated with
``longest_first``, so the longer part loses tokens from its end first and both the
prompt and the response keep their beginnings (see ``vrm.backbones.encoder``).

All prompts and (prompt, response) pairs go through one lookup, so every distinct text
or text pair is encoded once even when prompts repeat across pairs.

Files written by ``save_pair_features`` contain each distinct feature row once
(``rows``, float32 [U, D]) and an int64 index per key (``<key>_index``, [N]);
``load_pair_features`` expands them back to [N, D] tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
from pathlib import Path

import safetensors
from safetensors import safe_open
import safetensors.torch
import torch

from vrm.backbones.cache import FeatureCache, write_atomic
from vrm.backbones.encoder import Backbone

PAIR_FEATURE_KEYS = ("prompt", "chosen", "rejected")
FEATURES_FORMAT = "vrm-pair-features/1"
# Metadata keys that the file format uses itself; callers cannot set them.
RESERVED_METADATA = ("vrm_format", "vrm_keys")


class FeatureFileError(ValueError):
    """A pair-feature file that cannot be read or does not follow the expected layout."""


def build_pair_features(
    prompts: Sequence[str],
    chosen: Sequence[str],
    rejected: Sequence[str],
    backbone: Backbone,
    cache: FeatureCache | None = None,
    max_length: int = 256,
    batch_size: int = 32,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Encode N preference pairs into h_x and h_xy features.

    Returns ``{"prompt": [N, D], "chosen": [N, D], "rejected": [N, D]}`` in float32.
    With a ``cache``, only items missing from it are encoded; without one, every
    distinct item is encoded once.
    """
    count = len(prompts)
    if len(chosen) != count or len(rejected) != count:
        raise ValueError(
            f"prompts, chosen and rejected must have the same length, got {count}, {len(chosen)} and {len(rejected)}"
        )
    for name, column in (("prompts", prompts), ("chosen", chosen), ("rejected", rejected)):
        for index, text in enumerate(column):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{index}] has type {type(text).__name__}, expected str")

    items: list[str | tuple[str, str]] = list(prompts)
    items += [(prompt, response) for prompt, response in zip(prompts, chosen)]
    items += [(prompt, response) for prompt, response in zip(prompts, rejected)]

    options = {"max_length": max_length, "batch_size": batch_size, "threads": threads, "progress": progress}
    if cache is None:
        encoded = backbone.encode(items, **options)
    else:
        encoded = cache.get_or_encode(backbone, items, **options)

    return {
        "prompt": encoded[:count],
        "chosen": encoded[count : 2 * count],
        "rejected": encoded[2 * count :],
    }


def save_pair_features(path: str | Path, features: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write features ([N, D] float32 tensors with equal shapes) and string metadata atomically.

    Identical rows across all keys are stored once, which matters when prompts repeat.
    """
    if not features:
        raise ValueError("features is empty: expected tensors such as 'prompt', 'chosen' and 'rejected'")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key in RESERVED_METADATA:
            raise ValueError(f"metadata key {key!r} is reserved by the file format")

    keys = list(features)
    shape = None
    for key in keys:
        tensor = features[key]
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
            raise ValueError(f"features[{key!r}] must be a 2-D tensor [N, D]")
        if shape is None:
            shape = tuple(tensor.shape)
        if tuple(tensor.shape) != shape:
            raise ValueError(f"features[{key!r}] has shape {list(tensor.shape)}, expected {list(shape)}, the shape of {keys[0]!r}")

    stacked = torch.cat([features[key].detach().to("cpu", torch.float32) for key in keys]).contiguous()
    # Compare rows bit for bit (as int32), so -0.0 and NaN payloads are stored unchanged.
    unique_bits, inverse = torch.unique(stacked.view(torch.int32), dim=0, return_inverse=True)
    rows = unique_bits.view(torch.float32)
    count = shape[0]
    tensors = {"rows": rows.contiguous()}
    for position, key in enumerate(keys):
        tensors[f"{key}_index"] = inverse[position * count : (position + 1) * count].to(torch.int64).contiguous()

    file_metadata = dict(metadata)
    file_metadata["vrm_format"] = FEATURES_FORMAT
    file_metadata["vrm_keys"] = json.dumps(keys)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, safetensors.torch.save(tensors, metadata=file_metadata))


def load_pair_features(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by ``save_pair_features`` and return its [N, D] tensors and metadata."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except safetensors.SafetensorError as error:
        raise FeatureFileError(f"{path}: not a readable safetensors file ({error}). Rebuild the features") from error

    if metadata.get("vrm_format") != FEATURES_FORMAT:
        raise FeatureFileError(
            f"{path}: format {metadata.get('vrm_format')!r}, expected {FEATURES_FORMAT!r}. Rebuild the features"
        )
    try:
        keys = json.loads(metadata["vrm_keys"])
    except (KeyError, json.JSONDecodeError) as error:
        raise FeatureFileError(f"{path}: missing or invalid 'vrm_keys' metadata. Rebuild the features") from error

    rows = tensors.get("rows")
    if rows is None or rows.dim() != 2 or rows.dtype != torch.float32:
        raise FeatureFileError(f"{path}: missing or invalid 'rows' tensor (expected float32 [U, D])")

    features = {}
    for key in keys:
        index = tensors.get(f"{key}_index")
        if index is None or index.dim() != 1 or index.dtype != torch.int64:
            raise FeatureFileError(f"{path}: missing or invalid '{key}_index' tensor (expected int64 [N])")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= rows.shape[0]):
            raise FeatureFileError(f"{path}: '{key}_index' points outside the {rows.shape[0]} stored rows")
        features[key] = rows[index]

    for reserved in RESERVED_METADATA:
        metadata.pop(reserved, None)
    return features, metadata
