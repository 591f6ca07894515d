"""Maximum-likelihood fit of a truncated power law to weight magnitudes.

The initialiser rests on an empirical claim (docs/spec.md §2): the magnitudes ``y = |w|`` of
trained CNN weights follow, above some cut-off, a truncated power law

    p(y) = y**(-alpha) / Z(alpha, low, high),    low <= y <= high,
    Z    = integral_low^high y**(-alpha) dy.

This module estimates ``alpha``, ``low`` and ``high`` from a tensor (or layer by layer
from a state_dict) and says how well the law describes the data.

Estimator, with ``t = ln(y / low)``, ``L = ln(high / low)``, ``b = 1 - alpha`` and
``z = b·L``:

* ``high`` is the sample maximum: ``Z`` grows with ``high``, so the likelihood is largest
  for the smallest ``high`` that still covers every sample (the MLE of an upper end
  point, as for a uniform distribution). It falls short of the true end point by about
  ``1 / (n·p(high))``, a relative ``1/(n·(alpha−1))·r^(alpha−1)`` for alpha > 1.
* ``t`` has density ``∝ exp(b·t)`` on ``[0, L]``, a tilted uniform. Its log-likelihood
  over the ``n`` tail samples is

      l(b) = b·Σt − Σ ln y − n·(b·ln low + ln L + ln E(z)),    E(z) = expm1(z) / z,

  concave in ``b``. The score equation ``∂l/∂b = 0`` reads ``mean(t) / L = g(z)`` with
  ``g(z) = 1/(1 − e^−z) − 1/z``, the mean of the tilted uniform on ``[0, 1]``
  (``g(0) = 1/2``); it is solved for ``z`` by safeguarded Newton, and
  ``alpha = 1 − z / L``.
* Observed (= expected, this is an exponential family) Fisher information
  ``I = −∂²l/∂b² = n·L²·g'(z)`` with ``g'(z) = 1/z² − 1/(4·sinh²(z/2))``
  (``g'(0) = 1/12``), so ``se(alpha) = 1 / sqrt(n·L²·g'(z))``, conditional on ``low``
  and ``high``.
* ``low`` is the candidate cut-off (a quantile of ``|w|``) whose tail fit has the
  smallest Kolmogorov–Smirnov distance ``D = sup |F_n(y) − F(y)|`` between the empirical
  and the fitted CDF ``F(y) = expm1(z·s) / expm1(z)``, ``s = t / L`` (Clauset, Shalizi &
  Newman, SIAM Review 51:661, 2009).
* The tail is compared with a half-normal of the same support (density
  ``∝ exp(−y²/(2σ²))`` on ``[low, high]``, ``σ`` by maximum likelihood) through the
  log-likelihood ratio ``R = Σ (l_PL,i − l_N,i)``; ``R / (σ_R·sqrt(n))`` is Vuong's
  normalised statistic, ``p = erfc(|R| / (σ_R·sqrt(2n)))`` its two-sided p-value
  (``σ_R`` the standard deviation of the pointwise differences). ``R > 0`` with small
  ``p`` favours the power law.
* For comparison with the paper's method, the slope of a least-squares line through the
  log-log empirical density of the tail (log-spaced bins, empty bins dropped) is
  reported too; it estimates ``−alpha`` and is biased where bins are sparse.

All arithmetic is float64 torch on the CPU, vectorised over samples and over candidate
cut-offs: one sort, one cumulative sum, one pass per candidate for the KS distance.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any, overload

import numpy as np
import torch

from .weights import load_weights

__all__ = ["DEFAULT_QUANTILES", "PowerLawFit", "fit", "is_fittable", "load_weights"]

# The checkpoint loaders live in weights.py and the plots in plots.py; their public names stay
# importable from here.
_MOVED = {"plot_fit": "plots", "plot_fits": "plots"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f".{_MOVED[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Candidate cut-offs ``low``: the 5%, 10%, …, 95% quantiles of ``|w|``.
DEFAULT_QUANTILES: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))

# Below this |z| the closed forms of g, g' and ln E lose digits to cancellation
# (relative error up to eps·12/z² for g'); the Taylor series used instead, to z^10,
# are accurate to ~1e-16 there, so every function is within ~1e-13 of exact everywhere.
_SERIES_Z = 0.25
# Taylor coefficients at z = 0 (from the Bernoulli numbers), in powers of z²:
# g(z) = 1/2 + z·P_mean(z²),  g'(z) = P_var(z²),  ln E(z) = z/2 + z²·P_mass(z²).
_MEAN_SERIES = (1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160)
_VAR_SERIES = (1 / 12, -1 / 240, 1 / 6048, -1 / 172800, 1 / 5322240, -691 / 118879488000)
_MASS_SERIES = (1 / 24, -1 / 2880, 1 / 181440, -1 / 9676800, 1 / 479001600)
_NEWTON_ITERATIONS = 100


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit` for one tensor.

    Attributes:
        alpha: exponent of the magnitude density ``p(y) ∝ y**-alpha`` on ``[low, high]``.
        alpha_se: standard error of ``alpha``, ``1 / sqrt(n_tail·L²·g'(z))`` from the
            Fisher information, with ``low`` and ``high`` held fixed.
        low: lower cut-off (xmin), in the units of the weights.
        high: upper truncation, the largest ``|w|``.
        ratio: ``high / low``, the ``ratio`` parameter of the initialiser.
        n: number of nonzero magnitudes in the tensor.
        n_tail: number of magnitudes in ``[low, high]`` used by the fit.
        low_quantile: fraction of the ``n`` magnitudes below ``low``.
        ks: Kolmogorov–Smirnov distance between the tail's empirical CDF and the fit.
        lr: log-likelihood ratio ``R`` of the power law against a half-normal on
            ``[low, high]`` (natural log; positive favours the power law).
        lr_normalized: Vuong's statistic ``R / (σ_R·sqrt(n_tail))``.
        lr_p: two-sided p-value of ``lr_normalized`` (small: the sign of ``R`` is
            significant).
        normal_sigma: scale ``σ`` of the fitted half-normal.
        loglog_slope: least-squares slope of log10(density) on log10(|w|) over the tail
            (the paper's estimator of ``-alpha``).
        loglog_intercept: intercept of that line, for the density of the tail alone.
        shape: shape of the fitted tensor.
    """

    alpha: float
    alpha_se: float
    low: float
    high: float
    ratio: float
    n: int
    n_tail: int
    low_quantile: float
    ks: float
    lr: float
    lr_normalized: float
    lr_p: float
    normal_sigma: float
    loglog_slope: float
    loglog_intercept: float
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable; ``shape`` becomes a list)."""
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out

    def pdf(self, y: torch.Tensor) -> torch.Tensor:
        """Fitted density ``y**-alpha / Z`` of the tail magnitudes (zero outside [low, high]).

        ``ln Z = b·ln(low) + ln(L) + ln E(b·L)`` with ``b = 1 − alpha``, ``L = ln(ratio)``.
        """
        y = torch.as_tensor(y, dtype=torch.float64)
        log_ratio = math.log(self.ratio)
        b = 1.0 - self.alpha
        z = torch.tensor(b * log_ratio, dtype=torch.float64)
        log_norm = b * math.log(self.low) + math.log(log_ratio) + float(_log_tilted_mass(z))
        density = torch.exp(-self.alpha * torch.log(y) - log_norm)
        return torch.where((y >= self.low) & (y <= self.high), density, torch.zeros_like(density))

    def to_distribution(self, validate_args: bool | None = None) -> Any:
        """The fitted law of the weights as an nspl_filler.distributions.SymmetricPowerLaw:
        a fair sign times |w| on [low, high] with density ∝ |w|^-alpha, float64 parameters
        (its density is half of :meth:`pdf`, which is that of |w|)."""
        from .distributions import SymmetricPowerLaw

        def as_tensor(value: float) -> torch.Tensor:
            return torch.tensor(value, dtype=torch.float64)

        return SymmetricPowerLaw(as_tensor(self.alpha), as_tensor(self.low), as_tensor(self.high),
                                 validate_args=validate_args)

    def to_scipy(self) -> Any:
        """The fitted law as a frozen scipy.stats distribution,
        ``nspl_filler.stats.symmetric_power_law(alpha, ratio, loc=0, scale=low)``; needs scipy."""
        from .stats import symmetric_power_law

        return symmetric_power_law(self.alpha, self.ratio, loc=0.0, scale=self.low)


# ---------------------------------------------------------------------------------------
# The tilted uniform: density ∝ exp(z·s) on s in [0, 1]. Every function of z here is
# finite for every finite z, including z = 0 (alpha = 1) and large |z|.
# ---------------------------------------------------------------------------------------


def _polynomial(x: torch.Tensor, coefficients: Sequence[float]) -> torch.Tensor:
    """Σ c_k·x^k by Horner's rule."""
    result = torch.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result = result * x + c
    return result


