"""The symmetric power law as a torch.distributions.Distribution (docs/spec.md §2).

    from nspl_filler.distributions import SymmetricPowerLaw
    law = SymmetricPowerLaw(alpha=1.0, low=0.01, high=1.0)
    w = law.sample((1000,), seed=0)        # the fill kernel, reproducible
    law.log_prob(w), law.cdf(w), law.icdf(torch.rand(5)), law.entropy(), law.variance

    SymmetricPowerLaw.from_std(0.05, alpha=1.0, ratio=100.0)   # the law fill_ samples

Densities, CDFs, quantiles and moments are closed forms evaluated in float64 whatever the
parameters' dtype (nspl_filler/_law.py) and returned in it; samples come from the fill kernel.
"""
from __future__ import annotations

import numbers
from typing import Optional, Union

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all

from ._law import Law, log_second_moment
from .generator import Generator
from .init import DEFAULT_ALPHA, DEFAULT_RATIO, symmetric_power_law_
from .stream import GeneratorLike, check_stream

__all__ = ["SymmetricInterval", "SymmetricPowerLaw"]

TensorLike = Union[Tensor, float]


class SymmetricInterval(constraints.Constraint):
    """The set [-high, -low] ∪ [low, high]: the support of the symmetric power law, a union
    of two intervals, which torch's own constraints (intervals, half-lines) cannot state.
    torch registers no transform onto it: biject_to / transform_to do not apply."""

    is_discrete = False
    event_dim = 0

    def __init__(self, low: Tensor, high: Tensor) -> None:
        self.low, self.high = low, high
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        magnitude = value.abs()
        return (magnitude >= self.low) & (magnitude <= self.high)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(low={self.low}, high={self.high})"


