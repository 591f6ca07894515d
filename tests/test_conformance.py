"""Element-wise agreement of the kernels with the independent float64 reference of docs/spec.md §2-§4.

Tolerance: the kernels evaluate |w| = exp(z) with z = ln|w| = ln c + (a term in [0, ln r]).
Rounding z costs a relative error of up to |z|·eps/2 in |w|, and the term's own errors
(constants, log) up to about ln r · eps, so

    |got - ref| <= (2 + ln r + max(|ln c|, |ln c·r|)) · eps · |ref|

is the bound for every finite alpha (measured over alphas -5 ... 10, ratios 2 ... 1e30 and
scales 1e-30 ... 1e8; the reference is evaluated in extended precision, so it is the more
accurate side)."""
import math

import numpy as np
import pytest
import scipy.special
import torch

import nspl_filler
import reference

ALPHAS = [-5.0, 0.0, 0.5, 1.0, 1.0 + 1e-9, 1.5, 2.0, 3.0, 3.0 + 1e-7, 10.0]
RATIOS = [2.0, 100.0, 1e30]


def assert_matches(got: torch.Tensor, ref: np.ndarray, ratio: float, scale: float):
    eps = torch.finfo(got.dtype).eps
    got = got.double().numpy().ravel()
    ref = ref.ravel()
    assert np.array_equal(np.signbit(got), np.signbit(ref))
    rel = np.abs(got - ref) / np.abs(ref)
    bound = (2 + math.log(ratio) + max(abs(math.log(scale)), abs(math.log(scale * ratio)))) * eps
    assert rel.max() <= bound, f"max relative error {rel.max():.3g} > {bound:.3g}"


