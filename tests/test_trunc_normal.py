"""trunc_normal_: N(mean, std²) truncated to [a, b] by the exact inverse CDF (docs/spec.md §2b).

Against scipy.stats.truncnorm (KS, moments) for central, one-sided and far-tail intervals;
bounds after rounding in every dtype; every value against an independent reference at its
cell's exact centre (mpmath); the quantile Φ⁻¹ itself against mpmath over its whole domain in
both precisions; bit identity across CPU capabilities; streams, views, errors, the Caffe filler.
"""
import inspect
import math

import numpy as np
import pytest
import torch

import nspl_filler
from nspl_filler import _C

scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")
mpmath = pytest.importorskip("mpmath")

ops = torch.ops.nspl_filler
INF = math.inf
BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
SIMD = [
    pytest.param(name, marks=pytest.mark.skipif(not _C._cpu_supported(name), reason=f"this CPU or build has no {name}"))
    for name in ("avx2", "avx512")
]
# (mean, std, a, b): central, shifted, one-sided both ways, far tails on both sides, narrow.
LAWS = [
    (0.0, 1.0, -2.0, 2.0),
    (0.5, 2.0, -1.0, 4.0),
    (0.0, 1.0, 0.0, INF),
    (1.0, 0.5, -INF, 0.8),
    (0.0, 1.0, 3.0, 8.0),
    (0.0, 1.0, -8.0, -3.0),
    (2.0, 0.1, 2.5, 2.8),
    (0.0, 0.02, -0.04, 0.04),
    (-3.0, 4.0, -3.1, -2.9),
]
# Far enough in the tail that only float64 resolves the interval's mass (2^-70 and above).
FAR_LAWS = [(0.0, 1.0, 20.0, 25.0), (0.0, 1.0, -INF, -30.0)]


@pytest.fixture(autouse=True)
def restore_capability():
    yield
    _C._set_cpu_capability("auto")


def truncnorm(mean, std, a, b):
    return scipy_stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)


def filled(law, n=1 << 16, dtype=torch.float32, seed=0, **kwargs):
    return nspl_filler.trunc_normal_(torch.empty(n, dtype=dtype), *law, seed=seed, **kwargs)


# ---------------------------------------------------------------------------------
# The law: KS and moments against scipy
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("law", LAWS + FAR_LAWS)
def test_ks_against_scipy_truncnorm(law, dtype):
    if law in FAR_LAWS and dtype != torch.float64:
        pytest.skip("the interval's mass is below what float32 arithmetic resolves (a ValueError, tested below)")
    values = filled(law, dtype=dtype, seed=11).double().numpy()
    reference = truncnorm(*law)
    result = scipy_stats.kstest(values, reference.cdf)
    assert result.pvalue > 1e-3, (law, result)
    # The mean within 5 standard errors of the truncated law's own.
    mean, var = (float(x) for x in reference.stats(moments="mv"))
    assert abs(values.mean() - mean) < 5 * math.sqrt(var / values.size), (law, values.mean(), mean)
    assert abs(values.var() / var - 1) < 0.05, (law, values.var(), var)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("law", LAWS + [(0.0, 1.0, 0.1, 0.3), (0.0, 1e3, -INF, 1.0)])
def test_every_value_lies_in_a_b_after_rounding(law, dtype):
    mean, std, a, b = law
    values = filled(law, n=1 << 15, dtype=dtype, seed=3).double()
    assert torch.isfinite(values).all()
    assert values.min().item() >= a and values.max().item() <= b, (values.min(), values.max())
    # and they are spread over the interval, not stuck at a bound
    assert values.unique().numel() > 8


def test_the_bounds_hold_for_bounds_a_dtype_cannot_hold():
    # 0.1 and 0.3 are no bfloat16 values: the clamp is to the nearest ones inside.
    for seed in range(4):
        t = nspl_filler.trunc_normal_(torch.empty(4096, dtype=torch.bfloat16), 0.2, 1.0, 0.1, 0.3, seed=seed)
        assert t.double().min().item() >= 0.1 and t.double().max().item() <= 0.3


# ---------------------------------------------------------------------------------
# Every value at its cell's exact centre, against mpmath
# ---------------------------------------------------------------------------------
def phi(x):
    return mpmath.ncdf(x)


def lower_quantile(p):
    """Φ⁻¹(p) for 0 < p <= 1/2 (an mpmath number), from scipy's ndtri refined by Newton's
    method in mpmath: independent of the package's quantile, exact to far below a float64 ulp."""
    z = mpmath.mpf(float(scipy_special.ndtri(float(p))))
    for _ in range(3):
        z -= (phi(z) - p) / mpmath.npdf(z)
    return z


