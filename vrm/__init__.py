"""vrm-bench: Variational Reward Modeling and baselines on shared preference benchmarks."""

__version__ = "0.1.0"