class SymmetricPowerLaw(Distribution):
    r"""W = s·Y: a fair sign s times a magnitude Y on [low, high] with density ∝ y^-alpha.

    Density p(w) = |w|^-alpha / (2·Z) for low <= |w| <= high and 0 elsewhere, with
    Z = ∫_low^high y^-alpha dy = low^b·(r^b - 1)/b (b = 1 - alpha, r = high / low; Z = ln r
    at alpha = 1). The support is the union [-high, -low] ∪ [low, high]: log_prob is -inf in
    the gap (-low, low) and beyond ±high, and with validation on log_prob and cdf raise
    ValueError for such values, as every torch distribution does outside its support. The cdf is flat (1/2) on the gap; icdf is the left-continuous quantile
    inf{w : cdf(w) >= p}, so icdf(1/2) = -low.

    Moments: mean 0, variance E[Y²] = low²·b(r^(b+2) - 1) / ((b+2)(r^b - 1)) (the limits at
    alpha = 1 and 3 as in second_moment). Entropy in nats.

    Args:
        alpha: exponent, any finite real (alpha = 1 is log-uniform, alpha = 0 uniform |w|).
        low, high: the range of |w|, 0 < low < high < inf with high / low finite.
        validate_args: torch's flag (None: torch's default, which is on unless python -O,
            and which the first call of torch.compile turns off for the process).

    Parameters broadcast (batch_shape is their broadcast shape); Python numbers become
    tensors of torch's default dtype. Every function is evaluated in float64 and returned
    in the parameters' dtype (or the value's, if wider), accurate to about 1e-12 relative in
    float64 for every finite alpha, alpha = 1 and |alpha| up to the largest double included:
    where |1 - alpha|·ln r overflows a double the law is a point mass at low (alpha > 1) or
    high (alpha < 1) to within the double's resolution, and is reported as such.

    Sampling (sample; no rsample, the kernel is not differentiable) fills a tensor of the
    parameters' dtype and device with nspl_filler.symmetric_power_law_. See sample for the
    stream each batch element reads.
    """

    has_rsample = False

    @property
    def arg_constraints(self) -> dict:
        return {
            "alpha": constraints.real,
            "low": constraints.positive,
            "high": constraints.greater_than(self.low),
        }

    def __init__(self, alpha: TensorLike, low: TensorLike, high: TensorLike,
                 validate_args: Optional[bool] = None) -> None:
        self.alpha, self.low, self.high = broadcast_all(alpha, low, high)
        if all(isinstance(p, numbers.Number) for p in (alpha, low, high)):
            batch_shape = torch.Size()
        else:
            batch_shape = self.alpha.size()
        super().__init__(batch_shape, validate_args=validate_args)
        if self._validate_args:
            self._check_domain()

    def _check_domain(self) -> None:
        """What arg_constraints cannot say: the law needs finite alpha, low, high and ratio."""
        ratio = self.high.double() / self.low.double()
        for name, value, valid in (
            ("alpha", self.alpha, torch.isfinite(self.alpha)),
            ("low", self.low, torch.isfinite(self.low)),
            ("high", self.high, torch.isfinite(self.high)),
            ("high / low", ratio, torch.isfinite(ratio)),
        ):
            if not bool(valid.all()):
                raise ValueError(
                    f"Expected parameter {name} ({type(value).__name__} of shape {tuple(value.shape)}) of "
                    f"distribution {self!r} to be finite, but found invalid values:\n{value}"
                )

    @classmethod
    def from_std(cls, std: TensorLike, alpha: TensorLike = DEFAULT_ALPHA, ratio: TensorLike = DEFAULT_RATIO,
                 validate_args: Optional[bool] = None) -> "SymmetricPowerLaw":
        """The law of standard deviation `std` with exponent alpha and range ratio `ratio`:
        low = c = std / sqrt(E[y²]) and high = c·ratio, E[y²] the second moment of y on
        [1, ratio] (nspl_filler.second_moment). It is what fill_ samples:
        fill_(t, alpha=a, ratio=r, gain=g, fan_in=n) draws from from_std(g / sqrt(n), a, r).
        c is computed in logarithms, so it is exact where E[y²] overflows a double."""
        std_t, alpha_t, ratio_t = broadcast_all(std, alpha, ratio)
        if Distribution._validate_args if validate_args is None else validate_args:
            for name, value in (("std", std_t), ("alpha", alpha_t), ("ratio", ratio_t)):
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"Expected parameter {name} of SymmetricPowerLaw.from_std to be finite, "
                                     f"but found invalid values:\n{value}")
            if not bool((std_t > 0).all()) or not bool((ratio_t > 1).all()):
                raise ValueError("Expected std > 0 and ratio > 1 in SymmetricPowerLaw.from_std, got "
                                 f"std={std_t}, ratio={ratio_t}")
        low = std_t.double() * torch.exp(-0.5 * log_second_moment(alpha_t, ratio_t))
        high = low * ratio_t.double()
        dtype = std_t.dtype
        return cls(alpha_t, low.to(dtype), high.to(dtype), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> "SymmetricPowerLaw":
        new = self._get_checked_instance(SymmetricPowerLaw, _instance)
        batch_shape = torch.Size(batch_shape)
        new.alpha = self.alpha.expand(batch_shape)
        new.low = self.low.expand(batch_shape)
        new.high = self.high.expand(batch_shape)
        super(SymmetricPowerLaw, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return SymmetricInterval(self.low, self.high)

    @property
    def ratio(self) -> Tensor:
        """high / low, the ratio parameter of fill_."""
        return self.high / self.low

    @property
    def _law(self) -> Law:
        # Built on each use, not cached: a cached graph would be freed by the first backward.
        return Law(self.alpha, self.low, self.high)

    def _out(self, result: Tensor, value: Optional[Tensor] = None) -> Tensor:
        dtype = self.alpha.dtype if value is None else torch.promote_types(self.alpha.dtype, value.dtype)
        if not dtype.is_floating_point:
            dtype = self.alpha.dtype
        return result.to(dtype)

    @staticmethod
    def _as_tensor(value: TensorLike, like: Tensor) -> Tensor:
        return value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=like.dtype, device=like.device)

    @property
    def mean(self) -> Tensor:
        return torch.zeros_like(self.alpha)

    @property
    def variance(self) -> Tensor:
        return self._out(self._law.variance())

    def log_prob(self, value: TensorLike) -> Tensor:
        value = self._as_tensor(value, self.alpha)
        if self._validate_args:
            self._validate_sample(value)
        return self._out(self._law.log_prob(value.double()), value)

    def cdf(self, value: TensorLike) -> Tensor:
        value = self._as_tensor(value, self.alpha)
        if self._validate_args:
            self._validate_sample(value)
        return self._out(self._law.cdf(value.double()), value)

    def icdf(self, value: TensorLike) -> Tensor:
        """Quantile of probability `value` in [0, 1] (NaN outside); icdf(1/2) = -low."""
        value = self._as_tensor(value, self.alpha)
        return self._out(self._law.icdf(value.double()), value)

    def entropy(self) -> Tensor:
        return self._out(self._law.entropy())

    def sample(self, sample_shape: Union[torch.Size, tuple] = torch.Size(), *, seed: Optional[int] = None,
               generator: GeneratorLike = None) -> Tensor:
        """Samples of shape sample_shape + batch_shape, in the parameters' dtype and device,
        drawn by the fill kernel (nspl_filler.symmetric_power_law_).

        Stream: the batch elements are filled one after another in row-major order of
        batch_shape, each a contiguous block of prod(sample_shape) values, as successive
        calls symmetric_power_law_(block, alpha[i], low[i], high[i], generator=g) would fill
        them: ``seed=s`` is g = nspl_filler.Generator(s) (so with no batch dimensions
        sample(shape, seed=s) equals symmetric_power_law_(empty(shape), alpha, low, high,
        seed=s)); ``generator=nspl_filler.Generator`` reads from and advances it; a
        torch.Generator or nothing lets each call draw its position from that generator (or
        torch's default), so torch.manual_seed governs it. The values follow the law on every
        stream version; their exact bits are the stream's.
        """
        check_stream(seed, generator)
        sample_shape = torch.Size(sample_shape)
        if seed is not None:
            generator = Generator(seed)
        batch = self.batch_shape.numel()
        block = torch.empty((batch, *sample_shape), dtype=self.alpha.dtype, device=self.alpha.device)
        alphas, lows, highs = (p.reshape(-1).tolist() for p in (self.alpha, self.low, self.high))
        with torch.no_grad():
            for i in range(batch):
                symmetric_power_law_(block[i], alphas[i], lows[i], highs[i], generator=generator)
        batch_dims = len(self.batch_shape)
        laid_out = block.reshape(self.batch_shape + sample_shape)
        order = [*range(batch_dims, batch_dims + len(sample_shape)), *range(batch_dims)]
        return laid_out.permute(order).contiguous()