def _tilted_mean(z: torch.Tensor) -> torch.Tensor:
    """g(z) = E[s] = 1/(1 − e^−z) − 1/z, increasing from 0 (z → −∞) to 1 (z → +∞)."""
    small = z.abs() < _SERIES_Z
    safe = torch.where(small, torch.ones_like(z), z)
    # -1/expm1(-z) is 1/(1 - e^-z) without overflow for either sign of z.
    closed = -1.0 / torch.expm1(-safe) - 1.0 / safe
    series = 0.5 + z * _polynomial(z * z, _MEAN_SERIES)
    return torch.where(small, series, closed)


def _tilted_var(z: torch.Tensor) -> torch.Tensor:
    """g'(z) = Var[s] = 1/z² − 1/(4·sinh²(z/2)), 1/12 at z = 0."""
    small = z.abs() < _SERIES_Z
    safe = torch.where(small, torch.ones_like(z), z)
    # sinh overflows to inf for |z| > ~1420, which correctly leaves 1/z².
    closed = 1.0 / (safe * safe) - 0.25 / torch.sinh(0.5 * safe) ** 2
    return torch.where(small, _polynomial(z * z, _VAR_SERIES), closed)


def _log_tilted_mass(z: torch.Tensor) -> torch.Tensor:
    """ln E(z) = ln(expm1(z) / z) = max(z, 0) + ln((1 − e^−|z|) / |z|)."""
    small = z.abs() < _SERIES_Z
    a = torch.where(small, torch.ones_like(z), z.abs())
    closed = torch.clamp(z, min=0.0) + torch.log(-torch.expm1(-a)) - torch.log(a)
    series = 0.5 * z + z * z * _polynomial(z * z, _MASS_SERIES)
    return torch.where(small, series, closed)


