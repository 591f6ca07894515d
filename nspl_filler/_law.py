"""The symmetric power law's functions in closed form (docs/spec.md §2), written once for the
torch Distribution (distributions.py) and the scipy.stats distribution (stats.py).

W = s·Y with s a fair sign and Y on [low, high] with density ∝ y^-alpha. Everything is
computed in float64 torch ops that broadcast over (alpha, low, high), in the coordinate
a = ln(y / near) / L in [0, 1], the log-distance of y from the *near* end (low for alpha >= 1,
high for alpha < 1; L = ln(high / low)). In that coordinate the law is the tilted uniform with
density exp(w·a) / E(w) and tilt w = -|1 - alpha|·L <= 0, E(w) = expm1(w) / w: its mass sits
at a = 0, and every formula below is a product of terms at most 1 and ratios of E, evaluated
in logarithms. So nothing overflows or cancels for any finite alpha: alpha = 1 is w = 0, and
where |1 - alpha|·L overflows a double (|alpha| near 1e308) w is -inf and the law is a point
mass at the near end, which the formulas give as limits rather than NaN.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .fit import _log_tilted_mass, _tilted_mean

_F64 = torch.float64
_LOG2 = math.log(2.0)
# Below this |q| the series 1 - q/2 of log1p(q)/q is exact to double precision.
_LOG1P_SERIES_Q = 1e-8
# Up to this v, expm1(v) is finite (e^700 is about 1e304), and log1p(u·expm1(v)) / v applies.
_LARGE_TILT = 700.0
# Above this |w|, |w|·g(w) = 1 - |w|/expm1(|w|) is 1 to double precision.
_SATURATED_TILT = 1000.0


def _positive_log(x: Tensor) -> Tensor:
    """ln x for x > 0, and a finite stand-in (0) at x = 0, so that the branches of torch.where
    that are not taken carry no infinities into gradients."""
    return torch.log(torch.where(x > 0, x, torch.ones_like(x)))


def _log_mass(abs_tilt: Tensor, log_length: Tensor, length: Tensor) -> Tensor:
    """ln E(w) for w = -abs_tilt·length <= 0, exact where the product overflows to -inf
    (then ln E(w) = -ln|w| = -(ln abs_tilt + ln length), a finite number)."""
    w = -(abs_tilt * length)
    infinite = torch.isinf(w)
    finite = _log_tilted_mass(torch.where(infinite, -torch.ones_like(w), w))
    return torch.where(infinite, -(_positive_log(abs_tilt) + log_length), finite)


def _log_quotient(numerator: Tensor, denominator: Tensor) -> Tensor:
    """ln(numerator / denominator) for numerator >= denominator > 0, through log1p of the
    exact difference when the two are within a factor 2 (where the quotient's rounding
    would cost digits of a small logarithm)."""
    quotient = numerator / denominator
    close = quotient < 2.0
    return torch.where(close, torch.log1p((numerator - denominator) / denominator), _positive_log(quotient))


def _log1p_ratio(q: Tensor) -> Tensor:
    """log1p(q) / q for q >= -1 (inf at q = -1), 1 at q = 0."""
    small = q.abs() < _LOG1P_SERIES_Q
    safe = torch.where(small, torch.ones_like(q), q)
    return torch.where(small, 1.0 - 0.5 * q, torch.log1p(safe) / safe)


class Law:
    """(alpha, low, high) broadcast to one shape, in float64, with the constants every
    function of the law needs. Parameters are taken as they are: checking the domain
    (alpha finite, 0 < low < high, high / low finite) is the caller's."""

    def __init__(self, alpha: Tensor, low: Tensor, high: Tensor) -> None:
        alpha, low, high = torch.broadcast_tensors(alpha.to(_F64), low.to(_F64), high.to(_F64))
        self.alpha, self.low, self.high = alpha, low, high
        self.log_ratio = _log_quotient(high, low)
        self.near_low = alpha >= 1.0
        # |1 - alpha|, written per branch so that its gradient at alpha = 1 is the one of
        # the formulas that continue smoothly through it (abs would give 0 there).
        self.abs_tilt = torch.where(self.near_low, alpha - 1.0, 1.0 - alpha)
        self.tilt = -(self.abs_tilt * self.log_ratio)  # w <= 0, maybe -inf
        self.log_log_ratio = _positive_log(self.log_ratio)
        self.log_mass = _log_mass(self.abs_tilt, self.log_log_ratio, self.log_ratio)

    # --- the coordinate a and its complement, from a magnitude y -----------------------
    def _distances(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(y clamped to [low, high], a, 1 - a), each of a and 1 - a from its own end."""
        y = torch.minimum(torch.maximum(y, self.low), self.high)
        from_low = _log_quotient(y, self.low) / self.log_ratio
        from_high = _log_quotient(self.high, y) / self.log_ratio
        near = torch.where(self.near_low, from_low, from_high)
        far = torch.where(self.near_low, from_high, from_low)
        return y, near, far

    def _within(self, a: Tensor) -> Tensor:
        """P(A <= a) = a·E(w·a) / E(w)."""
        log_length = _positive_log(a) + self.log_log_ratio
        ratio = torch.exp(_log_mass(self.abs_tilt, log_length, a * self.log_ratio) - self.log_mass)
        # E(w·a) / E(w) <= 1 / a: infinite only as a -> 0, where the product is 0.
        return torch.where(a > 0, a * ratio, torch.zeros_like(a))

    def _beyond(self, a: Tensor, rest: Tensor) -> Tensor:
        """P(A >= a) = e^(w·a)·(1 - a)·E(w·(1 - a)) / E(w), with rest = 1 - a."""
        log_length = _positive_log(rest) + self.log_log_ratio
        exponent = -(self.abs_tilt * (a * self.log_ratio))
        tail = rest * torch.exp(exponent + _log_mass(self.abs_tilt, log_length, rest * self.log_ratio) - self.log_mass)
        return torch.where(rest > 0, tail, torch.zeros_like(rest))

    def _near_quantile(self, u: Tensor) -> Tensor:
        """a with P(A <= a) = u: log1p(u·expm1(w)) / w, written u·E(w)·log1p(q)/q with
        q = u·expm1(w) where |w| <= 1 (no tiny quotient), directly beyond (where exp(ln E(w))
        would multiply the rounding of a large logarithm)."""
        w = self.tilt
        gentle = w >= -1.0
        w_steep = torch.where(gentle, -torch.ones_like(w), w)
        steep = torch.log1p(u * torch.expm1(w_steep)) / w_steep
        mass = torch.exp(torch.where(gentle, self.log_mass, torch.zeros_like(w)))
        a = torch.where(gentle, u * mass * _log1p_ratio(u * torch.expm1(w)), steep)
        return torch.where(u >= 1.0, torch.ones_like(a), a).clamp(0.0, 1.0)

    def _far_quantile(self, u: Tensor) -> Tensor:
        """1 - a with P(A >= a) = u. Seen from the far end the tilt is v = -w >= 0:
        log1p(u·expm1(v)) / v (as u·E(v)·log1p(q)/q for v <= 1) while e^v is finite, and
        1 + ln(e^-v + u·(1 - e^-v)) / v beyond."""
        v = -self.tilt
        gentle = v <= 1.0
        moderate = (v > 1.0) & (v <= _LARGE_TILT)
        v_gentle = torch.where(gentle, v, torch.zeros_like(v))
        mass_gentle = torch.exp(v_gentle + torch.where(gentle, self.log_mass, torch.zeros_like(v)))  # E(v)
        rest_gentle = u * mass_gentle * _log1p_ratio(u * torch.expm1(v_gentle))
        v_moderate = torch.where(moderate, v, torch.ones_like(v))
        rest_moderate = torch.log1p(u * torch.expm1(v_moderate)) / v_moderate
        v_large = torch.where(gentle | moderate, torch.ones_like(v), v)
        rest_large = 1.0 + torch.log(torch.exp(-v_large) - u * torch.expm1(-v_large)) / v_large
        rest = torch.where(gentle, rest_gentle, torch.where(moderate, rest_moderate, rest_large))
        rest = torch.where(u <= 0.0, torch.zeros_like(rest), rest)
        return rest.clamp(0.0, 1.0)

    # --- the magnitude Y = |W| ---------------------------------------------------------
    def magnitude_log_pdf(self, y: Tensor) -> Tensor:
        """ln p(y) = w·a - ln E(w) - ln(y·L) on [low, high], -inf outside."""
        clamped, a, _ = self._distances(y)
        log_density = -(self.abs_tilt * (a * self.log_ratio)) - self.log_mass - torch.log(clamped) - self.log_log_ratio
        inside = (y >= self.low) & (y <= self.high)
        return torch.where(inside, log_density, torch.full_like(log_density, -torch.inf))

    def magnitude_cdf(self, y: Tensor) -> Tensor:
        _, a, rest = self._distances(y)
        return torch.where(self.near_low, self._within(a), self._beyond(a, rest))

    def magnitude_sf(self, y: Tensor) -> Tensor:
        _, a, rest = self._distances(y)
        return torch.where(self.near_low, self._beyond(a, rest), self._within(a))

    def magnitude_ppf(self, u: Tensor) -> Tensor:
        """y with P(Y <= y) = u, from the end where u is measured: low."""
        distance = torch.where(self.near_low, self._near_quantile(u), self._far_quantile(u))
        y = torch.minimum(self.low * torch.exp(self.log_ratio * distance), self.high)
        # The ends themselves, not their rounding through exp.
        return torch.where((distance >= 1.0) | (u >= 1.0), self.high, torch.where(u <= 0.0, self.low, y))

    def magnitude_isf(self, q: Tensor) -> Tensor:
        """y with P(Y >= y) = q, measured from high."""
        distance = torch.where(self.near_low, self._far_quantile(q), self._near_quantile(q))
        y = torch.maximum(self.high * torch.exp(-self.log_ratio * distance), self.low)
        return torch.where((distance >= 1.0) | (q >= 1.0), self.low, torch.where(q <= 0.0, self.high, y))

    def log_moment(self, k: float) -> Tensor:
        """ln E[Y^k] for k > 0: k·ln(low) + ln E(x_k) - ln E(x_0), x_j = (1 + j - alpha)·L.
        With ln E(x) = max(x, 0) + ln E(-|x|), the max terms differ by k·L, x_k or 0 exactly,
        so no two large numbers are subtracted (the rule of second_moment, for any k)."""
        shifted = (1.0 + k) - self.alpha
        abs_shifted = torch.where(shifted > 0, shifted, -shifted)  # |x_k|, smooth at alpha = 1 + k
        log_mass_k = _log_mass(abs_shifted, self.log_log_ratio, self.log_ratio)
        positive = torch.where(self.alpha < 1.0, k * self.log_ratio,
                               torch.where(shifted > 0, shifted * self.log_ratio, torch.zeros_like(shifted)))
        return k * torch.log(self.low) + positive + log_mass_k - self.log_mass

    def magnitude_entropy(self) -> Tensor:
        """H(Y) = H(A) + E[ln(L·Y)], H(A) = ln E(w) - w·g(w), E[ln Y] = ln(near) ± L·g(w),
        with g(w) = E[A] (the tilted uniform's mean)."""
        w = self.tilt
        finite_w = torch.where(torch.isinf(w), -torch.ones_like(w), w)
        mean_a = torch.where(torch.isinf(w), torch.zeros_like(w), _tilted_mean(finite_w))
        saturated = w < -_SATURATED_TILT
        tilt_term = torch.where(saturated, torch.ones_like(w), -finite_w * mean_a)
        log_near = torch.where(self.near_low, torch.log(self.low), torch.log(self.high))
        toward_far = torch.where(self.near_low, self.log_ratio, -self.log_ratio)
        mean_log_y = log_near + toward_far * mean_a
        return self.log_mass + tilt_term + self.log_log_ratio + mean_log_y

    # --- the symmetric law W = s·Y -----------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:
        return self.magnitude_log_pdf(x.abs()) - _LOG2

    def cdf(self, x: Tensor) -> Tensor:
        y = x.abs()
        return torch.where(x >= 0, 0.5 + 0.5 * self.magnitude_cdf(y), 0.5 * self.magnitude_sf(y))

    def icdf(self, p: Tensor) -> Tensor:
        """The quantile inf{x: cdf(x) >= p}: -low at p = 1/2, where the cdf is flat on
        [-low, low]; each half from the end its probability is measured from."""
        upper = self.magnitude_ppf((2.0 * p - 1.0).clamp(0.0, 1.0))
        lower = -self.magnitude_isf((2.0 * p).clamp(0.0, 1.0))
        result = torch.where(p > 0.5, upper, lower)
        return torch.where((p >= 0) & (p <= 1), result, torch.full_like(result, torch.nan))

    def entropy(self) -> Tensor:
        return self.magnitude_entropy() + _LOG2

    def variance(self) -> Tensor:
        return torch.exp(self.log_moment(2.0))


def log_second_moment(alpha: Tensor, ratio: Tensor) -> Tensor:
    """ln E[y²] of the magnitude y on [1, ratio] (the normalising constant of fill_), in
    float64, elementwise."""
    ratio = ratio.to(_F64)
    return Law(alpha, torch.ones_like(ratio), ratio).log_moment(2.0)
