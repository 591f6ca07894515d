"""Caffe's filler family (constant, uniform, gaussian with sparse, positive_unitball, xavier,
msra, bilinear) through nspl_filler.get_filler: the properties Caffe's own filler tests check
(bounds, moments, unit rows, exact bilinear weights) with tighter thresholds, the laws against
scipy, the stream each filler consumes, and the errors.

Thresholds: KS and binomial p-values > 1e-3 at fixed seeds; moments within 5 standard errors."""
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats
import torch

import nspl_filler
from conftest import requires_cuda

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
RANDOM_TYPES = [
    dict(type="uniform", min=-0.5, max=2.0),
    dict(type="gaussian", mean=1.0, std=0.5),
    dict(type="gaussian", std=0.5, sparse=4),
    dict(type="positive_unitball"),
    dict(type="xavier"),
    dict(type="msra", variance_norm="average"),
    dict(type="nspl"),
    dict(type="symmetric_power_law", min=0.1, max=2.0),
]


def fill(param, tensor):
    return nspl_filler.get_filler(nspl_filler.FillerParameter(**param)).fill(tensor)


# ------------------------------------------------------------------ the parameter
def test_filler_parameter_has_caffes_fields_and_defaults():
    p = nspl_filler.FillerParameter()
    assert (p.value, p.min, p.max, p.mean, p.std, p.sparse, p.variance_norm) == (0.0, 0.0, 1.0, 0.0, 1.0, -1, "fan_in")
    q = nspl_filler.FillerParameter(type="gaussian", value=2.0, min=-3.0, max=3.0, mean=0.5, std=0.25, sparse=7)
    assert (q.type, q.value, q.min, q.max, q.mean, q.std, q.sparse) == ("gaussian", 2.0, -3.0, 3.0, 0.5, 0.25, 7)
    q.sparse, q.std = 3, 2.0
    assert "sparse=3" in repr(q) and "std=2.0" in repr(q)


# ------------------------------------------------------------------ constant
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (15,), (8, 3), (2, 3, 4, 5, 2)])
def test_constant_writes_value_everywhere(dtype, shape):
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="constant", value=10.0, seed=1))
    t = f.fill(torch.empty(shape, dtype=dtype))
    assert t.eq(10.0).all()
    assert f.offset == 0 and f.blocks_for(t) == 0


# ------------------------------------------------------------------ uniform
@pytest.mark.parametrize("dtype", FLOATS)
def test_uniform_stays_in_min_max(dtype):
    # Caffe's test: min 1, max 2, every value in [min, max]; here a million of them.
    t = fill(dict(type="uniform", min=1.0, max=2.0, seed=3), torch.empty(1000, 1000, dtype=dtype))
    low, high = torch.tensor(1.0, dtype=dtype), torch.tensor(2.0, dtype=dtype)
    assert (t >= low).all() and (t <= high).all()
    # Bounds that are not numbers of the dtype: still inside them once rounded to it.
    t = fill(dict(type="uniform", min=0.1, max=0.7, seed=4), torch.empty(1 << 16, dtype=dtype))
    assert (t >= torch.tensor(0.1, dtype=dtype)).all() and (t <= torch.tensor(0.7, dtype=dtype)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_follows_the_uniform_law(dtype):
    t = fill(dict(type="uniform", min=-3.0, max=5.0, seed=5), torch.empty(1 << 17, dtype=dtype))
    x = t.double().numpy()
    assert scipy.stats.kstest(x, scipy.stats.uniform(-3.0, 8.0).cdf).pvalue > 1e-3
    assert abs(x.mean() - 1.0) < 5 * (8.0 / math.sqrt(12)) / math.sqrt(x.size)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("low,high", [(0.1, 0.2), (-0.2, -0.1), (-0.3, 0.2)])
def test_uniform_values_as_stored_lie_in_min_max(dtype, low, high):
    # Bounds that no dtype holds: the stored values, read exactly, are in [min, max] itself
    # (float16 once rounded 0.19999 up to 0.2000244 for max = 0.2).
    t = fill(dict(type="uniform", min=low, max=high, seed=6), torch.empty(1 << 20, dtype=dtype))
    x = t.double()
    assert (x >= low).all() and (x <= high).all()
    # and they fill the range up to it.
    assert x.max().item() > high - max(1e-3 * (high - low), 2 * torch.finfo(dtype).eps * abs(high))


def test_uniform_bounds_with_no_value_of_the_dtype_between_them_are_an_error():
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="uniform", min=0.2, max=0.2, seed=1))
    t = torch.full((4,), 7.0, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"\[min, max\] = \[0.2, 0.2\] holds no Half value"):
        f.fill(t)
    assert t.eq(7.0).all() and f.offset == 0