def _tilted_cdf(s: torch.Tensor, z: float) -> torch.Tensor:
    """F(s) = expm1(z·s) / expm1(z), written so that neither factor overflows."""
    if abs(z) < 1e-12:
        # First order in z; exact (F = s) at z = 0.
        return s * (1.0 + 0.5 * z * (s - 1.0))
    if z < 0:
        return torch.expm1(z * s) / math.expm1(z)
    return torch.exp(z * (s - 1.0)) * (torch.expm1(-z * s) / math.expm1(-z))


def _solve_tilt(mean_fraction: torch.Tensor) -> torch.Tensor:
    """Solve g(z) = m for z, elementwise, for m in (0, 1).

    g is increasing with g(z) < 1/|z| for z < 0 and g(z) > 1 − 1/z for z > 0, so the root
    lies in ``[−1/m − 1, 1/(1 − m) + 1]``. Newton steps that leave the (shrinking) bracket
    are replaced by bisection, which keeps the iteration convergent on this sigmoid.
    """
    # Rounding in the suffix sums must not push m onto the ends, where the root is ±inf.
    m = mean_fraction.clamp(min=torch.finfo(torch.float64).tiny, max=1.0 - 2.0**-53)
    lo = -1.0 / m - 1.0
    hi = 1.0 / (1.0 - m) + 1.0
    z = torch.clamp(12.0 * (m - 0.5), min=lo, max=hi)  # g(z) ≈ 1/2 + z/12 near 0
    for _ in range(_NEWTON_ITERATIONS):
        residual = _tilted_mean(z) - m
        lo = torch.where(residual < 0, z, lo)
        hi = torch.where(residual > 0, z, hi)
        newton = z - residual / _tilted_var(z)
        outside = ~((newton > lo) & (newton < hi))
        z_next = torch.where(outside, 0.5 * (lo + hi), newton)
        converged = bool(torch.all((z_next - z).abs() <= 4e-16 * (1.0 + z.abs())))
        z = z_next
        if converged or bool(torch.all(hi - lo <= 4e-16 * (1.0 + z.abs()))):
            break
    return z


# ---------------------------------------------------------------------------------------
# Half-normal on [low, high]: density exp(−y²/(2σ²)) / Z_N, with
# Z_N = σ·sqrt(π/2)·(erfc(low/(σ√2)) − erfc(high/(σ√2))).
# ---------------------------------------------------------------------------------------