def cell_centres(seed, offset, n, dtype):
    """(u, q) of the first n elements of a fill as exact mpmath numbers (docs/spec.md §4): the word's
    bits above bit 0 (31 of one word, or 63 of the element's two for float64), at the cell's centre."""
    per = 2 if dtype == torch.float64 else 4
    key = [seed & 0xFFFFFFFF, seed >> 32]
    centres = []
    for i in range(n):
        words = _C.philox4x32_10([(offset + i // per) & 0xFFFFFFFF, (offset + i // per) >> 32, 0, 0], key)
        if per == 2:
            bits, width = (words[2 * (i % 2)] << 32) | words[2 * (i % 2) + 1], 63
        else:
            bits, width = words[i % 4], 31
        m = bits >> 1
        u = mpmath.ldexp(2 * m + 1, -(width + 1))
        centres.append((u, 1 - u))
    return centres


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("law", LAWS + [(0.0, 1.0, -INF, INF)] + FAR_LAWS)
def test_values_match_the_inverse_cdf_at_each_cell_centre(law, dtype):
    """|x - x*| <= 8·eps·std·max(1, |z*|) (eps = 2^-23 for float arithmetic, 2^-52 for float64)
    with x* = mean + std·z*, z* = Φ⁻¹(Φ(α) + u·D) at the exact cell centre u, or the nearest
    bound where x* rounds past it (docs/spec.md §2b)."""
    if law in FAR_LAWS and dtype != torch.float64:
        pytest.skip("float64 only")
    mean, std, a, b = law
    n, seed, offset = 256, 0x9E3779B97F4A7C15, 5
    got = nspl_filler.trunc_normal_(torch.empty(n, dtype=dtype), *law, generator=nspl_filler.Generator(seed, offset))
    eps = 2.0**-52 if dtype == torch.float64 else 2.0**-23
    with mpmath.workprec(200):
        alpha, beta = (mpmath.mpf(a) - mean) / std, (mpmath.mpf(b) - mean) / std
        lower, upper = phi(alpha), phi(-beta)
        # the mass from the tails on one side of 0 where the interval lies there: 1 - Φ(20) needs 300 bits
        mass = phi(-alpha) - upper if alpha >= 0 else phi(beta) - lower if beta <= 0 else 1 - lower - upper
        for i, (u, q) in enumerate(cell_centres(seed, offset, n, dtype)):
            p_lower, p_upper = lower + u * mass, upper + q * mass
            z = lower_quantile(p_lower) if p_lower <= p_upper else -lower_quantile(p_upper)
            want = min(max(float(mean + std * z), a), b)
            bound = 8 * eps * std * max(1.0, abs(float(z)))
            assert abs(got[i].item() - want) <= bound, (i, got[i].item(), want, float(z))


# ---------------------------------------------------------------------------------
# The quantile Φ⁻¹ over its whole domain
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, smallest", [(torch.float32, -102), (torch.float64, -969)])
def test_the_quantile_over_its_whole_domain(dtype, smallest):
    """normal_quantile_lower(t) for t from the smallest tail mass a fill can give (2^-32·2^-70 for
    float arithmetic, 2^-64·2^-905 for float64) to 1/2, across the three rational pieces and
    their seams: within 4·eps·max(1, |Φ⁻¹(t)|) of mpmath (measured: 2.6 and 2.8), the same bits
    on every CPU path."""
    rng = np.random.default_rng(5)
    exponents = rng.uniform(smallest, -1, 700)
    seams = [0.075, float(scipy_special.ndtr(-math.sqrt(-2 * math.log(0.075)))), math.exp(-25.0), math.exp(-2.56)]
    t = np.concatenate([2.0**exponents, rng.uniform(0.0, 0.5, 300), seams, np.nextafter(seams, 0), [0.5, 2.0**smallest]])
    x = torch.tensor(t, dtype=dtype)
    x = x[(x > 0) & (x <= 0.5)]
    got = _C._math("normal_quantile", x, "scalar")
    for capability in ("avx2", "avx512"):
        if _C._cpu_supported(capability):
            assert torch.equal(_C._math("normal_quantile", x, capability).view(BITS[dtype]), got.view(BITS[dtype]))
    eps = 2.0**-52 if dtype == torch.float64 else 2.0**-23
    worst = 0.0
    with mpmath.workprec(160):
        for ti, zi in zip(x.double().tolist(), got.double().tolist()):
            want = lower_quantile(mpmath.mpf(ti))
            worst = max(worst, float(abs(zi - want)) / (eps * max(1.0, abs(float(want)))))
    assert worst <= 4.0, worst


# ---------------------------------------------------------------------------------
# The stream: reproducibility, offsets, views, threads, generators
# ---------------------------------------------------------------------------------
def same_bits(x, y):
    return x.dtype == y.dtype and torch.equal(x.contiguous().view(BITS[x.dtype]), y.contiguous().view(BITS[y.dtype]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_same_seed_same_bits_and_offsets_continue_the_stream(dtype):
    law = (0.1, 0.5, -0.3, 1.2)
    whole = filled(law, n=1001, dtype=dtype, seed=7)
    assert same_bits(whole, filled(law, n=1001, dtype=dtype, seed=7))
    assert not torch.equal(whole, filled(law, n=1001, dtype=dtype, seed=8))
    per = 2 if dtype == torch.float64 else 4
    tail = nspl_filler.trunc_normal_(torch.empty(1001 - 10 * per, dtype=dtype), *law, generator=nspl_filler.Generator(7, 10))
    assert same_bits(whole[10 * per:], tail)


def test_views_threads_and_shards_get_the_values_of_their_logical_indices():
    law = (0.0, 1.0, -1.5, 3.0)
    want = nspl_filler.trunc_normal_(torch.empty(11, 37), *law, seed=4)
    view = torch.empty(37, 11).t()
    assert same_bits(nspl_filler.trunc_normal_(view, *law, seed=4), want)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nspl_filler.trunc_normal_(torch.empty(300, 301), *law, seed=4)
        torch.set_num_threads(2)
        assert same_bits(nspl_filler.trunc_normal_(torch.empty(300, 301), *law, seed=4), one)
    finally:
        torch.set_num_threads(threads)
    shard = torch.empty(4, 37)
    ops.trunc_normal_(shard, *law, seed=4, global_shape=[11, 37], global_start=[5, 0])
    assert same_bits(shard, want[5:9])


def test_generators_advance_and_torch_manual_seed_governs_the_default():
    g = nspl_filler.Generator(3)
    first = nspl_filler.trunc_normal_(torch.empty(10), generator=g)
    assert g.get_state() == (3, 3)
    second = nspl_filler.trunc_normal_(torch.empty(10), generator=g)
    stream = nspl_filler.trunc_normal_(torch.empty(16), generator=nspl_filler.Generator(3))
    assert same_bits(first, stream[:10])
    assert same_bits(second[:4], stream[12:16])  # the second fill starts at block 3
    torch.manual_seed(1)
    x = nspl_filler.trunc_normal_(torch.empty(50))
    torch.manual_seed(1)
    assert same_bits(x, nspl_filler.trunc_normal_(torch.empty(50)))


def test_name_streams_as_the_other_fills():
    want = nspl_filler.trunc_normal_(torch.empty(8, 4), seed=nspl_filler.key_for(2, "blocks.0.attn.qkv.weight"))
    got = nspl_filler.trunc_normal_(torch.empty(8, 4), seed=2, name="blocks.0.attn.qkv.weight")
    assert same_bits(got, want)


# ---------------------------------------------------------------------------------
# Bits across CPU capabilities
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("law", LAWS + [(0.0, 1.0, -INF, INF)])
def test_cpu_paths_give_identical_bits(capability, dtype, law):
    def fill(cap):
        _C._set_cpu_capability(cap)
        # 37 columns of a transposed view: rows start off the vector width
        t = torch.empty(37, 301, dtype=dtype).t()
        return nspl_filler.trunc_normal_(t, *law, seed=2**64 - 5)
    assert same_bits(fill("scalar"), fill(capability))


@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("law", FAR_LAWS)
def test_cpu_paths_agree_in_the_far_tail_in_float64(capability, law):
    _C._set_cpu_capability("scalar")
    want = filled(law, n=4099, dtype=torch.float64, seed=1)
    _C._set_cpu_capability(capability)
    assert same_bits(filled(law, n=4099, dtype=torch.float64, seed=1), want)


# ---------------------------------------------------------------------------------
# torch.nn.init's signature and meaning, errors, meta, compile, the Caffe filler
# ---------------------------------------------------------------------------------
def test_signature_and_defaults_are_torch_nn_inits():
    ours = inspect.signature(nspl_filler.trunc_normal_).parameters
    theirs = inspect.signature(torch.nn.init.trunc_normal_).parameters
    for name in ("mean", "std", "a", "b"):
        assert ours[name].default == theirs[name].default, name
    assert list(ours)[:5] == list(theirs)[:5]
    # a and b are absolute bounds, as torch's: with std = 0.02, [-2, 2] holds the whole normal
    values = nspl_filler.trunc_normal_(torch.empty(1 << 14), std=0.02, seed=1)
    assert 0.019 < values.std().item() < 0.021


@pytest.mark.parametrize("kwargs, match", [
    (dict(std=0.0), "std"),
    (dict(std=-1.0), "std"),
    (dict(std=math.nan), "std"),
    (dict(mean=math.inf), "mean"),
    (dict(a=1.0, b=1.0), "a < b"),
    (dict(a=2.0, b=-2.0), "a < b"),
    (dict(a=math.nan), "a < b"),
    (dict(a=10.0, b=INF), "holds probability"),  # mass 7.6e-24: below float arithmetic's 2^-70
    (dict(std=1e4, a=-INF, b=INF), "range of Half"),  # values beyond float16's range
    (dict(a=1.0001, b=1.0002), "no"),  # no float16 value in [a, b]
    (dict(std=1e-30), "std"),  # below 2^-60: intermediates could be subnormal
])
def test_bad_arguments_raise_value_error_before_anything_is_written(kwargs, match):
    for device in ("cpu", "meta"):
        t = torch.full((4, 4), 7.0, dtype=torch.float16, device=device)
        with pytest.raises(ValueError, match=match):
            nspl_filler.trunc_normal_(t, **kwargs, seed=1)
        if device == "cpu":
            assert (t == 7.0).all()


def test_float64_resolves_what_float32_refuses():
    with pytest.raises(ValueError, match="float64"):
        nspl_filler.trunc_normal_(torch.empty(8), 0.0, 1.0, 10.0, INF, seed=1)
    t = nspl_filler.trunc_normal_(torch.empty(4096, dtype=torch.float64), 0.0, 1.0, 10.0, INF, seed=1)
    assert t.min().item() >= 10.0 and t.max().item() < 14.0


def test_the_domain_reaches_9_5_std_in_float32_and_35_in_float64():
    # docs/spec.md §2b: the interval's mass must be at least 2^-70 (float arithmetic), 2^-905 (float64)
    for dtype, inside, outside in ((torch.float32, 9.5, 9.6), (torch.float64, 35.0, 35.5)):
        t = nspl_filler.trunc_normal_(torch.empty(1024, dtype=dtype), 0.0, 1.0, inside, INF, seed=1)
        assert t.min().item() >= inside and t.max().item() < inside + 2.0
        with pytest.raises(ValueError, match="holds probability"):
            nspl_filler.trunc_normal_(torch.empty(4, dtype=dtype), 0.0, 1.0, outside, INF, seed=1)
        with pytest.raises(ValueError, match="holds probability"):
            nspl_filler.trunc_normal_(torch.empty(4, dtype=dtype), 0.0, 1.0, -INF, -outside, seed=1)


def test_type_errors():
    with pytest.raises(TypeError, match="Int"):
        nspl_filler.trunc_normal_(torch.zeros(4, dtype=torch.int32), seed=1)
    with pytest.raises(TypeError, match="mean"):
        nspl_filler.trunc_normal_(torch.zeros(4), mean="0", seed=1)


def test_in_place_on_parameters_and_meta_is_a_no_op():
    w = torch.nn.Parameter(torch.empty(5, 5))
    assert nspl_filler.trunc_normal_(w, seed=1) is w and w.requires_grad
    meta = torch.empty(3, 3, device="meta")
    assert nspl_filler.trunc_normal_(meta, seed=1) is meta


def test_compile_fullgraph_matches_eager():
    def init(w):
        return nspl_filler.trunc_normal_(w, 0.0, 0.02, -0.04, 0.04, seed=5)

    compiled = torch.compile(init, fullgraph=True, backend="aot_eager")
    assert same_bits(compiled(torch.empty(16, 8)), init(torch.empty(16, 8)))


def test_caffe_trunc_normal_filler_is_the_op():
    param = nspl_filler.FillerParameter(type="trunc_normal", mean=0.1, std=0.02, min=0.08, max=0.2, seed=6)
    filler = nspl_filler.get_filler(param)
    got = filler.fill(torch.empty(6, 7))
    assert same_bits(got, nspl_filler.trunc_normal_(torch.empty(6, 7), 0.1, 0.02, 0.08, 0.2, seed=6))
    assert filler.offset == 11  # ceil(42 / 4) blocks
    with pytest.raises(ValueError, match="a < b"):
        nspl_filler.get_filler(nspl_filler.FillerParameter(type="trunc_normal", min=1.0, max=0.5))