def test_uniform_with_min_equal_to_max_is_constant():
    t = fill(dict(type="uniform", min=0.25, max=0.25, seed=1), torch.empty(100))
    assert t.eq(0.25).all()


# ------------------------------------------------------------------ gaussian
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_has_mean_and_std(dtype):
    # Caffe's test: mean 10, std 0.1, (2, 3, 4, 5); here the law on 2^17 values.
    t = fill(dict(type="gaussian", mean=10.0, std=0.1, seed=6), torch.empty(1 << 17, dtype=dtype))
    x = t.double().numpy()
    assert scipy.stats.kstest(x, scipy.stats.norm(10.0, 0.1).cdf).pvalue > 1e-3
    assert abs(x.mean() - 10.0) < 5 * 0.1 / math.sqrt(x.size)
    assert abs(x.var() / 0.01 - 1) < 5 * math.sqrt(2 / x.size)


def test_sparse_gaussian_keeps_sparse_per_input():
    # An InnerProduct weight (outputs, inputs): each value kept with probability sparse / outputs.
    outputs, inputs, sparse = 400, 500, 30
    t = fill(dict(type="gaussian", std=2.0, sparse=sparse, seed=7), torch.empty(outputs, inputs, dtype=torch.float64))
    kept = t.ne(0)
    assert scipy.stats.binomtest(int(kept.sum()), kept.numel(), sparse / outputs).pvalue > 1e-3
    # sparse non-zeros per input on average, each column a binomial draw.
    per_input = kept.sum(0).double()
    assert abs(per_input.mean().item() - sparse) < 5 * math.sqrt(sparse * (1 - sparse / outputs) / inputs)
    # The kept values are the gaussian's, unconditioned by the mask.
    assert scipy.stats.kstest(t[kept].numpy(), scipy.stats.norm(0.0, 2.0).cdf).pvalue > 1e-3
    # ... and exactly the dense fill's values where kept.
    dense = fill(dict(type="gaussian", std=2.0, seed=7), torch.empty(outputs, inputs, dtype=torch.float64))
    assert torch.equal(t[kept], dense[kept])


@pytest.mark.parametrize("sparse,expected", [(0, 0.0), (8, 1.0)])
def test_sparse_gaussian_extremes(sparse, expected):
    t = fill(dict(type="gaussian", sparse=sparse, seed=1), torch.empty(8, 100))
    assert t.ne(0).double().mean().item() == expected


def test_sparse_mask_takes_its_own_blocks():
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="gaussian", sparse=2, seed=8))
    t = torch.empty(10, 30, dtype=torch.float64)
    assert f.blocks_for(t) == 300 // 2 + 300 // 4
    f.fill(t)
    assert f.offset == 225
    dense = nspl_filler.get_filler(nspl_filler.FillerParameter(type="gaussian", seed=8))
    dense.fill(t.clone())
    assert dense.offset == 150


# ------------------------------------------------------------------ positive_unitball
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12), (torch.float16, 5e-3),
                                       (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (50, 1000), (7,)])
def test_positive_unitball_rows_sum_to_one(dtype, tol, shape):
    t = fill(dict(type="positive_unitball", seed=9), torch.empty(shape, dtype=dtype))
    assert (t >= 0).all() and (t <= 1).all()
    sums = t.double().reshape(shape[0], -1).sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_positive_unitball_sixteen_bit_values_are_positive_normal_numbers(dtype):
    # Rows of 4096 float16 values have mean 2^-12: the eighth of the quotients below 2^-14,
    # the smallest normal float16, would round to subnormals or 0, and are raised to it
    # instead, which adds about 3% to the row sums.
    t = fill(dict(type="positive_unitball", seed=11), torch.empty(8, 4096, dtype=dtype))
    smallest = torch.finfo(dtype).tiny
    assert (t.double() >= smallest).all()
    sums = t.double().sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), rtol=0, atol=5e-2)