def _log_normal_mass(sigma: float, low: float, high: float) -> float:
    """ln Z_N, stable from σ ≪ low (far tail) to σ ≫ high (nearly uniform)."""
    a = low / (sigma * math.sqrt(2.0))
    c = high / (sigma * math.sqrt(2.0))
    if c <= 1.0:
        log_diff = math.log(math.erf(c) - math.erf(a))
    else:
        # erfc(x) = erfcx(x)·exp(−x²) keeps both terms representable deep in the tail.
        erfcx = torch.special.erfcx(torch.tensor([a, c], dtype=torch.float64)).tolist()
        log_diff = (
            math.log(erfcx[0]) - a * a + math.log1p(-(erfcx[1] / erfcx[0]) * math.exp(a * a - c * c))
        )
    return math.log(sigma * math.sqrt(0.5 * math.pi)) + log_diff


def _fit_half_normal(mean_square: float, mean_excess: float, low: float, high: float) -> float:
    """MLE of σ for the half-normal on [low, high] by golden-section search on ln σ.

    The negative log-likelihood per sample, ``mean(y²)/(2σ²) + ln Z_N(σ)``, is convex in
    the natural parameter ``−1/(2σ²)`` and so unimodal in ln σ; at the optimum the model's
    ``E[y²]``, increasing in σ, equals ``mean(y²)``. The truncated normal's mean excess
    over ``low`` is below ``σ²/low`` (Mills-ratio bound), so at
    ``σ = sqrt(low·mean_excess)/10`` its ``E[y²]`` is still too small: the optimum lies
    above. At the upper end, ``1000·high``, the density is flat on the range to 1e-6.
    """
    left = math.log(math.sqrt(low * max(mean_excess, 1e-300)) / 10.0)
    right = math.log(1000.0 * high)

    def objective(log_sigma: float) -> float:
        sigma = math.exp(log_sigma)
        return mean_square / (2.0 * sigma * sigma) + _log_normal_mass(sigma, low, high)

    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    x1 = right - inv_phi * (right - left)
    x2 = left + inv_phi * (right - left)
    f1, f2 = objective(x1), objective(x2)
    while right - left > 1e-12 * (1.0 + abs(left)):
        if f1 <= f2:
            right, x2, f2 = x2, x1, f1
            x1 = right - inv_phi * (right - left)
            f1 = objective(x1)
        else:
            left, x1, f1 = x1, x2, f2
            x2 = left + inv_phi * (right - left)
            f2 = objective(x2)
    return math.exp(0.5 * (left + right))


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------


def sorted_magnitudes(weights: torch.Tensor) -> torch.Tensor:
    """The nonzero |w| in ascending order, float64; ValueError when there are none."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"nspl_filler: weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.is_complex() or weights.dtype == torch.bool:
        raise TypeError(f"nspl_filler: weights must be real numbers, got dtype {weights.dtype}")
    if weights.numel() == 0:
        raise ValueError(f"nspl_filler: weights are empty (shape {tuple(weights.shape)}): there is nothing to fit")
    if weights.device.type == "meta":
        raise ValueError("nspl_filler: weights are on the meta device: they have no values to fit")
    if weights.is_floating_point() and weights.element_size() == 1:
        raise TypeError(
            f"nspl_filler: weights have dtype {weights.dtype}, a quantised format: dequantise them "
            "(to float32, times their scale) before fitting"
        )
    # Sorting in float32 where that is exact (the conversion to float64 is monotone)
    # halves the memory traffic of the most expensive step. The fit runs on the CPU: it
    # is one sort and a few passes, cheaper than the float64 work would be on most GPUs.
    work_dtype = torch.float64 if weights.dtype in (torch.float64, torch.int64, torch.int32) else torch.float32
    y = weights.detach().reshape(-1).to(device="cpu", dtype=work_dtype).abs()
    finite = torch.isfinite(y)
    if not bool(torch.all(finite)):
        bad = (~finite).nonzero()
        raise ValueError(
            f"nspl_filler: weights contain {bad.numel()} non-finite values (NaN or inf), the first at flat index "
            f"{int(bad[0])}"
        )
    # Exact zeros (pruned or padded weights) have no place on a log scale.
    nonzero = y[y > 0]
    if nonzero.numel() == 0:
        raise ValueError(
            f"nspl_filler: weights are all zero ({y.numel()} values): a power law needs nonzero magnitudes"
        )
    # NumPy's vectorised sort is about ten times faster than torch.sort on the CPU.
    return torch.from_numpy(np.sort(nonzero.numpy())).to(torch.float64)


def _unit_scale(y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(y · 2**-e, e) with e the binary exponent of max(y), so that the magnitudes end in
    [1/2, 1). The fit works on these: its squares and exponentials stay in range whatever
    the units (weights near 1e300 or subnormal), and the power of two changes no digit of the
    alpha, ratio and KS distance, which do not depend on units. ValueError when the smallest
    magnitude would fall below the float64 normal range: the data span more than it holds."""
    exponent = math.frexp(float(y[-1]))[1]
    scaled = torch.from_numpy(np.ldexp(y.numpy(), -exponent))
    if float(scaled[0]) < sys.float_info.min:
        raise ValueError(
            f"nspl_filler: the nonzero magnitudes run from {float(y[0]):.3g} to {float(y[-1]):.3g}, a ratio beyond the "
            "float64 range: no truncated power law on them can be fitted"
        )
    return scaled, exponent


