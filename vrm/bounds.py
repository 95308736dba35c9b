"""PAC-Bayes bounds on the risk of a stochastic predictor, for losses in [0, 1].

Notation: n training pairs, empirical risk r_hat of the posterior Q (the Gibbs risk, the
expected 0-1 error of a predictor drawn from Q), KL = KL(Q || P) in nats for a prior P
chosen before seeing the training pairs, confidence 1 - delta.

- PAC-Bayes-kl (Seeger 2002; Maurer 2004, arXiv cs/0411099): with probability at least
  1 - delta, for every Q, kl(r_hat || R) <= (KL + ln(2 sqrt(n) / delta)) / n, where kl is
  the binary KL divergence. The bound on R is the upper inverse of kl.
- McAllester (1999) in Maurer's form: R <= r_hat + sqrt((KL + ln(2 sqrt(n) / delta)) / (2n)),
  which follows from the kl form by Pinsker's inequality.
- The lambda bound (Thiemann, Igel, Wintenberger and Seldin 2017, arXiv 1608.05610):
  R <= r_hat / (1 - lambda / 2) + (KL + ln(2 sqrt(n) / delta)) / (lambda (1 - lambda / 2) n),
  for every lambda in (0, 2) at once, minimised in closed form here.
- Monte Carlo Gibbs risk (Perez-Ortiz, Rivasplata, Shawe-Taylor and Szepesvari 2021,
  arXiv 2007.12911): r_hat is estimated from m predictors drawn from Q, and with
  probability at least 1 - delta_mc, r_hat <= kl^-1(r_hat_m, ln(2 / delta_mc) / m).
- A grid of G posterior scales is paid for by a union bound: each bound of the grid is
  taken at delta / G.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

# Halvings of [0, 1] in the bisection. After 60 the interval is 2^-60 wide, below the float64 spacing near 1.
BISECTION_STEPS = 60


def binary_kl(q: float, p: float) -> float:
    """Return kl(q || p) = q ln(q / p) + (1 - q) ln((1 - q) / (1 - p)), with 0 ln 0 = 0.

    >>> round(binary_kl(0.1, 0.5), 6)
    0.368064
    """
    _check_probability("q", q)
    _check_probability("p", p)
    total = 0.0
    for a, b in ((q, p), (1.0 - q, 1.0 - p)):
        if a > 0.0:
            if b <= 0.0:
                return math.inf
            total += a * math.log(a / b)
    return max(total, 0.0)


def kl_inverse_upper(q: float, bound: float) -> float:
    """Return the largest p in [q, 1] with kl(q || p) <= bound, by bisection.

    A negative bound is invalid; bound 0 gives q; a bound at or above kl(q || 1) gives 1.

    >>> round(kl_inverse_upper(0.0, math.log(2)), 6)  # kl(0 || p) = -ln(1 - p)
    0.5
    """
    _check_probability("q", q)
    if bound < 0 or math.isnan(bound):
        raise ValueError(f"bound must be a non-negative number, got {bound}")
    if q >= 1.0 or binary_kl(q, 1.0) <= bound:
        return 1.0
    low, high = q, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if binary_kl(q, middle) > bound:
            high = middle
        else:
            low = middle
    return high


def kl_inverse_lower(q: float, bound: float) -> float:
    """Return the smallest p in [0, q] with kl(q || p) <= bound, by bisection."""
    return 1.0 - kl_inverse_upper(1.0 - q, bound)


def _complexity(kl: float, n: int, delta: float) -> float:
    """Return KL + ln(2 sqrt(n) / delta), the numerator shared by the bounds below."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if kl < 0 or math.isnan(kl):
        raise ValueError(f"KL must be a non-negative number, got {kl}")
    return kl + math.log(2.0 * math.sqrt(n) / delta)


def seeger_bound(risk: float, kl: float, n: int, delta: float) -> float:
    """Return the PAC-Bayes-kl bound kl^-1(risk, (KL + ln(2 sqrt(n) / delta)) / n)."""
    return kl_inverse_upper(risk, _complexity(kl, n, delta) / n)


def mcallester_bound(risk: float, kl: float, n: int, delta: float) -> float:
    """Return risk + sqrt((KL + ln(2 sqrt(n) / delta)) / (2n)), capped at 1."""
    _check_probability("risk", risk)
    return min(1.0, risk + math.sqrt(_complexity(kl, n, delta) / (2.0 * n)))


def lambda_bound(risk: float, kl: float, n: int, delta: float) -> float:
    """Return the lambda bound of Thiemann et al. (2017) at its best lambda in (0, 2), capped at 1.

    The minimiser is lambda* = 2 / (sqrt(2 n risk / C + 1) + 1) with C = KL + ln(2 sqrt(n) / delta).
    """
    _check_probability("risk", risk)
    complexity = _complexity(kl, n, delta)
    lam = 2.0 / (math.sqrt(2.0 * n * risk / complexity + 1.0) + 1.0)
    value = risk / (1.0 - lam / 2.0) + complexity / (lam * (1.0 - lam / 2.0) * n)
    return min(1.0, value)


def monte_carlo_risk_bound(sampled_risk: float, samples: int, delta: float) -> float:
    """Return an upper bound on the Gibbs risk from its estimate over `samples` predictors.

    With probability at least 1 - delta over the draws, the Gibbs risk is at most
    kl^-1(sampled_risk, ln(2 / delta) / samples).
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return kl_inverse_upper(sampled_risk, math.log(2.0 / delta) / samples)


@dataclass
class Certificate:
    """Bounds on the true risk of one posterior, with what went into them."""

    risk_estimate: float  # Gibbs risk on the training pairs, averaged over the sampled predictors
    risk_upper: float  # the Monte Carlo upper bound on that risk, used by every bound below
    kl: float
    n: int
    delta: float  # total confidence budget: 1 - delta
    grid_size: int
    bound_kl: float
    bound_mcallester: float
    bound_lambda: float


def certify(sampled_risk: float, samples: int, kl: float, n: int, delta: float = 0.05, grid_size: int = 1,
            monte_carlo_share: float = 0.5) -> Certificate:
    """Bound the Gibbs risk of a posterior picked from a grid of `grid_size` candidates.

    The confidence budget delta is split: `monte_carlo_share` of it bounds the Monte Carlo
    error of the risk estimate, the rest goes to the PAC-Bayes bound, divided by the grid
    size for the union bound. Every bound then holds with probability at least 1 - delta.
    """
    if grid_size < 1:
        raise ValueError(f"grid_size must be at least 1, got {grid_size}")
    if not 0.0 < monte_carlo_share < 1.0:
        raise ValueError(f"monte_carlo_share must be in (0, 1), got {monte_carlo_share}")
    risk_upper = monte_carlo_risk_bound(sampled_risk, samples, delta * monte_carlo_share)
    bound_delta = delta * (1.0 - monte_carlo_share) / grid_size
    return Certificate(
        risk_estimate=sampled_risk, risk_upper=risk_upper, kl=kl, n=n, delta=delta, grid_size=grid_size,
        bound_kl=seeger_bound(risk_upper, kl, n, bound_delta),
        bound_mcallester=mcallester_bound(risk_upper, kl, n, bound_delta),
        bound_lambda=lambda_bound(risk_upper, kl, n, bound_delta),
    )


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
