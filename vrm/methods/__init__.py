"""Reward-model methods: the registry and the VRM head."""

from vrm.methods.registry import (  # noqa: F401
    METHODS,
    RewardMethod,
    build_method,
    get_method,
    load_builtin_methods,
    load_plugins,
    register_method,
)