def _candidate_starts(y: torch.Tensor, quantiles: Sequence[float], min_tail: int) -> torch.Tensor:
    """First index of each candidate tail ``y >= y[floor(q·n)]`` (ties all go in)."""
    n = y.numel()
    for q in quantiles:
        if not 0.0 <= q < 1.0:
            raise ValueError(f"nspl_filler: quantiles must lie in [0, 1), got {q}")
    idx = torch.tensor([min(int(q * n), n - 1) for q in quantiles], dtype=torch.long)
    starts = torch.searchsorted(y, y[idx], side="left")
    # A tail must hold at least min_tail samples and two distinct values.
    keep = (n - starts >= min_tail) & (y[starts] < y[-1])
    return torch.unique(starts[keep])


def _ks_distance(
    log_tail: torch.Tensor, log_low: float, log_ratio: float, z: float, ranks: torch.Tensor, buffer: torch.Tensor
) -> float:
    """sup |F_n − F| over a sorted tail, ``F = expm1(z·s)/expm1(z)``, ``s = ln(y/low)/L``.

    With ``d_j = F(y_j) − (j+1)/n`` (j from 0) the distance is ``max(−min d, max d + 1/n)``:
    the empirical CDF jumps from ``j/n`` to ``(j+1)/n`` at ``y_j``. This is exact with
    ties. Computed in place in one buffer because it is the cost of the whole fit.
    """
    n = log_tail.numel()
    rate = z / log_ratio
    if z > 700.0:
        # expm1(z·s) would overflow; this form stays finite (alpha < 1 − 700/L only).
        fitted = _tilted_cdf((log_tail - log_low) / log_ratio, z).mul_(n)
    elif abs(z) < 1e-12:
        fitted = (log_tail - log_low).mul_(n / log_ratio)
    else:
        fitted = torch.mul(log_tail, rate, out=buffer[:n]).sub_(rate * log_low).expm1_().mul_(n / math.expm1(z))
    low_gap, high_gap = torch.aminmax(fitted.sub_(ranks[:n]))
    return max(-float(low_gap), float(high_gap) + 1.0) / n


def _loglog_regression(tail: torch.Tensor, bins: int) -> tuple[float, float]:
    """Slope and intercept of log10(density) against log10(y) over log-spaced bins."""
    n = tail.numel()
    log_low, log_high = math.log(float(tail[0])), math.log(float(tail[-1]))
    edges = torch.exp(torch.linspace(log_low, log_high, bins + 1, dtype=torch.float64))
    edges[0], edges[-1] = tail[0], tail[-1]
    cuts = torch.searchsorted(tail, edges, side="left")
    cuts[-1] = n  # the last bin is closed on the right so that the maximum counts
    counts = torch.diff(cuts).to(torch.float64)
    widths = torch.diff(edges)
    # The first bin holds low and the last holds high, so at least two are occupied.
    occupied = counts > 0
    x = torch.log10(torch.sqrt(edges[:-1] * edges[1:]))[occupied]
    v = torch.log10(counts[occupied] / (n * widths[occupied]))
    x_mean, v_mean = x.mean(), v.mean()
    slope = ((x - x_mean) * (v - v_mean)).sum() / ((x - x_mean) ** 2).sum()
    return float(slope), float(v_mean - slope * x_mean)


