"""Every registered method: its loss against a value computed by hand, and learning a separable task."""

from __future__ import annotations

import math

import pytest
import torch

from vrm.methods import METHODS, build_method, load_builtin_methods
from vrm.train import TrainConfig, train_method

DIM = 16
EXPECTED_METHODS = {
    "bt", "bt-margin", "bt-center", "bt-smooth", "inform", "armo", "odin", "ensemble",
    "ensemble-conservative", "gaussian", "vrm", "vrm-no-weights", "vrm-deterministic", "vrm-no-feature-kl",
}


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def tiny_batch() -> dict[str, torch.Tensor]:
    """One pair whose first feature is 2 for the chosen response and 1 for the rejected one."""
    return {
        "prompt": torch.tensor([[0.0, 0.0]]),
        "chosen": torch.tensor([[2.0, 0.0]]),
        "rejected": torch.tensor([[1.0, 0.0]]),
        "chosen_length": torch.tensor([5.0]),
        "rejected_length": torch.tensor([3.0]),
    }


def linear_reward(method: str, **options):
    """A linear-reward method with reward r = first feature."""
    model = build_method(method, 2, {"hidden": 0, **options})
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 0.0]]))
    return model


def test_every_method_is_registered():
    load_builtin_methods()
    assert EXPECTED_METHODS <= set(METHODS)