def test_positive_unitball_rows_too_wide_for_the_dtype_are_an_error():
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="positive_unitball", seed=1))
    t = torch.full((2, 16385), 7.0, dtype=torch.float16)
    with pytest.raises(ValueError, match="rows of 16385 values .* mean 1/16385 is below its smallest normal"):
        f.fill(t)
    assert t.eq(7.0).all() and f.offset == 0
    # float32 holds the mean of the same rows.
    assert fill(dict(type="positive_unitball", seed=1), torch.empty(2, 16385)).gt(0).all()


def test_positive_unitball_rows_are_normalised_uniforms():
    # Before the division each row is uniform on (0, 1): the values times the row length have
    # mean 1, and rows are scaled copies of uniforms, so each row over its max is uniform.
    t = fill(dict(type="positive_unitball", seed=10), torch.empty(64, 2048, dtype=torch.float64))
    assert abs((t * 2048).mean().item() - 1) < 5 * math.sqrt(1 / 3) / math.sqrt(t.numel())
    row = (t[0] / t[0].max()).numpy()
    assert scipy.stats.kstest(row, scipy.stats.uniform(0, 1).cdf).pvalue > 1e-3


# ------------------------------------------------------------------ xavier, msra
FAN_IN, FAN_OUT = 2 * 4 * 5, 1000 * 4 * 5  # Caffe's test blob (1000, 2, 4, 5)


@pytest.mark.parametrize("norm,n", [("fan_in", FAN_IN), ("fan_out", FAN_OUT), ("average", (FAN_IN + FAN_OUT) / 2)])
@pytest.mark.parametrize("kind,variance", [("xavier", 1.0), ("msra", 2.0)])
def test_xavier_and_msra_variance(norm, n, kind, variance):
    # Caffe's test checks mean 0 and the std within 0.1; here within 5 standard errors.
    t = fill(dict(type=kind, variance_norm=norm, seed=11), torch.empty(1000, 2, 4, 5, dtype=torch.float64))
    x = t.numpy().ravel()
    target = variance / n
    kurtosis = 1.8 if kind == "xavier" else 3.0
    assert abs(x.mean()) < 5 * math.sqrt(target / x.size)
    assert abs(np.mean(x * x) / target - 1) < 5 * math.sqrt((kurtosis - 1) / x.size)
    if kind == "xavier":
        assert np.abs(x).max() <= math.sqrt(3 / n)


# ------------------------------------------------------------------ bilinear
def caffe_bilinear(k):
    """Caffe's weights as exact fractions: f = ceil(K/2), c = (K-1)/(2f), (1-|x/f-c|)(1-|y/f-c|)."""
    f = math.ceil(k / 2)
    c = Fraction(k - 1, 2 * f)
    one_d = [1 - abs(Fraction(x, f) - c) for x in range(k)]
    return [[one_d[y] * one_d[x] for x in range(k)] for y in range(k)]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bilinear_weights_are_exactly_caffes(k, dtype):
    t = fill(dict(type="bilinear"), torch.empty(3, 2, k, k, dtype=dtype))
    # Each weight is the exact value rounded to the dtype (through float64, which rounds
    # no value of these kernels onto a float32 tie).
    want = torch.tensor([[float(v) for v in row] for row in caffe_bilinear(k)], dtype=torch.float64)
    assert torch.equal(t, want.to(dtype).expand(3, 2, k, k))


def test_bilinear_known_kernels():
    # 2x upsampling (K = 4) and 3x (K = 6; f = 3, c = 5/6): Caffe's profiles.
    four = fill(dict(type="bilinear"), torch.empty(1, 1, 4, 4, dtype=torch.float64))[0, 0]
    assert torch.equal(four[0], torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64) * 0.25)
    assert torch.equal(four, torch.outer(four[1] / 0.75, four[1] / 0.75))
    six = fill(dict(type="bilinear"), torch.empty(2, 1, 6, 6, dtype=torch.float64))[1, 0]
    profile = torch.tensor([1, 3, 5, 5, 3, 1], dtype=torch.float64) / 6
    assert torch.allclose(six, torch.outer(profile, profile), rtol=1e-15, atol=0)