def _fit_tensor(
    weights: torch.Tensor,
    quantiles: Sequence[float],
    low: float | None,
    min_tail: int,
    loglog_bins: int,
) -> PowerLawFit:
    if low is not None and not (math.isfinite(low) and low > 0):
        raise ValueError(f"nspl_filler: low must be finite and > 0, got {low}")
    y, exponent = _unit_scale(sorted_magnitudes(weights))
    n = y.numel()
    if low is None:
        starts = _candidate_starts(y, quantiles, min_tail)
    else:
        low = math.ldexp(low, -exponent)
        starts = torch.searchsorted(y, torch.tensor([low], dtype=torch.float64))
        starts = starts[(n - starts >= min_tail) & (starts < n)]
        if starts.numel() and not bool(y[starts[0]] < y[-1]):
            starts = starts[:0]
    if starts.numel() == 0:
        raise ValueError(
            f"nspl_filler: too few distinct nonzero magnitudes for a fit: {n} nonzero values, "
            f"need a tail of at least min_tail={min_tail} with two distinct values"
        )

    log_y = torch.log(y)
    log_high = log_y[-1]
    # Suffix sums of ln y from one cumulative sum; centring on ln(high) keeps the running
    # sum small, so the differences lose no digits.
    prefix = torch.cumsum(log_y - log_high, dim=0)
    total = prefix[-1]
    before = torch.where(starts > 0, prefix[(starts - 1).clamp(min=0)], torch.zeros_like(total))
    n_tail = (n - starts).to(torch.float64)
    mean_log_tail = (total - before) / n_tail + log_high
    log_low = log_y[starts] if low is None else torch.full_like(n_tail, math.log(low))
    log_ratio = log_high - log_low
    z = _solve_tilt((mean_log_tail - log_low) / log_ratio)

    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    buffer = torch.empty_like(ranks)
    ks = [
        _ks_distance(log_y[k:], float(log_low[i]), float(log_ratio[i]), float(z[i]), ranks, buffer)
        for i, k in enumerate(starts.tolist())
    ]
    best = min(range(len(ks)), key=ks.__getitem__)

    start = int(starts[best])
    tail = y[start:]
    m = tail.numel()
    z_best = z[best : best + 1]
    big_l = float(log_ratio[best])
    lo_value = float(y[start]) if low is None else low
    b = float(z_best) / big_l
    alpha = 1.0 - b
    alpha_se = 1.0 / math.sqrt(m * big_l * big_l * float(_tilted_var(z_best)))

    # Pointwise log-likelihoods of both models on the tail, for Vuong's test.
    log_tail = log_y[start:]
    log_norm_pl = b * float(log_low[best]) + math.log(big_l) + float(_log_tilted_mass(z_best))
    ll_power = -alpha * log_tail - log_norm_pl
    mean_square = float(torch.mean(tail * tail))
    sigma = _fit_half_normal(mean_square, float(tail.mean()) - lo_value, lo_value, float(y[-1]))
    ll_normal = -(tail * tail) / (2.0 * sigma * sigma) - _log_normal_mass(sigma, lo_value, float(y[-1]))
    diff = ll_power - ll_normal
    lr = float(diff.sum())
    spread = float(diff.std(correction=0))
    if spread > 0:
        lr_normalized = lr / (spread * math.sqrt(m))
        lr_p = math.erfc(abs(lr_normalized) / math.sqrt(2.0))
    else:
        lr_normalized, lr_p = 0.0, 1.0

    slope, intercept = _loglog_regression(tail, loglog_bins)
    high = float(y[-1])
    # Back to the units of the weights (see _unit_scale): lengths scale by 2**e, densities
    # by 2**-e.
    return PowerLawFit(
        alpha=alpha,
        alpha_se=alpha_se,
        low=math.ldexp(lo_value, exponent),
        high=math.ldexp(high, exponent),
        ratio=high / lo_value,
        n=n,
        n_tail=m,
        low_quantile=start / n,
        ks=ks[best],
        lr=lr,
        lr_normalized=lr_normalized,
        lr_p=lr_p,
        normal_sigma=math.ldexp(sigma, exponent),
        loglog_slope=slope,
        loglog_intercept=intercept - (slope + 1.0) * exponent * math.log10(2.0),
        shape=tuple(weights.shape),
    )


@overload
def fit(
    weights: torch.Tensor,
    *,
    quantiles: Sequence[float] = ...,
    low: float | None = ...,
    min_tail: int = ...,
    min_count: int = ...,
    loglog_bins: int = ...,
) -> PowerLawFit: ...