def reference_fill(shape, alpha, ratio, scale, seed, offset, dtype):
    n = math.prod(shape)
    ref, _ = reference.power_law_values(seed, offset, np.arange(n), alpha, ratio, scale, dtype == torch.float64)
    return ref.reshape(shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("low", [1e-30, 0.5, 1e8])
def test_raw_law_matches_reference(dtype, alpha, ratio, low):
    t = torch.empty(4099, dtype=dtype)
    nspl_filler.symmetric_power_law_(t, alpha, low, low * ratio, seed=20221)
    ref = reference_fill((4099,), alpha, ratio, low, 20221, 0, dtype)
    assert_matches(t, ref, ratio, low)
    # Raw law: every |value| in [low, high].
    assert t.abs().min().item() >= low and t.abs().max().item() <= low * ratio


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2**40 + 3, 2**64 - 5])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (7, 4, 3, 3), (33, 65)])
def test_normalised_fill_matches_reference(dtype, seed, shape):
    alpha, ratio = 1.7, 50.0
    t = torch.empty(shape, dtype=dtype)
    fan_in = shape[1] * math.prod(shape[2:]) if len(shape) > 1 else 9
    nspl_filler.fill_(t, alpha=alpha, ratio=ratio, gain=1.3, seed=seed, fan_in=fan_in if len(shape) == 1 else None)
    sigma = 1.3 / math.sqrt(fan_in)
    scale = sigma / math.sqrt(reference.second_moment(alpha, ratio))
    ref = reference_fill(shape, alpha, ratio, scale, seed, 0, dtype)
    assert_matches(t, ref, ratio, scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generator_offsets_continue_the_stream(dtype):
    g = nspl_filler.Generator(99, offset=12345)
    a = nspl_filler.symmetric_power_law_(torch.empty(10, dtype=dtype), 2.0, 1.0, 10.0, generator=g)
    b = nspl_filler.symmetric_power_law_(torch.empty(6, dtype=dtype), 2.0, 1.0, 10.0, generator=g)
    per = 2 if dtype == torch.float64 else 4
    ra = reference_fill((10,), 2.0, 10.0, 1.0, 99, 12345, dtype)
    rb = reference_fill((6,), 2.0, 10.0, 1.0, 99, 12345 + -(-10 // per), dtype)
    assert_matches(a, ra, 10.0, 1.0)
    assert_matches(b, rb, 10.0, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "make_view",
    [
        lambda t: t.t(),
        lambda t: t[1:, 2:],
        lambda t: t[::2, ::3],
        lambda t: t.t()[3:7],
    ],
    ids=["transposed", "sliced", "stepped", "transposed-sliced"],
)
def test_views_take_their_logical_indices(dtype, make_view):
    base = torch.zeros(24, 20, dtype=dtype)
    view = make_view(base)
    nspl_filler.symmetric_power_law_(view, 2.5, 1.0, 100.0, seed=5)
    ref = reference_fill(tuple(view.shape), 2.5, 100.0, 1.0, 5, 0, dtype)
    assert_matches(view, ref, 100.0, 1.0)
    # Nothing outside the view was written.
    mask = torch.ones_like(base, dtype=torch.bool)
    make_view(mask).fill_(False)
    assert base[mask].eq(0).all()


def test_channels_last_equals_contiguous():
    a = torch.empty(4, 6, 5, 3).contiguous(memory_format=torch.channels_last)
    b = torch.empty(4, 6, 5, 3)
    nspl_filler.fill_(a, seed=8)
    nspl_filler.fill_(b, seed=8)
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)


def nearest_inside(x: float, dtype: torch.dtype, up: bool) -> float:
    """The smallest value of dtype >= x (up) or the largest <= x, for x > 0."""
    rounded = torch.tensor(x, dtype=torch.float64).to(dtype)
    bits = rounded.view(torch.int16)
    for step in (0, 1, -1):
        candidate = (bits + step).view(dtype).double().item()
        if (candidate >= x if up else candidate <= x) and (step == 0 or (step > 0) == up):
            return candidate
    raise AssertionError("no neighbour inside")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_are_the_float32_values_rounded(dtype):
    # The same float32 arithmetic, rounded to nearest even; where that rounding would step
    # outside [c, c·r], the dtype's nearest value inside instead (docs/spec.md §5).
    alpha, ratio = 1.0, 100.0
    t32 = nspl_filler.fill_(torch.empty(64, 129), seed=4)
    t16 = nspl_filler.fill_(torch.empty(64, 129, dtype=dtype), seed=4)
    c = math.sqrt(2 / 129) / math.sqrt(reference.second_moment(alpha, ratio))
    low, high = nearest_inside(c, dtype, up=True), nearest_inside(c * ratio, dtype, up=False)
    rounded = t32.to(dtype).double()
    expected = rounded.sign() * rounded.abs().clamp(low, high)
    assert torch.equal(t16.double(), expected)
    assert t16.abs().double().min() >= c and t16.abs().double().max() <= c * ratio


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_xavier_and_msra_match_reference(dtype):
    # Uniform: bound · x, two roundings (bound, product). Gaussian: the float32 erfinv is a
    # 1e-7 polynomial plus roundings; the float64 one is Newton-refined to a few ulp, like
    # scipy's own (which is the reference here).
    eps = torch.finfo(dtype).eps
    shape = (40, 25)
    x = reference.symmetric_uniforms(11, 0, np.arange(1000), dtype == torch.float64)
    xavier = nspl_filler.get_filler(nspl_filler.FillerParameter(type="xavier", seed=11))
    t = xavier.fill(torch.empty(shape, dtype=dtype))
    np.testing.assert_allclose(t.double().numpy().ravel(), math.sqrt(3 / 25) * x, rtol=2 * eps, atol=0)
    msra = nspl_filler.get_filler(nspl_filler.FillerParameter(type="msra", seed=11))
    t = msra.fill(torch.empty(shape, dtype=dtype))
    ref = math.sqrt(2 / 25) * math.sqrt(2) * scipy.special.erfinv(x)
    np.testing.assert_allclose(t.double().numpy().ravel(), ref, rtol=(4 if dtype == torch.float32 else 8) * eps, atol=0)
