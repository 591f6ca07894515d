"""Stream version 2 (docs/sampling.md): the power law's values against an independent
reference, its tails, and the stream's known answers.

The reference is tests/reference.py: mpmath evaluating the exact inverse CDF at the exact
centre of each word's cell, u = (m + 1/2)·2^-31 (2^-63 for float64), with nothing rounded
the way the kernels round. The kernels' values for chosen words come from
_C._power_law_of_bits (the portable code; tests/test_simd.py holds the SIMD kernels to it
bit for bit, and tests/test_cuda.py the CUDA ones).

The accuracy bound, measured here over the grid below and stated in docs/sampling.md:

    |got - ref| <= (4 + 2·(|ln c| + |ln(c·r)|)) · eps · ref,      eps = 2^-23 or 2^-52

(ref = c·F^-1(cell centre); the bound grows with the size of the exponent log2 |w|, which
the kernels round once and whose factors (u, the constants, their products) each carry a
rounding: see PowerLawSampler in csrc/nspl_math.h. Alpha near 1 with ratio 1e30 comes
closest, about 1.25·|ln |w||·eps).
"""
import math

import numpy as np
import pytest
import torch

import nspl_filler
import reference
from nspl_filler import _C

ALPHAS = [-1e3, -2.0, 0.0, 0.5, 1.0, 1.0 + 1e-9, 2.0, 3.0, 5.0, 10.0, 30.0, 1e3]
RATIOS = [1.5, 1e2, 1e6, 1e30]
SCALES = [1.0, 1e-3]
END_WORDS = 1 << 12


def accuracy_bound(scale: float, ratio: float, double: bool) -> float:
    """The relative error bound of docs/sampling.md."""
    eps = 2.0**-52 if double else 2.0**-23
    return (4 + 2 * (abs(math.log(scale)) + abs(math.log(scale * ratio)))) * eps


def as_signed(words: np.ndarray, double: bool) -> torch.Tensor:
    return torch.from_numpy(words.astype(np.uint64 if double else np.uint32).view(np.int64 if double else np.int32))


def end_words(double: bool) -> np.ndarray:
    """The first and last 2^12 words of the range (2^11 cells at each end, both signs)."""
    top = (1 << 64) if double else (1 << 32)
    return np.array(list(range(END_WORDS)) + list(range(top - END_WORDS, top)), dtype=np.uint64)


def kernel_values(words: np.ndarray, alpha: float, low: float, high: float, double: bool) -> np.ndarray:
    return _C._power_law_of_bits(as_signed(words, double), alpha, low, high).double().numpy()


def reference_values(words: np.ndarray, alpha: float, scale: float, ratio: float, double: bool) -> np.ndarray:
    """sign · c·F^-1 at each word's cell centre, by mpmath; one evaluation per cell."""
    bits = words.astype(np.uint64) if double else words.astype(np.uint32)
    m, negative = reference.cells(bits, double)
    distinct, where = np.unique(m, return_inverse=True)
    with_mp = reference.exact_magnitudes([int(x) for x in distinct], alpha, ratio, scale, double, precision=80)
    magnitude = with_mp[where]
    return np.where(negative, -magnitude, magnitude)