@overload
def fit(
    weights: Mapping[str, torch.Tensor] | str | PathLike[str],
    *,
    quantiles: Sequence[float] = ...,
    low: float | None = ...,
    min_tail: int = ...,
    min_count: int = ...,
    loglog_bins: int = ...,
) -> dict[str, PowerLawFit]: ...


def fit(
    weights: torch.Tensor | Mapping[str, torch.Tensor] | str | PathLike[str],
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    low: float | None = None,
    min_tail: int = 50,
    min_count: int = 256,
    loglog_bins: int = 30,
) -> PowerLawFit | dict[str, PowerLawFit]:
    """Fit ``p(|w|) ∝ |w|**-alpha`` on ``[low, high]`` by maximum likelihood.

    ``high = max|w|``; ``alpha`` solves the score equation ``mean(t)/L = g((1−alpha)·L)``
    with ``t = ln(|w|/low)``, ``L = ln(high/low)``, ``g(z) = 1/(1 − e^−z) − 1/z``; ``low``
    is the candidate quantile of ``|w|`` whose fit has the smallest Kolmogorov–Smirnov
    distance (see the module docstring for the formulas). Exact zeros are ignored.

    Args:
        weights: a tensor, fitted as a whole whatever its shape; or a mapping of names to
            tensors (a state_dict), fitted one by one, where entries that are not floating
            point, have fewer than 2 dimensions (biases, norm parameters) or fewer than
            ``min_count`` nonzero values are skipped; or the path of a checkpoint file or
            Hugging Face model folder, read with :func:`load_weights` and fitted as a mapping.
        quantiles: candidate cut-offs, as quantiles of the nonzero ``|w|``. A single value
            fixes the cut-off (``(0.05,)`` fits the 5%–100% range).
        low: fixed cut-off in the units of ``w``; overrides ``quantiles``.
        min_tail: smallest tail (number of samples) a candidate may leave.
        min_count: smallest number of nonzero values for a mapping entry to be fitted.
        loglog_bins: number of log-spaced bins of the log-log regression.

    Returns:
        A :class:`PowerLawFit` for a tensor; for a mapping or a path, a dict from name to
        :class:`PowerLawFit` over the fitted entries, in the mapping's order.

    Raises:
        TypeError: ``weights`` is neither a tensor nor a mapping, or is complex.
        TypeError: an 8-bit float tensor (dequantise it first).
        ValueError: a tensor that is empty, on the meta device, all zero or holds non-finite
            values (for a mapping or a path, the message names the layer); nonzero
            magnitudes whose ratio is beyond the float64 range; too few distinct nonzero
            magnitudes to fit. Any scale within float64 is fitted, subnormal or near 1e300.
    """
    if min_tail < 2:
        raise ValueError(f"nspl_filler: min_tail must be >= 2, got {min_tail}")
    if loglog_bins < 2:
        raise ValueError(f"nspl_filler: loglog_bins must be >= 2, got {loglog_bins}")
    if isinstance(weights, torch.Tensor):
        return _fit_tensor(weights, quantiles, low, min_tail, loglog_bins)
    if isinstance(weights, (str, PathLike)):
        weights = load_weights(weights)
    if not isinstance(weights, Mapping):
        raise TypeError(
            "nspl_filler: weights must be a tensor, a mapping of tensors or a checkpoint's path, "
            f"got {type(weights).__name__}"
        )
    fits = {}
    for name, tensor in weights.items():
        if is_fittable(tensor, max(min_count, min_tail)):
            try:
                fits[name] = _fit_tensor(tensor, quantiles, low, min_tail, loglog_bins)
            except (TypeError, ValueError) as error:
                message = str(error).removeprefix("nspl_filler: ")
                raise type(error)(f"nspl_filler: layer {name!r}: {message}") from None
    return fits


def is_fittable(tensor: object, min_count: int = 256) -> bool:
    """Whether :func:`fit` fits this state_dict entry: a floating-point tensor with at
    least 2 dimensions (a conv or linear weight, not a bias or norm parameter) and at
    least ``min_count`` nonzero values. A tensor whose values cannot be counted (on the meta
    device, or in an 8-bit float format) counts by its number of elements, so that :func:`fit`
    names it in its error rather than passing over it."""
    if not (isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.dim() >= 2):
        return False
    if tensor.device.type == "meta" or tensor.element_size() == 1:
        return tensor.numel() >= min_count
    return int(torch.count_nonzero(tensor)) >= min_count
