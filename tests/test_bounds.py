"""PAC-Bayes bounds: the binary kl and its inverses, the bound forms, and their coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vrm.bounds import (
    binary_kl, certify, kl_inverse_lower, kl_inverse_upper, lambda_bound, mcallester_bound,
    monte_carlo_risk_bound, seeger_bound,
)


def test_binary_kl_known_values():
    assert binary_kl(0.1, 0.5) == pytest.approx(0.1 * math.log(0.2) + 0.9 * math.log(1.8))
    assert binary_kl(0.3, 0.3) == 0.0
    assert binary_kl(0.0, 0.5) == pytest.approx(math.log(2))
    assert binary_kl(1.0, 0.5) == pytest.approx(math.log(2))
    assert binary_kl(0.2, 0.0) == math.inf
    assert binary_kl(0.2, 1.0) == math.inf


@pytest.mark.parametrize("bound", [1e-6, 0.01, 0.5, 3.0])
def test_kl_inverse_at_risk_zero(bound):
    # kl(0 || p) = -ln(1 - p), so the inverse is 1 - exp(-bound).
    assert kl_inverse_upper(0.0, bound) == pytest.approx(1.0 - math.exp(-bound), abs=1e-12)


@pytest.mark.parametrize("q", [0.0, 0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("bound", [0.001, 0.05, 0.4])
def test_kl_inverse_solves_the_equation(q, bound):
    upper = kl_inverse_upper(q, bound)
    assert upper >= q
    if upper < 1.0:
        assert binary_kl(q, upper) == pytest.approx(bound, rel=1e-9, abs=1e-12)
    lower = kl_inverse_lower(q, bound)
    assert lower <= q
    if lower > 0.0:
        assert binary_kl(q, lower) == pytest.approx(bound, rel=1e-9, abs=1e-12)


def test_kl_inverse_edge_cases():
    assert kl_inverse_upper(0.25, 0.0) == pytest.approx(0.25)
    assert kl_inverse_upper(1.0, 0.1) == 1.0
    assert kl_inverse_upper(0.1, 1e9) == 1.0
    assert kl_inverse_lower(0.0, 0.3) == 0.0
    assert kl_inverse_lower(0.9, 1e9) == 0.0
    with pytest.raises(ValueError, match="bound"):
        kl_inverse_upper(0.1, -0.1)
    with pytest.raises(ValueError, match="q must be in"):
        kl_inverse_upper(1.5, 0.1)


def test_huge_kl_gives_vacuous_bound():
    for bound in (seeger_bound, mcallester_bound, lambda_bound):
        assert bound(0.1, 1e12, 1000, 0.05) == 1.0


def test_invalid_arguments_named():
    with pytest.raises(ValueError, match="n must be"):
        seeger_bound(0.1, 1.0, 0, 0.05)
    with pytest.raises(ValueError, match="delta"):
        seeger_bound(0.1, 1.0, 100, 1.0)
    with pytest.raises(ValueError, match="KL"):
        seeger_bound(0.1, -1.0, 100, 0.05)


def test_kl_form_is_the_tightest():
    for risk in np.linspace(0.0, 0.6, 13):
        for kl in (0.0, 1.0, 30.0, 500.0):
            for n in (125, 1000, 20000):
                kl_form = seeger_bound(risk, kl, n, 0.05)
                assert kl_form >= risk
                assert mcallester_bound(risk, kl, n, 0.05) >= kl_form - 1e-9
                assert lambda_bound(risk, kl, n, 0.05) >= kl_form - 1e-9


def test_bounds_shrink_with_n():
    values = [seeger_bound(0.2, 10.0, n, 0.05) for n in (125, 250, 500, 1000, 2000)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_kl_bound_coverage_fixed_predictor():
    """With KL = 0 (posterior = prior) the bound must hold in at least 1 - delta of the draws."""
    rng = np.random.default_rng(0)
    true_risk, n, delta, draws = 0.3, 200, 0.05, 4000
    errors = rng.binomial(n, true_risk, size=draws) / n
    failures = sum(seeger_bound(float(e), 0.0, n, delta) < true_risk for e in errors)
    assert failures / draws <= delta


def test_monte_carlo_bound_coverage():
    rng = np.random.default_rng(1)
    gibbs_risk, samples, delta, draws = 0.25, 50, 0.05, 4000
    estimates = rng.binomial(samples, gibbs_risk, size=draws) / samples
    failures = sum(monte_carlo_risk_bound(float(e), samples, delta) < gibbs_risk for e in estimates)
    assert failures / draws <= delta


def test_certificate_pays_for_grid():
    single = certify(0.2, 1000, 5.0, 2000, delta=0.05, grid_size=1)
    grid = certify(0.2, 1000, 5.0, 2000, delta=0.05, grid_size=16)
    assert single.risk_upper > 0.2
    assert grid.bound_kl > single.bound_kl
    assert single.bound_kl <= single.bound_lambda
    assert single.bound_kl <= single.bound_mcallester
