"""Extreme but legal parameters (docs/spec.md §2, §5): every finite alpha and every ratio for which c
and c·r are normal numbers of the dtype is sampled from the law, E[y²] is accurate to about
1e-12 in log space, every |value| lies in [c, c·r] after rounding to the dtype, and what
cannot be represented is a ValueError that says why."""
import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import torch

import nspl_filler


def exact_log_second_moment(alpha: float, ratio: float) -> float:
    """ln E[y²] for y on [1, r] with density ∝ y^-alpha, from the integrals
    (1/Z)∫ y^(2 - alpha) dy and Z = ∫ y^-alpha dy in arbitrary precision with an unbounded
    exponent range; the digits grow with |alpha·ln r| so that the exponents keep 60."""
    digits = 60 + max(0, int(math.log10(abs(alpha) + 1.0) + math.log10(math.log(ratio) + 1.0)) + 1)
    with mpmath.workdps(digits):
        L = mpmath.log(mpmath.mpf(ratio))

        def integral(e):  # ∫_1^r y^(e - 1) dy
            return L if e == 0 else mpmath.expm1(e * L) / e

        b = 1 - mpmath.mpf(alpha)
        return float(mpmath.log(integral(b + 2) / integral(b)))


def magnitude_cdf(y: np.ndarray, alpha: float, ratio: float) -> np.ndarray:
    """P(Y <= y) for Y on [1, r] with density ∝ y^-alpha, in a form that neither overflows
    nor cancels for any alpha (float64)."""
    b, L = 1.0 - alpha, math.log(ratio)
    ell = np.log(np.clip(y, 1.0, ratio))
    if b * L == 0.0:
        return ell / L
    if b < 0:
        return np.expm1(b * ell) / math.expm1(b * L)
    return np.exp(b * (ell - L)) * -np.expm1(-b * ell) / -math.expm1(-b * L)


ALPHAS = [-1e308, -1e15, -50.0, -3.0, -1.0, 0.0, 0.5, 1.0 - 1e-13, 1.0, 1.0 + 1e-9, 2.0, 3.0, 3.0 + 1e-12, 50.0, 1e15,
          1e308]
RATIOS = [1.0 + 1e-9, 1.5, 100.0, 1e30, 1e154, 1.3e154, 1e160, 1e300, 1.7e308]


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_log_second_moment_is_accurate_everywhere(alpha, ratio):
    got = nspl_filler.second_moment(alpha, ratio, log=True)
    want = exact_log_second_moment(alpha, ratio)
    assert math.isfinite(got)
    assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (got, want)
    if want < 709.0:
        assert nspl_filler.second_moment(alpha, ratio) == pytest.approx(math.exp(want), rel=1e-12)


def test_second_moment_values_from_the_hardening_report():
    # Very negative alpha once gave 22026 here (exact: about 1e4), and ratios past 1.3e154
    # overflowed to infinity.
    assert nspl_filler.second_moment(-1e15, 100.0) == pytest.approx(1e4, rel=1e-12)
    assert nspl_filler.second_moment(-1e17, 100.0) == pytest.approx(1e4, rel=1e-12)
    with pytest.raises(ValueError, match="overflows float64"):
        nspl_filler.second_moment(1.0, 1e160)


def magnitudes(t: torch.Tensor, c: float) -> np.ndarray:
    return t.double().abs().numpy().ravel() / c


# (alpha, low, high) for the raw law: ratios far beyond the float32 range of y itself,
# exp(K) far below the smallest float, and |b| near the largest double.
FLOAT32_LAWS = [
    (0.0, 1e-30, 1e20),
    (1.0, 1e-30, 1e20),
    (3.0, 1e-30, 1e20),
    (-1.0, 1e-37, 1e37),
    (0.5, 2e-38, 3e38),
    (2.5, 2e-38, 3e38),
    (50.0, 1.0, 1e6),
    (-50.0, 1.0, 1e6),
    (1.0 + 1e-9, 0.1, 10.0),
]
FLOAT64_LAWS = [
    (0.0, 1e-150, 1e150),
    (1.0, 1e-150, 1e150),
    (2.0, 1e-300, 1e-10),
    (-3.0, 1e10, 1e300),
    (200.0, 1.0, 1e100),
]


@pytest.mark.parametrize(
    "dtype, alpha, low, high",
    [(torch.float32, *law) for law in FLOAT32_LAWS] + [(torch.float64, *law) for law in FLOAT64_LAWS],
)
def test_extreme_raw_laws_follow_the_law(dtype, alpha, low, high):
    t = nspl_filler.symmetric_power_law_(torch.empty(100_000, dtype=dtype), alpha, low, high, seed=1)
    values = t.double().numpy()
    assert np.all(np.abs(values) >= low) and np.all(np.abs(values) <= high)
    y = magnitudes(t, low)
    ratio = high / low
    result = scipy.stats.kstest(y, lambda v: magnitude_cdf(v, alpha, ratio))
    assert result.pvalue > 1e-3, result
    # Signs: a fair coin.
    assert abs(np.mean(values > 0) - 0.5) < 4 * 0.5 / math.sqrt(values.size)