def test_bilinear_interpolates_like_upsampling():
    # A deconvolution with the K = 2f - f % 2 kernel, stride f, padding ceil((f - 1) / 2) of
    # a constant image is constant away from the borders: the weights of each output sum to 1.
    factor, channels = 2, 3
    k = 2 * factor - factor % 2
    up = torch.nn.ConvTranspose2d(channels, channels, k, stride=factor, padding=math.ceil((factor - 1) / 2),
                                  groups=channels, bias=False)
    fill(dict(type="bilinear"), up.weight)
    with torch.no_grad():
        out = up(torch.ones(1, channels, 8, 8))
    assert out.shape == (1, channels, 16, 16)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.ones(()), rtol=0, atol=1e-6)


def test_bilinear_sixteen_bit_is_the_float64_kernel_rounded():
    for dtype in (torch.float16, torch.bfloat16):
        t = fill(dict(type="bilinear"), torch.empty(2, 1, 6, 6, dtype=dtype))
        want = fill(dict(type="bilinear"), torch.empty(2, 1, 6, 6, dtype=torch.float64)).to(dtype)
        assert torch.equal(t, want)


# ------------------------------------------------------------------ the stream
@pytest.mark.parametrize("param", RANDOM_TYPES, ids=lambda p: p["type"] + ("_sparse" if "sparse" in p else ""))
def test_random_fillers_continue_their_stream(param):
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(**param, seed=12))
    a = f.fill(torch.empty(6, 5, 4))
    b = f.fill(torch.empty(6, 5, 4))
    assert not torch.equal(a, b)
    assert f.offset == 2 * f.blocks_for(a)
    # A filler re-made with the seed repeats the first fill.
    assert torch.equal(a, fill(dict(param, seed=12), torch.empty(6, 5, 4)))


@pytest.mark.parametrize("param", RANDOM_TYPES, ids=lambda p: p["type"] + ("_sparse" if "sparse" in p else ""))
def test_sixteen_bit_fills_are_the_float32_values_rounded(param):
    want = fill(dict(param, seed=13), torch.empty(8, 6, 5))
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(fill(dict(param, seed=13), torch.empty(8, 6, 5, dtype=dtype)), want.to(dtype))


@pytest.mark.parametrize("param", RANDOM_TYPES + [dict(type="constant", value=3.0), dict(type="bilinear")],
                         ids=lambda p: p["type"] + ("_sparse" if "sparse" in p else ""))
def test_views_get_the_values_of_their_logical_indices(param):
    shape = (6, 4, 5, 5)
    want = fill(dict(param, seed=14), torch.empty(shape))
    view = torch.empty(5, 5, 4, 6).permute(3, 2, 0, 1)  # non-contiguous, same logical shape
    assert torch.equal(fill(dict(param, seed=14), view), want)
    channels_last = torch.empty(shape).to(memory_format=torch.channels_last)
    assert torch.equal(fill(dict(param, seed=14), channels_last), want)


def test_unseeded_fillers_follow_torch_manual_seed():
    for param in RANDOM_TYPES:
        f = nspl_filler.get_filler(nspl_filler.FillerParameter(**param))
        torch.manual_seed(0)
        a = f.fill(torch.empty(8, 5))
        torch.manual_seed(0)
        assert torch.equal(a, f.fill(torch.empty(8, 5))), param


def test_meta_tensors_are_checked_and_advance_the_stream():
    for param in RANDOM_TYPES + [dict(type="constant"), dict(type="bilinear")]:
        f = nspl_filler.get_filler(nspl_filler.FillerParameter(**param, seed=1))
        t = torch.empty(4, 4, 3, 3, device="meta")
        assert f.fill(t) is t
        assert f.offset == f.blocks_for(t)
    with pytest.raises(ValueError, match="bilinear"):
        fill(dict(type="bilinear"), torch.empty(4, 4, 3, 2, device="meta"))