def relative_errors(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    assert np.array_equal(np.signbit(got), np.signbit(ref))
    return np.abs(got - ref) / np.abs(ref)


@pytest.mark.parametrize("double", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_end_and_random_words_within_bound_of_exact_inverse_cdf(alpha, ratio, double):
    # Every word of the first and last 2^12 and 512 random ones (seeded Philox words), at
    # c = 1 and c = 1e-3 (the error grows with |ln c|).
    random_words = reference.element_bits(20, 0, np.arange(512), double).astype(np.uint64)
    words = np.concatenate([end_words(double), random_words])
    law = reference_values(words, alpha, 1.0, ratio, double)  # F^-1, scaled below
    for scale in SCALES:
        high = scale * ratio
        exact_ratio = high / scale  # the ratio the kernels are given
        got = kernel_values(words, alpha, scale, high, double)
        # c·F^-1 for the ratio the kernels were given: c scales exactly, and a ratio one
        # float64 rounding away from r moves F^-1 by far less than the bound.
        assert abs(exact_ratio / ratio - 1) <= 2.0**-52
        ref = scale * law
        rel = relative_errors(got, ref)
        bound = accuracy_bound(scale, exact_ratio, double)
        worst = int(np.argmax(rel))
        assert rel.max() <= bound, (
            f"word {int(words[worst]):#x}: {got[worst]!r} vs exact {ref[worst]!r}, relative error "
            f"{rel.max() / (2.0**-52 if double else 2.0**-23):.3g} eps > bound {bound:.3g}"
        )
        # No atom: no value outside the law's own quantiles at the first and last cell.
        last = reference.exact_magnitudes([(1 << reference.cell_bits(double)) - 1], alpha, exact_ratio, scale, double)[0]
        first = reference.exact_magnitudes([0], alpha, exact_ratio, scale, double)[0]
        assert np.abs(got).max() <= last * (1 + bound)
        assert np.abs(got).min() >= first * (1 - bound)


def test_top_cell_is_not_the_upper_bound():
    # Version 1 rounded u to 1 in the top cell and gave c·r exactly (an atom of
    # probability 2^-24); the top cell's quantile lies below c·r, and so does its value.
    for alpha, ratio in [(3.0, 1e6), (10.0, 1e4), (2.0, 100.0), (1.0, 100.0), (0.5, 100.0)]:
        top = np.array([(1 << 32) - 1, (1 << 32) - 2], dtype=np.uint64)
        got = np.abs(kernel_values(top, alpha, 1.0, ratio, False))
        exact = reference.exact_magnitudes([(1 << 31) - 1], alpha, ratio, 1.0, False)[0]
        assert got.max() < ratio
        assert abs(got[0] - exact) <= accuracy_bound(1.0, ratio, False) * exact
        if alpha > 1 and ratio >= 1e4:
            # Far below r: the law's own quantile at probability 2^-32 from the top.
            assert got[0] < 0.5 * ratio


def quantile(alpha: float, ratio: float, tail: float, upper: bool) -> float:
    """F^-1 at probability `tail` from the top (upper) or the bottom, by mpmath."""
    import mpmath

    with mpmath.workprec(96):
        t = mpmath.mpf(tail)
        u, q = (1 - t, t) if upper else (t, 1 - t)
        return float(reference.inverse_cdf_mp(u, q, alpha, ratio))


def law_tail_probability(alpha: float, ratio: float, y: float, upper: bool) -> float:
    """P(Y > y) (upper) or P(Y < y) for the law itself, in closed form."""
    b = 1.0 - alpha
    if b == 0:
        below = math.log(y) / math.log(ratio)
    else:
        below = math.expm1(b * math.log(y)) / math.expm1(b * math.log(ratio))
    return 1.0 - below if upper else below


@pytest.mark.parametrize("ratio", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0, 5.0])
def test_tails_follow_the_law_to_1e_minus_7(alpha, ratio):
    # 2^26 float32 samples: the counts of |w| above the law's 1 - 10^-k quantiles (and
    # below its 10^-k quantiles), k = 3..7, within 4 Poisson standard deviations of
    # 2^26·10^-k; the largest and smallest magnitudes within the bound of F^-1 at the last
    # and first cell.
    n = 1 << 26
    t = torch.empty(n)
    nspl_filler.symmetric_power_law_(t, alpha, 1.0, ratio, seed=2026 + int(alpha) + int(math.log10(ratio)))
    magnitudes = t.abs_()
    for k in range(3, 8):
        for upper in (True, False):
            y = quantile(alpha, ratio, 10.0**-k, upper)
            # The probability of the threshold as float32 compares it with float32 values.
            y32 = float(np.float32(y))
            expected = n * law_tail_probability(alpha, ratio, y32, upper)
            count = int((magnitudes > y32).sum() if upper else (magnitudes < y32).sum())
            assert abs(count - expected) <= 4 * math.sqrt(expected) + 1, (
                f"k={k} {'upper' if upper else 'lower'}: {count} values beyond the quantile {y32}, law {expected:.1f}"
            )
    bound = accuracy_bound(1.0, ratio, False)
    last = reference.exact_magnitudes([(1 << 31) - 1], alpha, ratio, 1.0, False)[0]
    first = reference.exact_magnitudes([0], alpha, ratio, 1.0, False)[0]
    assert magnitudes.max().item() <= last * (1 + bound)
    assert magnitudes.min().item() >= first * (1 - bound)


@pytest.mark.parametrize("alpha,ratio", [(3.0, 1e6), (10.0, 1e4)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_value_above_half_the_top_in_adversarial_fills(alpha, ratio, seed):
    # A 4096x4096 fill_: the law expects 3e-12 (alpha 3) or 2e-32 (alpha 10) of its values
    # above c·r/2, so 5e-5 or less per fill; version 1's top cell put c·r itself there.
    t = nspl_filler.fill_(torch.empty(4096, 4096), alpha=alpha, ratio=ratio, seed=seed)
    c = _C.normalised_scale(alpha, ratio, math.sqrt(2.0), 4096.0)
    assert int((t.abs() > 0.5 * c * ratio).sum()) == 0
    assert t.abs().max().item() < c * ratio


# ---------------------------------------------------------------------------------
# Known answers of stream version 2. Each value is sign · c·F^-1 at the exact centre of
# the element's cell, computed by mpmath from the Philox words (tests/reference.py), not
# by the kernels; docs/sampling.md lists the same table. A change of any of them is a
# change of the stream, and of STREAM_VERSION.
# (seed, offset, dtype, alpha, ratio, low, index) -> value
# ---------------------------------------------------------------------------------
KNOWN_ANSWERS = [
    (0, 0, torch.float32, 1.0, 100.0, 1.0, 0, -6.28192780966123),  # word 0x6627e8d5
    (0, 0, torch.float32, 1.0, 100.0, 1.0, 3, 16.25412921326281),  # word 0x9b00dbd8
    (2026, 7, torch.float32, 3.0, 1e6, 1e-3, 5, 0.001166533216040435),  # word 0x43e015c2
    (7, 0, torch.float32, -2.0, 1.5, 0.25, 2, 0.2708162338377043),  # word 0x1d3aba42
    (1, 0, torch.float64, 2.0, 100.0, 1.0, 0, 8.428617537337232),  # bits 0xe3e80670e50a0ebc
    (1, 0, torch.float64, 2.0, 100.0, 1.0, 1, -2.3802082195993592),  # bits 0x95f222c0b615aa27
    (12345, 3, torch.float64, 0.5, 1e30, 1e-10, 2, -3.401376137112431e19),  # bits 0x954d75801da1720b
]


def test_stream_version_is_two():
    assert nspl_filler.STREAM_VERSION == 2
    assert _C.STREAM_VERSION == nspl_filler.STREAM_VERSION


@pytest.mark.parametrize("seed,offset,dtype,alpha,ratio,low,index,value", KNOWN_ANSWERS)
def test_known_answers(seed, offset, dtype, alpha, ratio, low, index, value):
    double = dtype == torch.float64
    # The reference gives the pinned value ...
    bits = reference.element_bits(seed, offset, np.array([index]), double)
    assert reference_values(bits, alpha, low, ratio, double)[0] == pytest.approx(value, rel=1e-15)
    # ... and the kernels give it within the bound.
    t = torch.empty(index + 1, dtype=dtype)
    nspl_filler.symmetric_power_law_(t, alpha, low, low * ratio, generator=nspl_filler.Generator(seed, offset=offset))
    assert abs(t[index].item() - value) <= accuracy_bound(low, ratio, double) * abs(value)
