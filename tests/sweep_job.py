"""Run a sweep on synthetic separable pairs; the tune tests start it as a separate process.

    python tests/sweep_job.py STORAGE EVENTS NUM_SAMPLES MAX_EPOCHS [failing]

With "failing", half of the sampled dropout values are invalid, so those trials raise.
With "halving", successive halving stops weak trials (grace period 2 epochs, factor 2).
"""

from __future__ import annotations

import sys

import torch

from vrm.tune import run_sweep, trials_table

DIM = 16


def separable_pairs(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    direction = torch.zeros(DIM)
    direction[0] = 1.0
    prompt = torch.randn(n, DIM, generator=g)
    base = torch.randn(n, DIM, generator=g)
    noise = 0.8 * torch.randn(n, 1, generator=g)
    return {"prompt": prompt, "chosen": base + (0.5 + noise) * direction, "rejected": base - (0.5 + noise) * direction}


SETTINGS = {
    "metric": "validation_pair_nll",
    "asha": None,
    "max_failures": 0,
    "resources_per_trial": {"cpu": 1, "gpu": 0},
    "seed": 0,
    "spaces": {"bt": {"learning_rate": {"loguniform": [1e-4, 1e-2]}, "hidden": {"choice": [0, 32]}}},
}


def main() -> None:
    storage, events, num_samples, max_epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    settings = dict(SETTINGS, num_samples=num_samples)
    if len(sys.argv) > 5 and sys.argv[5] == "failing":
        space = dict(SETTINGS["spaces"]["bt"], dropout={"choice": [0.1, 2.0]}, hidden=32)
        settings["spaces"] = {"bt": space}
        settings["max_failures"] = 1
    if len(sys.argv) > 5 and sys.argv[5] == "halving":
        settings["asha"] = {"grace_period": 2, "reduction_factor": 2}
        settings["spaces"] = {"bt": dict(SETTINGS["spaces"]["bt"], hidden={"choice": [0, 256]})}
    results = run_sweep(
        "bt", separable_pairs(4000, 0), separable_pairs(1000, 1), settings,
        base_options={}, base_training={"max_epochs": max_epochs, "patience": max_epochs, "batch_size": 32},
        storage=storage, threads=2, events_path=events,
    )
    trials_table(results, "validation_pair_nll").to_csv(f"{storage}/trials.csv", index=False)
    print(f"finished {len(results)} trials, {results.num_errors} errors")


if __name__ == "__main__":
    main()