@pytest.mark.parametrize(
    ("method", "options", "expected"),
    [
        ("bt", {}, softplus(-1.0)),
        ("bt-margin", {"margin": 0.5}, softplus(-0.5)),
        ("bt-center", {"centering": 0.1}, softplus(-1.0) + 0.1 * (2.0 + 1.0) ** 2),
        ("bt-smooth", {"label_smoothing": 0.1}, 0.9 * softplus(-1.0) + 0.1 * softplus(1.0)),
    ],
)
def test_bt_family_loss_by_hand(method, options, expected):
    loss, _ = linear_reward(method, **options).loss(tiny_batch(), progress=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bt_margin_uses_margin_from_batch():
    batch = dict(tiny_batch(), margin=torch.tensor([2.0]))
    loss, _ = linear_reward("bt-margin", margin=0.5).loss(batch, progress=1.0)
    assert loss.item() == pytest.approx(softplus(1.0), rel=1e-6)


def test_gaussian_loss_by_hand():
    model = build_method("gaussian", 2, {"hidden": 0, "min_variance": 0.0})
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        model.head.bias.copy_(torch.tensor([0.0, math.log(math.exp(0.5) - 1.0)]))  # softplus -> 0.5
    loss, _ = model.loss(tiny_batch(), progress=1.0)
    phi = 0.5 * (1.0 + math.erf(1.0 / math.sqrt(2.0)))  # margin 1 over sqrt(0.5 + 0.5)
    assert loss.item() == pytest.approx(-math.log(phi), rel=1e-6)
    assert model.preference_probability(tiny_batch()).item() == pytest.approx(phi, rel=1e-6)


def test_ensemble_loss_and_conservative_score_by_hand():
    model = build_method("ensemble", 2, {"hidden": 0, "members": 2})
    conservative = build_method("ensemble-conservative", 2, {"hidden": 0, "members": 2, "conservative_k": 1.0})
    for m in (model, conservative):
        with torch.no_grad():
            m.heads[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
            m.heads[1].weight.copy_(torch.tensor([[2.0, 0.0]]))
    loss, _ = model.loss(tiny_batch(), progress=1.0)
    assert loss.item() == pytest.approx((softplus(-1.0) + softplus(-2.0)) / 2, rel=1e-6)
    chosen = tiny_batch()["chosen"]
    assert model.reward(None, chosen).item() == pytest.approx(3.0)  # members give 2 and 4
    assert conservative.reward(None, chosen).item() == pytest.approx(2.0)  # 3 - 1 * std 1


def test_armo_loss_by_hand():
    model = build_method("armo", 2, {"hidden": 0, "num_objectives": 2})
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # gating (0.25, 0.75)
        model.objectives.weight.copy_(torch.eye(2))
    batch = {"prompt": torch.zeros(1, 2), "chosen": torch.tensor([[2.0, 1.0]]), "rejected": torch.tensor([[1.0, 1.0]])}
    loss, _ = model.loss(batch, progress=1.0)
    assert loss.item() == pytest.approx(softplus(-0.25), rel=1e-6)


def test_odin_loss_by_hand():
    model = build_method("odin", 2, {"hidden": 0})
    with torch.no_grad():
        model.quality.weight.copy_(torch.tensor([[1.0, 0.0]]))
        model.length.weight.copy_(torch.tensor([[0.0, 1.0]]))
    batch = {
        "prompt": torch.zeros(2, 2),
        "chosen": torch.tensor([[2.0, 3.0], [1.0, 1.0]]),
        "rejected": torch.tensor([[1.0, 1.0], [0.0, 2.0]]),
        "chosen_length": torch.tensor([3.0, 1.0]),
        "rejected_length": torch.tensor([1.0, 2.0]),
    }
    loss, terms = model.loss(batch, progress=1.0)
    nll = (softplus(-3.0) + math.log(2.0)) / 2  # margins 3 and 0
    # Quality outputs (2, 1, 1, 0) against lengths (3, 1, 1, 2): covariance sum 1.
    rho_quality = 1.0 / (math.sqrt(2.0) * math.sqrt(2.75))
    assert terms["rho_length_head"] == pytest.approx(1.0, abs=1e-6)  # length head equals the lengths
    assert loss.item() == pytest.approx(nll + rho_quality, rel=1e-5)
    # The quality head alone scores responses.
    assert model.reward(None, batch["chosen"]).tolist() == [2.0, 1.0]


def test_inform_kl_and_likelihood_by_hand():
    model = build_method("inform", 2, {"hidden": 0, "latent": 1, "beta": 1.0})
    with torch.no_grad():
        model.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # mu = first feature
        model.encoder.bias.zero_()  # log-variance 0
        model.decoder.weight.zero_()  # every reward 0, so the likelihood term is log 2
    loss, terms = model.loss(tiny_batch(), progress=1.0)
    assert terms["kl"] == pytest.approx(0.5 * 2.0**2 + 0.5 * 1.0**2)
    assert terms["nll"] == pytest.approx(math.log(2.0))
    assert loss.item() == pytest.approx(math.log(2.0) + 2.5, rel=1e-6)


def test_vrm_kl_terms_by_hand():
    model = build_method("vrm", 2, {"hidden": 1, "num_objectives": 1, "num_features": 1, "dropout": 0.0,
                                      "beta_w": 1.0, "beta_z": 1.0, "kl_warmup": 0.0})
    with torch.no_grad():
        for encoder in (model.weight_encoder, model.feature_encoder):
            encoder[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
            encoder[0].bias.zero_()
            encoder[-1].weight.copy_(torch.tensor([[1.0], [0.0]]))  # mu = GELU(first feature)
            encoder[-1].bias.zero_()  # log-variance 0
        model.decoder.weight.zero_()
    loss, terms = model.loss(tiny_batch(), progress=1.0)
    gelu = torch.nn.functional.gelu
    mu_c, mu_r = gelu(torch.tensor(2.0)).item(), gelu(torch.tensor(1.0)).item()
    assert terms["kl_w"] == pytest.approx(0.0)  # the prompt features are 0, so mu_w = 0
    assert terms["kl_z"] == pytest.approx(0.5 * mu_c**2 + 0.5 * mu_r**2, rel=1e-6)
    assert terms["nll"] == pytest.approx(math.log(2.0))
    assert loss.item() == pytest.approx(math.log(2.0) + terms["kl_z"], rel=1e-6)


def test_vrm_ablation_defaults():
    assert build_method("vrm-no-weights", DIM).config.num_objectives == 1
    assert build_method("vrm-no-weights", DIM).config.fixed_weights
    deterministic = build_method("vrm-deterministic", DIM).config
    assert deterministic.deterministic
    assert deterministic.beta_w == 0
    assert deterministic.beta_z == 0
    assert build_method("vrm-no-feature-kl", DIM).config.beta_z == 0


def test_vrm_no_feature_kl_ignores_feature_kl():
    torch.manual_seed(0)
    model = build_method("vrm-no-feature-kl", DIM, {"kl_warmup": 0.0, "dropout": 0.0, "init_logvar": 0.0})
    g = torch.Generator().manual_seed(0)
    batch = {key: torch.randn(8, DIM, generator=g) for key in ("prompt", "chosen", "rejected")}
    loss, terms = model.loss(batch, progress=1.0)
    assert terms["kl_z"] > 0
    assert loss.item() == pytest.approx(terms["nll"] + model.config.beta_w * terms["kl_w"], rel=1e-5)


def separable_pairs(n: int, seed: int) -> dict[str, torch.Tensor]:
    """The chosen response is the rejected one moved along a fixed direction; it is also longer."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.zeros(DIM)
    direction[0] = 1.0
    base = torch.randn(n, DIM, generator=g)
    lengths = torch.randint(20, 200, (n,), generator=g).float()
    return {
        "prompt": torch.randn(n, DIM, generator=g),
        "chosen": base + 1.5 * direction,
        "rejected": base - 1.5 * direction,
        "chosen_length": lengths + 10,
        "rejected_length": lengths,
    }


@pytest.mark.parametrize("method", sorted(EXPECTED_METHODS))
def test_method_learns_separable_task(method):
    result = train_method(
        method, {}, separable_pairs(512, 0), separable_pairs(256, 1),
        TrainConfig(learning_rate=3e-3, max_epochs=40, patience=5, seed=0),
    )
    test = separable_pairs(512, 2)
    with torch.no_grad():
        margin = result.model.reward(test["prompt"], test["chosen"]) - result.model.reward(test["prompt"], test["rejected"])
        probability = result.model.preference_probability(test)
    assert (margin > 0).float().mean().item() > 0.95
    assert torch.isfinite(probability).all()
    assert probability.mean().item() > 0.7


@pytest.mark.parametrize("method", sorted(EXPECTED_METHODS | {"grm"}))
def test_methods_that_skip_the_prompt_never_read_it(method):
    """Fine-tune mode passes zeros as h_x to methods with reads_prompt False; their loss and reward must not change."""
    model = build_method(method, DIM, {}).eval()
    batch = separable_pairs(64, 3)
    batch["sft_nll"] = torch.tensor(1.5)
    other = dict(batch, prompt=torch.zeros_like(batch["prompt"]))
    with torch.no_grad():
        torch.manual_seed(0)
        loss, _ = model.loss(batch, progress=1.0)
        reward = model.reward(batch["prompt"], batch["chosen"])
        torch.manual_seed(0)
        other_loss, _ = model.loss(other, progress=1.0)
        other_reward = model.reward(other["prompt"], other["chosen"])
    same = torch.equal(reward, other_reward) and torch.equal(loss, other_loss)
    assert same == (not model.reads_prompt), f"{method}: reads_prompt is {model.reads_prompt}"


def one_unit_vrm(method: str, **options):
    """A VRM-family head with K = d = 1 whose posterior means are GELU of the first feature."""
    model = build_method(method, 2, {"hidden": 1, "num_objectives": 1, "num_features": 1, "dropout": 0.0,
                                     "kl_warmup": 0.0, **options})
    with torch.no_grad():
        for encoder in (model.weight_encoder, model.feature_encoder):
            encoder[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
            encoder[0].bias.zero_()
            encoder[-1].weight.copy_(torch.tensor([[1.0], [0.0]]))
            encoder[-1].bias.zero_()  # log-variance 0
        model.decoder.weight.fill_(1.0)
    return model


def test_vrm_deterministic_loss_by_hand():
    model = one_unit_vrm("vrm-deterministic")
    batch = dict(tiny_batch(), prompt=torch.tensor([[1.0, 0.0]]))
    loss, terms = model.loss(batch, progress=1.0)
    gelu = torch.nn.functional.gelu
    w = gelu(torch.tensor(1.0)).item()
    margin = w * (gelu(torch.tensor(2.0)).item() - gelu(torch.tensor(1.0)).item())
    assert loss.item() == pytest.approx(softplus(-margin), rel=1e-6)
    assert terms["kl_w"] == 0.0
    assert terms["kl_z"] == 0.0


def test_vrm_no_weights_loss_by_hand():
    model = one_unit_vrm("vrm-no-weights", beta_z=1.0)
    with torch.no_grad():
        model.decoder.weight.zero_()  # every reward 0, so the likelihood term is log 2
    loss, terms = model.loss(dict(tiny_batch(), prompt=torch.tensor([[1.0, 0.0]])), progress=1.0)
    gelu = torch.nn.functional.gelu
    kl_z = 0.5 * gelu(torch.tensor(2.0)).item() ** 2 + 0.5 * gelu(torch.tensor(1.0)).item() ** 2
    assert terms["kl_w"] == 0.0  # w is fixed to 1, so it has no KL
    assert terms["kl_z"] == pytest.approx(kl_z, rel=1e-6)
    assert loss.item() == pytest.approx(math.log(2.0) + kl_z, rel=1e-6)