def test_fill_keeps_the_tensor_object_and_counts_a_version():
    w = torch.nn.Parameter(torch.empty(4, 4))
    before = w._version
    assert fill(dict(type="uniform", seed=1), w) is w
    assert w._version > before and w.requires_grad


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "param,error,match",
    [
        (dict(type="constant", sparse=3), ValueError, "sparse"),
        (dict(type="uniform", sparse=0), ValueError, "sparse"),
        (dict(type="positive_unitball", sparse=1), ValueError, "sparse"),
        (dict(type="xavier", sparse=1), ValueError, "sparse"),
        (dict(type="msra", sparse=1), ValueError, "sparse"),
        (dict(type="bilinear", sparse=1), ValueError, "sparse"),
        (dict(type="nspl", sparse=1), ValueError, "sparse"),
        (dict(type="gaussian", sparse=-2), ValueError, "sparse"),
        (dict(type="constant", value=float("nan")), ValueError, "value"),
        (dict(type="uniform", min=2.0, max=1.0), ValueError, "min <= max"),
        (dict(type="uniform", max=float("inf")), ValueError, "max"),
        (dict(type="gaussian", std=0.0), ValueError, "std"),
        (dict(type="gaussian", mean=float("nan")), ValueError, "mean"),
        (dict(type="Gaussian"), ValueError, "unknown filler type 'Gaussian'"),
    ],
)
def test_bad_parameters_are_refused_when_the_filler_is_made(param, error, match):
    with pytest.raises(error, match=match):
        nspl_filler.get_filler(nspl_filler.FillerParameter(**param))


@pytest.mark.parametrize(
    "param,shape,dtype,match",
    [
        (dict(type="bilinear"), (4, 4, 3), torch.float32, "4-D"),
        (dict(type="bilinear"), (4, 4, 3, 2), torch.float32, "square"),
        (dict(type="gaussian", sparse=5), (4, 10), torch.float32, "cannot exceed the 4 outputs"),
        (dict(type="gaussian", sparse=1), (), torch.float32, "at least one dimension"),
        (dict(type="positive_unitball"), (), torch.float32, "at least one axis"),
        (dict(type="constant", value=1e5), (3, 3), torch.float16, "overflows"),
        (dict(type="uniform", min=-1e5, max=0.0), (3, 3), torch.float16, "overflows"),
        (dict(type="gaussian", mean=65000.0, std=100.0), (3, 3), torch.float16, "overflows"),
    ],
)
def test_a_refused_fill_writes_nothing_and_keeps_the_stream(param, shape, dtype, match):
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(**param, seed=1))
    t = torch.full(shape, 7.0, dtype=dtype)
    with pytest.raises(ValueError, match=match):
        f.fill(t)
    assert t.eq(7.0).all() and f.offset == 0


def test_a_fill_of_two_ops_is_refused_whole_at_the_end_of_the_stream():
    # A sparse gaussian takes the gaussian's blocks, then the mask's. Near the end of the
    # stream (block 2^63 - 1) the gaussian's 4 blocks of a 4x4 float32 tensor fit and the
    # mask's do not: the fill is refused before the gaussian writes.
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="gaussian", sparse=1, seed=1))
    for numel in [2**60] * 15 + [2**60 - 12]:  # meta tensors move the stream, write nothing
        f.fill(torch.empty(numel, device="meta"))
    assert f.offset == 2**63 - 6
    t = torch.full((4, 4), 7.0)
    with pytest.raises(ValueError, match="past the end of the stream"):
        f.fill(t)
    assert t.eq(7.0).all() and f.offset == 2**63 - 6


# ------------------------------------------------------------------ CUDA
@requires_cuda
@pytest.mark.parametrize("param", RANDOM_TYPES + [dict(type="constant", value=0.5), dict(type="bilinear")],
                         ids=lambda p: p["type"] + ("_sparse" if "sparse" in p else ""))
def test_cuda_gives_the_cpu_values(param):
    shape = (16, 8, 4, 4)
    cpu = fill(dict(param, seed=15), torch.empty(shape))
    gpu = fill(dict(param, seed=15), torch.full(shape, float("nan"), device="cuda")).cpu()
    if param["type"] in ("gaussian", "msra"):
        # The normal is within 4 ulp between devices (docs/spec.md §4); the sparse mask is the same.
        assert torch.equal(cpu.eq(0), gpu.eq(0))
        assert torch.allclose(gpu, cpu, rtol=1e-6, atol=1e-6)
    elif param["type"] == "positive_unitball":
        # The row sums are reduced in a device's own order.
        assert torch.allclose(gpu, cpu, rtol=1e-6, atol=0)
    else:
        assert torch.equal(gpu, cpu)
