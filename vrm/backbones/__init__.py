"""Frozen backbones, their pooled features for preference pairs, and an on-disk feature cache."""

from vrm.backbones.cache import CacheStats, FeatureCache, ShardError
from vrm.backbones.encoder import (
    DEFAULT_BACKBONE,
    Backbone,
    BackboneNotFoundError,
    Item,
    is_decoder_config,
    resolve_backbone,
)
from vrm.backbones.features import (
    PAIR_FEATURE_KEYS,
    FeatureFileError,
    build_pair_features,
    load_pair_features,
    save_pair_features,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "PAIR_FEATURE_KEYS",
    "Backbone",
    "BackboneNotFoundError",
    "CacheStats",
    "FeatureCache",
    "FeatureFileError",
    "Item",
    "ShardError",
    "build_pair_features",
    "is_decoder_config",
    "load_pair_features",
    "resolve_backbone",
    "save_pair_features",
]
