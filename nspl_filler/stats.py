"""The symmetric power law as a scipy.stats distribution (docs/spec.md §2). Needs scipy, an
optional dependency: ``import nspl_filler`` does not import this module or scipy.

    from nspl_filler.stats import symmetric_power_law
    law = symmetric_power_law(alpha=1.0, ratio=100.0, scale=0.01)   # |w| on [0.01, 1]
    law.pdf(0.5), law.cdf(-0.02), law.ppf(0.9), law.stats(moments="mvsk"), law.entropy()
    scipy.stats.kstest(weights, law.cdf)
    symmetric_power_law.fit(weights, floc=0)           # alpha, ratio, loc, scale

In scipy's standard form (loc = 0, scale = 1) the magnitude lies in [1, ratio], with density
∝ y^-alpha, and the sign is a fair coin: the law of nspl_filler.symmetric_power_law_(t,
alpha, 1, ratio); scale is low (the raw fill's low, fill_'s c). Every method is a closed form
(nspl_filler/_law.py, shared with nspl_filler.distributions.SymmetricPowerLaw), evaluated in
float64 for every finite alpha.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from scipy.stats._distn_infrastructure import _ShapeInfo

from ._law import Law
from .fit import _solve_tilt

__all__ = ["symmetric_power_law", "symmetric_power_law_gen"]


def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float64))  # a copy: contiguous, 0-d kept


def _law(alpha, ratio) -> Law:
    ratio = _tensor(ratio)
    return Law(_tensor(alpha), torch.ones_like(ratio), ratio)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.numpy()


class symmetric_power_law_gen(stats.rv_continuous):  # noqa: N801 (scipy's naming of distribution classes)
    r"""Symmetric truncated power law: a fair sign times a magnitude on [1, ratio] with
    density ∝ y^-alpha.

    pdf(x, alpha, ratio) = |x|^-alpha / (2·Z) for 1 <= |x| <= ratio, 0 elsewhere, with
    Z = (ratio^b - 1) / b, b = 1 - alpha (Z = ln ratio at alpha = 1). alpha is any finite
    real, ratio > 1 finite. The support is [-ratio, -1] ∪ [1, ratio]: the pdf is 0 on the
    gap (-1, 1), where the cdf is 1/2; ppf(1/2) = isf(1/2) = -1 (the generalised inverses).

    Methods in closed form: _pdf, _logpdf, _cdf, _sf, _ppf, _isf, _munp (E[x^n] = 0 for odd
    n, E[y^n] for even n), _stats (mean 0, variance E[y²], skewness 0, excess kurtosis
    E[y⁴]/E[y²]² - 3) and _entropy. fit starts from the maximum-likelihood estimate for
    loc = 0: scale = min |x|, ratio = max |x| / min |x| and alpha solving the likelihood
    equation (the estimator of nspl_filler.fit); fix loc with ``floc=0`` for a symmetric fit.
    """

    def _shape_info(self):
        return [
            _ShapeInfo("alpha", False, (-np.inf, np.inf), (False, False)),
            _ShapeInfo("ratio", False, (1.0, np.inf), (False, False)),
        ]

    def _argcheck(self, alpha, ratio):
        return np.isfinite(alpha) & (ratio > 1) & np.isfinite(ratio)

    def _get_support(self, alpha, ratio):
        return -ratio, ratio

    def _support_mask(self, x, alpha, ratio):
        magnitude = np.abs(x)
        return (magnitude >= 1) & (magnitude <= ratio)

    def _logpdf(self, x, alpha, ratio):
        return _array(_law(alpha, ratio).log_prob(_tensor(x)))

    def _pdf(self, x, alpha, ratio):
        return np.exp(self._logpdf(x, alpha, ratio))

    def _cdf(self, x, alpha, ratio):
        return _array(_law(alpha, ratio).cdf(_tensor(x)))

    def _sf(self, x, alpha, ratio):
        return _array(_law(alpha, ratio).cdf(-_tensor(x)))  # the law is symmetric

    def _ppf(self, q, alpha, ratio):
        return _array(_law(alpha, ratio).icdf(_tensor(q)))

    def _isf(self, q, alpha, ratio):
        # inf{x : sf(x) <= q}: by symmetry minus the quantile of q, which keeps the digits
        # of a small q, except at q = 1/2, where sf is 1/2 on all of [-1, 1): there it is -1.
        q = _tensor(q)
        return np.where(q.numpy() == 0.5, -1.0, -_array(_law(alpha, ratio).icdf(q)))

    def _munp(self, n, alpha, ratio):
        moment = _array(torch.exp(_law(alpha, ratio).log_moment(float(n))))
        return moment if n % 2 == 0 else np.zeros_like(moment)

    def _stats(self, alpha, ratio):
        law = _law(alpha, ratio)
        log_m2, log_m4 = law.log_moment(2.0), law.log_moment(4.0)
        zero = np.zeros(log_m2.shape)
        return zero, _array(torch.exp(log_m2)), zero, _array(torch.expm1(log_m4 - 2.0 * log_m2)) - 2.0

    def _entropy(self, alpha, ratio):
        return _array(_law(alpha, ratio).entropy())

    def _fitstart(self, data, args=None):
        magnitude = np.abs(np.asarray(data, dtype=np.float64).ravel())
        magnitude = magnitude[magnitude > 0]
        if magnitude.size < 2 or magnitude.min() == magnitude.max():
            return super()._fitstart(data, args)
        # Just inside the data, so every point lies in the starting support.
        low = magnitude.min() * (1.0 - 1e-12)
        ratio = magnitude.max() * (1.0 + 1e-12) / low
        return (_tilt_estimate(magnitude, low, ratio), ratio, 0.0, low)

    def fit(self, data, *args, **kwds):
        """scipy's fit. With ``floc`` fixed and the default method (maximum likelihood), the
        estimate is exact and computed directly, with no optimizer: the likelihood of
        magnitudes m = |x - loc| is largest on the narrowest support [scale, scale·ratio]
        that holds them (scale = min m, ratio = max m / min m; with ratio fixed, one of
        the two ends of the admissible range of scale, whichever fits better; with scale
        fixed, ratio = max m / scale), and alpha then solves the likelihood equation
        E[ln(m / scale)] = ln(ratio)·g((1 - alpha)·ln ratio), g the mean of the tilted
        uniform. Otherwise (loc free, method="MM", a custom optimizer) scipy's generic fit
        runs, from that estimate at loc = 0."""
        fixed = {name: _pop_fixed(kwds, keys) for name, keys in _FIXED_KEYS.items()}
        if kwds.get("floc") is None or args or set(kwds) - {"floc", "loc", "scale", "method"} \
                or str(kwds.get("method", "mle")).lower() != "mle":
            return super().fit(data, *args, **_restore_fixed(kwds, fixed))
        loc = float(kwds["floc"])
        data = np.asarray(data, dtype=np.float64).ravel()
        if data.size == 0 or not np.isfinite(data).all():
            raise ValueError("symmetric_power_law.fit: data must be non-empty and finite")
        magnitude = np.abs(data - loc)
        smallest, largest = magnitude.min(), magnitude.max()
        if smallest <= 0:
            raise ValueError(f"symmetric_power_law.fit: a data point equals floc = {loc}, where the density is 0")
        if smallest == largest and fixed["ratio"] is None:
            raise ValueError("symmetric_power_law.fit: all |x - floc| are equal; ratio > 1 cannot be estimated")
        candidates = _supports(smallest, largest, fixed["scale"], fixed["ratio"])
        best = None
        for low, ratio in candidates:
            alpha = fixed["alpha"] if fixed["alpha"] is not None else _tilt_estimate(magnitude, low, ratio)
            log_likelihood = float(np.sum(self._logpdf(magnitude / low, alpha, ratio))) - data.size * np.log(low)
            if best is None or log_likelihood > best[0]:
                best = (log_likelihood, (float(alpha), float(ratio), loc, float(low)))
        return best[1]


# scipy's names for fixing a parameter: f0 / fa / fix_a style for shapes, fscale for scale.
_FIXED_KEYS = {"alpha": ("f0", "falpha", "fix_alpha"), "ratio": ("f1", "fratio", "fix_ratio"),
               "scale": ("fscale",)}


def _pop_fixed(kwds: dict, keys) -> float | None:
    found = [key for key in keys if key in kwds]
    if len(found) > 1:
        raise ValueError(f"symmetric_power_law.fit: fix a parameter once, got {', '.join(found)}")
    return float(kwds.pop(found[0])) if found else None


def _restore_fixed(kwds: dict, fixed: dict) -> dict:
    restored = dict(kwds)
    restored.update({f"f{name}": value for name, value in fixed.items() if value is not None})
    return restored


def _covering_ratio(low: float, largest: float, ratio: float) -> float:
    """`ratio`, raised by ulps until low·ratio >= largest despite rounding."""
    while low * ratio < largest:
        ratio = np.nextafter(ratio, np.inf)
    return float(ratio)


def _supports(smallest: float, largest: float, scale: float | None, ratio: float | None) -> list:
    """The (low, ratio) pairs where the likelihood of magnitudes in [smallest, largest] can be
    largest: the narrowest supports that hold them, given what is fixed."""
    if scale is not None:
        if scale > smallest:
            raise ValueError(f"symmetric_power_law.fit: fscale = {scale} exceeds the smallest |x - floc| = {smallest}")
        if ratio is None:
            return [(scale, _covering_ratio(scale, largest, max(largest / scale, np.nextafter(1.0, 2.0))))]
        if scale * ratio < largest:
            raise ValueError(f"symmetric_power_law.fit: fscale·fratio = {scale * ratio} is below the largest "
                             f"|x - floc| = {largest}")
        return [(scale, ratio)]
    if ratio is None:
        return [(smallest, _covering_ratio(smallest, largest, largest / smallest))]
    lowest = largest / ratio
    while lowest * ratio < largest:
        lowest = np.nextafter(lowest, np.inf)
    if lowest > smallest:
        raise ValueError(f"symmetric_power_law.fit: fratio = {ratio} is below max/min of |x - floc| = "
                         f"{largest / smallest}")
    return [(lowest, ratio), (smallest, ratio)]


def _tilt_estimate(magnitude: np.ndarray, low: float, ratio: float) -> float:
    """The alpha that maximises the likelihood of `magnitude` on [low, low·ratio]: the tilt z
    whose tilted-uniform mean is the mean of ln(m / low) / ln(ratio), alpha = 1 - z / ln ratio."""
    log_ratio = float(np.log(ratio))
    mean_fraction = float(np.mean(np.log(magnitude / low))) / log_ratio
    z = float(_solve_tilt(torch.tensor([mean_fraction], dtype=torch.float64))[0])
    return 1.0 - z / log_ratio


symmetric_power_law = symmetric_power_law_gen(name="symmetric_power_law", shapes="alpha, ratio")