@pytest.mark.parametrize("alpha, ratio", [(1.0, 1e160), (2.0, 1e300), (0.0, 1e200)])
def test_normalised_fill_beyond_the_square_root_of_the_float64_range(alpha, ratio):
    # E[y²] overflows a float64 here; c = sigma / sqrt(E[y²]) does not.
    t = nspl_filler.fill_(torch.empty(100_000, dtype=torch.float64), alpha=alpha, ratio=ratio, fan_in=100,
                          gain=1.0, seed=3)
    c = 0.1 * math.exp(-0.5 * exact_log_second_moment(alpha, ratio))
    values = t.numpy()
    assert np.all(values != 0) and np.all(np.isfinite(values))
    y = magnitudes(t, c)
    assert y.min() >= 1 - 1e-12 and y.max() <= ratio * (1 + 1e-12)
    assert scipy.stats.kstest(y, lambda v: magnitude_cdf(v, alpha, ratio)).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("alpha", [1e308, -1e308, 1e15, -1e15])
def test_alpha_near_the_largest_double(dtype, alpha):
    # All the mass sits at y = 1 (alpha -> inf) or y = r (alpha -> -inf): every value is
    # ±sigma, whose variance is sigma², up to the rounding of c and of ln c in the kernel.
    # (At |alpha| = 1e15 the law still spreads by up to |ln u| / 1e15, about 4e-14 for the
    # smallest float64 u: visible in float64 only.)
    if abs(alpha) < 1e300 and dtype == torch.float64:
        pytest.skip("the law's own spread exceeds float64's resolution")
    t = nspl_filler.fill_(torch.empty(20_000, dtype=dtype), alpha=alpha, ratio=100.0, fan_in=25, gain=1.0, seed=4)
    sigma = 0.2
    values = t.double().abs().numpy()
    tolerance = max(2 * torch.finfo(dtype).eps, 1e-14) * sigma
    assert np.all(np.abs(values - sigma) <= tolerance), (values.min(), values.max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("alpha, low, high", [(1.0, 0.01, 1.0), (0.0, 0.013, 0.97), (2.5, 0.0031, 7.7)])
def test_every_value_within_low_and_high_after_rounding(dtype, alpha, low, high):
    # Rounding a float32 value just below c·r to bfloat16 once stepped above c·r.
    t = nspl_filler.symmetric_power_law_(torch.empty(1_000_000, dtype=dtype), alpha, low, high, seed=5)
    magnitude = t.abs().double()
    assert magnitude.min().item() >= low and magnitude.max().item() <= high


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_normalised_values_within_c_and_cr_after_rounding(dtype):
    alpha, ratio, fan_in = 1.3, 77.0, 64
    t = nspl_filler.fill_(torch.empty(1_000_000, dtype=dtype), alpha=alpha, ratio=ratio, fan_in=fan_in, seed=6)
    c = math.sqrt(2.0 / fan_in) * math.exp(-0.5 * exact_log_second_moment(alpha, ratio))
    magnitude = t.abs().double()
    assert magnitude.min().item() >= c * (1 - 1e-12)
    assert magnitude.max().item() <= c * ratio * (1 + 1e-12)


def assert_rejected(match, tensor, fill):
    before = tensor.clone()
    with pytest.raises(ValueError, match=match):
        fill(tensor)
    assert torch.equal(tensor, before), "the tensor was written before the error"


@pytest.mark.parametrize(
    "dtype, low, high",
    [(torch.float16, 1e-5, 1.0), (torch.float32, 1e-40, 1.0), (torch.bfloat16, 1e-40, 1.0), (torch.float64, 1e-310, 1e-300)],
)
def test_subnormal_smallest_value_is_an_error(dtype, low, high):
    assert_rejected("smallest normal", torch.full((64,), 7.0, dtype=dtype),
                    lambda t: nspl_filler.symmetric_power_law_(t, 1.0, low, high, seed=1))


def test_normalised_scale_below_the_float16_range_is_an_error():
    # c = sqrt(2 / 1e7) / sqrt(E[y²]) is about 1.4e-5, below float16's smallest normal.
    assert_rejected("smallest normal", torch.full((8, 8), 7.0, dtype=torch.float16),
                    lambda t: nspl_filler.fill_(t, fan_in=1e7, seed=1))


def test_range_with_no_value_of_the_dtype_is_an_error():
    # float16 steps by 2^-10 near 1: no float16 lies in [1.0001, 1.0002].
    assert_rejected("no Half value", torch.full((64,), 7.0, dtype=torch.float16),
                    lambda t: nspl_filler.symmetric_power_law_(t, 1.0, 1.0001, 1.0002, seed=1))
    # One value in range is the law rounded to the dtype, not an error.
    t = nspl_filler.symmetric_power_law_(torch.empty(64, dtype=torch.float16), 1.0, 0.9999, 1.0001, seed=1)
    assert torch.equal(t.abs(), torch.ones(64, dtype=torch.float16))
