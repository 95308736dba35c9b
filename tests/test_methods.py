"""Checks of the VRM head and the Bradley-Terry baseline."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vrm.methods import build_method
from vrm.methods.vrm import gaussian_kl
from vrm.train import TrainConfig, train_method

DIM = 16


def random_batch(n: int = 32, dim: int = DIM, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(n, dim, generator=g) for key in ("prompt", "chosen", "rejected")}


def separable_pairs(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Pairs where the chosen response is the rejected one moved along a fixed direction."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.zeros(DIM)
    direction[0] = 1.0
    prompt = torch.randn(n, DIM, generator=g)
    base = torch.randn(n, DIM, generator=g)
    return {"prompt": prompt, "chosen": base + 1.5 * direction, "rejected": base - 1.5 * direction}


def test_vrm_deterministic_limit_equals_bt():
    torch.manual_seed(0)
    vrm = build_method("vrm", DIM, {
        "num_objectives": 1, "num_features": 4, "fixed_weights": True, "deterministic": True,
        "beta_w": 0.0, "beta_z": 0.0, "dropout": 0.0,
    })
    vrm.eval()
    batch = random_batch()
    vrm_loss, _ = vrm.loss(batch, progress=1.0)

    # BT on the bottleneck features mu_z(h_xy), with the VRM decoder as its linear reward.
    bt = build_method("bt", 4, {"hidden": 0})
    with torch.no_grad():
        bt.head.weight.copy_(vrm.decoder.weight)
    bottleneck = {
        "prompt": batch["prompt"],
        "chosen": vrm.feature_posterior(batch["chosen"])[0],
        "rejected": vrm.feature_posterior(batch["rejected"])[0],
    }
    bt_loss, _ = bt.loss(bottleneck, progress=1.0)
    assert torch.allclose(vrm_loss, bt_loss, atol=1e-6)


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu = torch.tensor([0.5, -1.0, 2.0])
    logvar = torch.tensor([0.0, -1.0, 0.7])
    closed = gaussian_kl(mu, logvar).sum()

    samples = 400_000
    std = (0.5 * logvar).exp()
    z = mu + std * torch.randn(samples, 3)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    estimate = (log_q - log_p).mean()
    stderr = (log_q - log_p).std() / math.sqrt(samples)
    assert abs(float(estimate - closed)) < 4 * float(stderr)


def test_gaussian_kl_zero_at_prior():
    assert float(gaussian_kl(torch.zeros(5), torch.zeros(5)).sum()) == 0.0


@pytest.mark.parametrize("method", ["vrm", "bt"])
def test_gradients_reach_every_parameter(method):
    torch.manual_seed(0)
    model = build_method(method, DIM, {"dropout": 0.0})
    loss, _ = model.loss(random_batch(), progress=1.0)
    loss.backward()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue  # the VRM offset b is fixed at 0: it cancels in r+ - r-
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("method", ["vrm", "bt"])
def test_no_nan_with_extreme_inputs(method):
    torch.manual_seed(0)
    model = build_method(method, DIM, {})
    batch = random_batch()
    huge = {key: value * 1e4 for key, value in batch.items()}
    identical = {"prompt": batch["prompt"], "chosen": batch["chosen"], "rejected": batch["chosen"].clone()}
    for case in (huge, identical):
        loss, terms = model.loss(case, progress=1.0)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(math.isfinite(value) for value in terms.values())
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        probability = model.preference_probability(case, samples=8)
        assert torch.isfinite(probability).all()
        model.zero_grad()


def test_identical_responses_have_probability_half():
    torch.manual_seed(0)
    model = build_method("vrm", DIM, {}).eval()
    batch = random_batch()
    batch["rejected"] = batch["chosen"].clone()
    assert torch.allclose(model.preference_probability(batch), torch.full((32,), 0.5))


def test_kl_warmup_schedule():
    torch.manual_seed(0)
    model = build_method("vrm", DIM, {"kl_warmup": 0.2})
    batch = random_batch()
    assert model.loss(batch, progress=0.0)[1]["kl_anneal"] == 0.0
    assert model.loss(batch, progress=0.1)[1]["kl_anneal"] == pytest.approx(0.5)
    assert model.loss(batch, progress=0.5)[1]["kl_anneal"] == 1.0


def test_loss_terms_are_separate_and_weighted():
    torch.manual_seed(0)
    model = build_method("vrm", DIM, {"beta_w": 0.3, "beta_z": 0.7, "kl_warmup": 0.0, "dropout": 0.0})
    batch = random_batch()
    torch.manual_seed(1)
    loss, terms = model.loss(batch, progress=1.0)
    expected = terms["nll"] + 0.3 * terms["kl_w"] + 0.7 * terms["kl_z"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert terms["kl_w"] > 0
    assert terms["kl_z"] > 0


def test_monte_carlo_scoring_differs_from_posterior_mean():
    torch.manual_seed(0)
    mean_model = build_method("vrm", DIM, {"score_samples": 0}).eval()
    mc_model = build_method("vrm", DIM, {"score_samples": 64}).eval()
    mc_model.load_state_dict(mean_model.state_dict())
    batch = random_batch()
    by_mean = mean_model.reward(batch["prompt"], batch["chosen"])
    by_samples = mc_model.reward(batch["prompt"], batch["chosen"])
    assert by_mean.shape == by_samples.shape == (32,)
    assert not torch.allclose(by_mean, by_samples)
    # With the identity link, E[w . g(z)] = E[w] . E[g(z)], so a large MC mean approaches
    # the posterior-mean score when g is linear.
    big = build_method("vrm", DIM, {"score_samples": 100_000}).eval()
    big.load_state_dict(mean_model.state_dict())
    few = {key: value[:4] for key, value in batch.items()}
    assert torch.allclose(big.reward(few["prompt"], few["chosen"]), by_mean[:4], atol=0.03)


def test_simplex_link_gives_weights_on_simplex():
    torch.manual_seed(0)
    model = build_method("vrm", DIM, {"weight_link": "simplex", "num_objectives": 8}).eval()
    mu_w, _ = model.weight_posterior(random_batch()["prompt"])
    w = model._link(mu_w)
    assert torch.allclose(w.sum(-1), torch.ones(32), atol=1e-6)
    assert (w >= 0).all()


@pytest.mark.parametrize("method", ["vrm", "bt"])
def test_trainer_learns_separable_task(method):
    result = train_method(
        method, {}, separable_pairs(512, seed=0), separable_pairs(256, seed=1),
        TrainConfig(learning_rate=3e-3, max_epochs=40, patience=5, seed=0),
    )
    model = result.model
    test = separable_pairs(512, seed=2)
    with torch.no_grad():
        margin = model.reward(test["prompt"], test["chosen"]) - model.reward(test["prompt"], test["rejected"])
    accuracy = float((margin > 0).float().mean())
    assert accuracy > 0.95
    assert result.best_epoch >= 0
    assert result.history[0]["validation_loss"] > result.best_validation_loss


def test_training_is_deterministic():
    def fit():
        return train_method("vrm", {}, separable_pairs(128, 0), separable_pairs(64, 1),
                            TrainConfig(max_epochs=5, seed=3)).model.state_dict()

    first, second = fit(), fit()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_inactive_latents_reported_under_strong_kl():
    result = train_method(
        "vrm", {"beta_z": 50.0, "beta_w": 50.0, "kl_warmup": 0.0, "num_objectives": 4, "num_features": 4, "init_logvar": 0.0},
        separable_pairs(256, 0), separable_pairs(128, 1), TrainConfig(learning_rate=3e-3, max_epochs=30, seed=0),
    )
    report = result.report
    assert len(report["kl_per_dim_z"]) == 4
    assert len(report["inactive_z"]) >= 1
    assert set(report["inactive_z"]) <= set(range(4))


def test_unknown_method_and_option_are_rejected():
    from vrm.errors import UserError

    with pytest.raises(UserError, match="unknown method 'vmr'"):
        build_method("vmr", DIM, {})
    with pytest.raises(UserError, match="unknown option"):
        build_method("vrm", DIM, {"num_objectivs": 4})
