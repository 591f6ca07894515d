"""The CUDA backend: with an explicit seed it gives the CPU's values for every dtype, layout,
size, offset and shard; it samples the right laws; and it works with torch's CUDA
generator, CUDA graphs, torch.compile, opcheck and the Caffe-style fillers.

Agreement with the CPU (docs/spec.md §4). Both devices run the element math of nspl_math.h, which
uses only correctly rounded operations (+ - * /, sqrt, the fmas it writes; no contraction on
either device, no libm, no hardware approximation), so the values are identical bit for
bit — every dtype, the power law, the uniform and the float32 gaussian alike (float16 and
bfloat16 are the same float32 values rounded the same way). The one exception:
- gaussian float64: z = erfinv(x) is refined with libm's erf/erfc, whose last-ulp rounding
  differs between the host libm and CUDA's; near |x| = 1 a last-ulp difference of erf
  moves z by that much over erf'(z): the bound includes that factor.
Signs are always identical.
"""
import math

import numpy as np
import pytest
import torch

import nspl_filler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ops = torch.ops.nspl_filler
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def dtype_id(dtype):
    """Test ids name the dtype (float32, not dtype0), so -k can select by it."""
    return str(dtype).replace("torch.", "")
SEED = 20240607


# --------------------------------------------------------------------------- fills
class Fill:
    """One of the samplers with fixed parameters: `run(t, **stream)` fills t, where
    stream is seed=/offset=/generator=/global_shape=/global_start= as the ops take them."""

    def __init__(self, name, run, law, alpha=1.0, ratio=100.0, std=None):
        self.name, self.run, self.law = name, run, law
        self.alpha, self.ratio, self.std = alpha, ratio, std

    def __repr__(self):
        return self.name


FILLS = [
    # fan_in given, so any rank works; the shard tests check fans from the global shape.
    Fill("nspl", lambda t, **kw: ops.nspl_(t, fan_in=64.0, **kw), "power_law"),
    Fill("power_law_a0.5", lambda t, **kw: ops.symmetric_power_law_(t, 0.5, 0.01, 1.0, **kw), "power_law", 0.5, 100.0),
    Fill("power_law_a2.5", lambda t, **kw: ops.symmetric_power_law_(t, 2.5, 1e-3, 1.0, **kw), "power_law", 2.5, 1000.0),
    # exp(-|b|·ln r) underflows float32: the power law's third form.
    Fill("power_law_a30", lambda t, **kw: ops.symmetric_power_law_(t, 30.0, 1e-3, 1.0, **kw), "power_law", 30.0, 1000.0),
    Fill("uniform", lambda t, **kw: ops.symmetric_uniform_(t, 0.3, **kw), "uniform", std=0.3 / math.sqrt(3.0)),
    Fill("normal", lambda t, **kw: ops.normal_(t, 0.02, **kw), "normal", std=0.02),
    # ViT's init: std 0.02 on [-2σ, 2σ], by the exact inverse CDF (docs/spec.md §2b): the same bits.
    Fill("trunc_normal", lambda t, **kw: ops.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04, **kw), "trunc_normal", std=0.02),
]
# By name, never by position: a fill inserted into FILLS must not change what these mean
# (tests/test_cuda_fill_names.py checks on the CPU that each name is the law it says).
FILL = {fill.name: fill for fill in FILLS}
NSPL, UNIFORM, NORMAL = FILL["nspl"], FILL["uniform"], FILL["normal"]


def nan_cuda(*shape, dtype=torch.float32):
    """A CUDA tensor of NaNs: an element a fill fails to write stays NaN, which
    assert_same_stream rejects, so stale memory cannot pass for a written value."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    return torch.full(shape, float("nan"), dtype=dtype, device="cuda")


def reference(fill, shape, dtype, **stream):
    """The CPU's values for the logical elements of a tensor of `shape`."""
    t = torch.empty(shape, dtype=dtype)
    fill.run(t, **stream)
    return t


# ----------------------------------------------------------------------- agreement
def _bits(t):
    int_type = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
                torch.float64: torch.int64}[t.dtype]
    return t.contiguous().view(int_type).to(torch.int64)


def assert_same_stream(got, want, fill):
    """got (any device, any layout) holds the values of want (CPU) to the tolerance of the
    module docstring."""
    got = got.detach().cpu()
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.isfinite(got).all()
    assert torch.equal(torch.signbit(got), torch.signbit(want)), "signs differ"
    # Signs agree, so the distance between the bit patterns counts the ulps between them.
    ulps = (_bits(got) - _bits(want)).abs()
    if fill.law != "normal" or got.dtype != torch.float64:
        differing = int((ulps != 0).sum())
        assert differing == 0, f"{differing} of {got.numel()} values differ, by up to {int(ulps.max())} ulp"
        return
    g, w = got.double().numpy().ravel(), want.double().numpy().ravel()
    eps = torch.finfo(got.dtype).eps
    # float64 gaussian: value = std·sqrt(2)·z with erf(z) = x. A difference of a few
    # ulp of 1 in erf(z) moves z by that much / erf'(z) = / (2/sqrt(pi)·exp(-z²)).
    scale = fill.std * math.sqrt(2.0)
    z = w / scale
    bound = 8 * eps * np.abs(w) + scale * 4 * eps / (2 / math.sqrt(math.pi) * np.exp(-z * z))
    excess = np.abs(g - w) - bound
    assert excess.max() <= 0, f"{int((excess > 0).sum())} values outside the bound, worst at {int(excess.argmax())}"


def test_cuda_kernels_are_built():
    assert nspl_filler.cuda_built, "nspl_filler was built without its CUDA kernels"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("fill", FILLS, ids=repr)
def test_contiguous_matches_cpu(fill, dtype):
    shape = (257, 129)  # 33153 elements: not a multiple of 4, partial last block
    t = nan_cuda(shape, dtype=dtype)
    fill.run(t, seed=SEED)
    assert_same_stream(t, reference(fill, shape, dtype, seed=SEED), fill)


def _resident_threads():
    """An upper bound on the threads of any launch here: grids are sized to what the device
    holds resident at once, so a kernel with more units than this loops."""
    props = torch.cuda.get_device_properties(0)
    return props.multi_processor_count * props.max_threads_per_multi_processor


@pytest.mark.parametrize("fill", [NSPL, UNIFORM], ids=repr)
def test_many_grid_stride_iterations_match_cpu(fill):
    # More Philox blocks than one launch has threads, so threads loop.
    numel = 4 * 3 * _resident_threads() + 3
    t = nan_cuda(numel)
    fill.run(t, seed=SEED)
    assert_same_stream(t, reference(fill, (numel,), torch.float32, seed=SEED), fill)


@pytest.mark.parametrize("fill", [NSPL, UNIFORM], ids=repr)
@pytest.mark.parametrize("layout", ["transposed", "channels_last"])
def test_strided_grid_stride_iterations_match_cpu(fill, layout):
    # The strided kernel with over three units (Philox blocks of a row) per resident thread,
    # rows of a length that is not a multiple of 4, so rows start at every lane.
    units = 3 * _resident_threads() + 5
    if layout == "transposed":
        cols = 1027
        rows = -(-units * 4 // cols)
        t = torch.full((cols, rows), float("nan"), device="cuda").t()
    else:
        channels, side = 64, 31
        batch = -(-units * 4 // (channels * side * side))
        t = torch.full((batch, channels, side, side), float("nan"), device="cuda").to(memory_format=torch.channels_last)
    fill.run(t, seed=SEED)
    assert_same_stream(t, reference(fill, t.shape, torch.float32, seed=SEED), fill)


def test_fill_past_two_to_the_31_elements_matches_cpu_slices():
    # 2^31 + 5 float16 elements (4 GiB): indices past 2^31 get the values of their global
    # index, checked against the CPU fill of slices via global_shape / global_start.
    numel = (1 << 31) + 5
    if torch.cuda.mem_get_info()[0] < 6 * (1 << 30):
        pytest.skip("needs 6 GiB of free device memory")
    t = nan_cuda(numel, dtype=torch.float16)
    for fill in (NSPL, UNIFORM):
        fill.run(t, seed=SEED)
        for start in ((1 << 31) - 4099, numel - 4097):
            want = torch.empty(4097, dtype=torch.float16)
            fill.run(want, seed=SEED, global_shape=[numel], global_start=[start])
            assert_same_stream(t[start:start + 4097], want, fill)
    del t
    torch.cuda.empty_cache()


# A layout: (elements of a flat buffer, the view of it to fill). Values depend on the
# view's logical indices alone, and the buffer outside the view must stay untouched.
LAYOUTS = {
    "transposed": (129 * 257, lambda b: b.view(129, 257).t()),
    "sliced": (300 * 140, lambda b: b.view(300, 140)[5:262, 3:132]),
    "stepped": (301 * 95, lambda b: b.view(301, 95)[1::2, ::3]),
    "channels_last": (8 * 5 * 7 * 9, lambda b: b.view(8, 7, 9, 5).permute(0, 3, 1, 2)),
    "permuted_3d": (6 * 7 * 11, lambda b: b.view(6, 7, 11).permute(2, 0, 1)),
    # Contiguous, but the pointer is off a vector boundary and numel is odd.
    "from_element_1": (1000, lambda b: b[1:]),
    "from_element_3": (1000, lambda b: b[3:-2]),
    # Contiguous and vector-aligned, with a partial last block.
    "from_element_4": (1000, lambda b: b[4:-1]),
    "column": (123 * 5, lambda b: b.view(123, 5)[:, 2]),
    "scalar": (1, lambda b: b.view(())),
    "size_one_dims": (21, lambda b: b.view(1, 7, 1, 3, 1)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("fill", FILLS, ids=repr)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_match_cpu(layout, fill, dtype):
    size, make_view = LAYOUTS[layout]
    buffer = torch.full((size,), float("nan"), dtype=dtype, device="cuda")
    view = make_view(buffer)
    fill.run(view, seed=SEED)
    assert_same_stream(view, reference(fill, view.shape, dtype, seed=SEED), fill)
    in_view = torch.zeros(size, dtype=torch.bool)
    in_view.as_strided(view.shape, view.stride(), view.storage_offset()).fill_(True)
    assert torch.isnan(buffer.cpu()[~in_view]).all(), "wrote outside the view"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("numel", list(range(1, 14)) + [31, 4097])
def test_small_and_odd_sizes_match_cpu(numel, dtype):
    for fill in (NSPL, UNIFORM):
        t = nan_cuda(numel, dtype=dtype)
        fill.run(t, seed=SEED)
        assert_same_stream(t, reference(fill, (numel,), dtype, seed=SEED), fill)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("offset", [1, 2, 3, 5, 1 << 40])
def test_offsets_match_cpu(offset, dtype):
    for fill in (NSPL, UNIFORM):
        t = nan_cuda(37, 11, dtype=dtype)
        fill.run(t, seed=SEED, offset=offset)
        assert_same_stream(t, reference(fill, (37, 11), dtype, seed=SEED, offset=offset), fill)


def test_nspl_generator_matches_cpu_and_advances_alike():
    cuda_gen, cpu_gen = nspl_filler.Generator(9, 3), nspl_filler.Generator(9, 3)
    for shape, dtype in [((5, 7), torch.float32), ((9,), torch.float64), ((3, 3, 3), torch.float16)]:
        got = nspl_filler.fill_(nan_cuda(shape, dtype=dtype), fan_in=4, generator=cuda_gen)
        want = nspl_filler.fill_(torch.empty(shape, dtype=dtype), fan_in=4, generator=cpu_gen)
        assert_same_stream(got, want, NSPL)
        assert cuda_gen.get_state() == cpu_gen.get_state()


# -------------------------------------------------------------------------- shards
GLOBAL_SHAPE = (10, 11, 7)  # 77 elements per dim-0 row: shard bases are not block-aligned
SHARDS = {
    "dim0": (slice(1, 4), slice(None), slice(None)),
    "dim0_one_row": (slice(9, 10), slice(None), slice(None)),
    "dim1": (slice(None), slice(2, 9), slice(None)),
    "dim2": (slice(None), slice(None), slice(3, 6)),
    "dim2_width_one": (slice(None), slice(None), slice(4, 5)),
    "block": (slice(2, 5), slice(4, 10), slice(1, 6)),
    "single_element": (slice(7, 8), slice(3, 4), slice(6, 7)),
}


def _starts_and_shape(index):
    starts = [s.start or 0 for s in index]
    shape = [(s.stop if s.stop is not None else n) - st for s, n, st in zip(index, GLOBAL_SHAPE, starts)]
    return starts, shape


def _local_tensor(shape, starts, dtype, storage):
    if storage == "transposed":
        return torch.empty(list(reversed(shape)), dtype=dtype, device="cuda").permute(2, 1, 0)
    if storage == "offset_like_global":
        # Shifted by the global index mod 4, so whole blocks sit on vector boundaries
        # while the shard's first block is partial.
        numel = math.prod(shape)
        shift = sum(st * stride for st, stride in zip(starts, (77, 7, 1))) % 4
        return nan_cuda(numel + 4, dtype=dtype)[shift:shift + numel].view(shape)
    return nan_cuda(shape, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("storage", ["contiguous", "transposed", "offset_like_global"])
@pytest.mark.parametrize("shard", list(SHARDS))
def test_shards_get_their_slice_of_the_global_tensor(shard, storage, dtype):
    starts, shape = _starts_and_shape(SHARDS[shard])
    for fill, run in [
        # Fans of nspl_ come from the global shape, so a shard gets the global scale.
        (NSPL, lambda t, **kw: ops.nspl_(t, **kw)),
        (UNIFORM, UNIFORM.run),
    ]:
        whole = torch.empty(GLOBAL_SHAPE, dtype=dtype)
        run(whole, seed=SEED)
        local = _local_tensor(shape, starts, dtype, storage)
        run(local, seed=SEED, global_shape=list(GLOBAL_SHAPE), global_start=starts)
        assert_same_stream(local, whole[SHARDS[shard]].contiguous(), fill)


# ------------------------------------------------------------------- distributions
N_LAW = 1 << 21


def _magnitude_cdf(alpha, ratio):
    """CDF of y on [1, r] with density ∝ y^-alpha."""
    scipy_stats = pytest.importorskip("scipy.stats")
    if alpha == 1.0:
        return scipy_stats.loguniform(1.0, ratio).cdf
    b = 1.0 - alpha
    return lambda y: np.expm1(b * np.log(y)) / math.expm1(b * math.log(ratio))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_nspl_law_on_cuda(alpha, dtype):
    scipy_stats = pytest.importorskip("scipy.stats")
    ratio, fan_in = 100.0, 512
    t = nspl_filler.fill_(nan_cuda(N_LAW // fan_in, fan_in, dtype=dtype),
                          alpha=alpha, ratio=ratio, seed=5)
    sigma2 = 2.0 / fan_in  # gain sqrt(2) (relu) over n = fan_in
    c = math.sqrt(sigma2 / nspl_filler.second_moment(alpha, ratio))
    w = t.double()
    magnitude = w.abs()
    # |w| in [c, c·r], up to the rounding of c and c·r to the dtype.
    tiny = 2 * torch.finfo(dtype).eps
    assert magnitude.min().item() >= c * (1 - tiny) and magnitude.max().item() <= c * ratio * (1 + tiny)
    y = (magnitude / c).flatten().cpu().numpy()
    assert scipy_stats.kstest(y[:200_000], _magnitude_cdf(alpha, ratio)).pvalue > 1e-3
    negative = (w < 0).double().mean().item()
    assert abs(negative - 0.5) < 4 * 0.5 / math.sqrt(w.numel())
    # Var[w] = E[w²] = gain² / n, within 5 standard errors of the sample mean of w².
    w2 = w.square()
    standard_error = w2.std().item() / math.sqrt(w.numel())
    assert abs(w2.mean().item() - sigma2) < 5 * standard_error


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
def test_uniform_and_normal_laws_on_cuda(dtype):
    scipy_stats = pytest.importorskip("scipy.stats")
    t = nan_cuda(N_LAW, dtype=dtype)
    ops.symmetric_uniform_(t, 0.3, seed=1)
    assert scipy_stats.kstest(t[:200_000].cpu().double().numpy(), scipy_stats.uniform(-0.3, 0.6).cdf).pvalue > 1e-3
    ops.normal_(t, NORMAL.std, seed=2)
    assert scipy_stats.kstest(t[:200_000].cpu().double().numpy(), scipy_stats.norm(scale=NORMAL.std).cdf).pvalue > 1e-3
    assert abs(t.double().std().item() / NORMAL.std - 1) < 5 / math.sqrt(2 * N_LAW)


# --------------------------------------------------------------------------- errors
BAD_CALLS = [
    (ValueError, "alpha", lambda t: nspl_filler.fill_(t, alpha=float("nan"), seed=1)),
    (ValueError, "ratio", lambda t: nspl_filler.fill_(t, ratio=1.0, seed=1)),
    (ValueError, "gain", lambda t: nspl_filler.fill_(t, gain=-1.0, seed=1)),
    (ValueError, "mode", lambda t: nspl_filler.fill_(t, "fan_middle", seed=1)),
    (ValueError, "fan_in", lambda t: nspl_filler.fill_(t, fan_in=0, seed=1)),
    (ValueError, "overflows", lambda t: nspl_filler.symmetric_power_law_(t, 1.0, 1.0, 1e6, seed=1)),
    (ValueError, "alpha", lambda t: nspl_filler.fill_(t, alpha=float("inf"))),  # torch generator path
    (RuntimeError, "cpu|CPU", lambda t: nspl_filler.fill_(t, generator=torch.Generator())),
]


@pytest.mark.parametrize("error,match,call", BAD_CALLS)
def test_errors_leave_tensor_and_generator_unchanged(error, match, call):
    t = torch.full((8, 8), 7.0, dtype=torch.float16, device="cuda")
    before = t.clone()
    offset = torch.cuda.default_generators[t.device.index].get_offset()
    with pytest.raises(error, match=match):
        call(t)
    assert torch.equal(t, before)
    assert torch.cuda.default_generators[t.device.index].get_offset() == offset


def test_cuda_generator_for_a_cpu_tensor_is_an_error():
    t = torch.full((4, 4), 7.0)
    with pytest.raises(RuntimeError, match="CUDA generator"):
        nspl_filler.fill_(t, generator=torch.Generator(device="cuda"))
    assert (t == 7.0).all()


def test_unsupported_tensors_are_rejected_before_writing():
    ints = torch.zeros(4, 4, dtype=torch.int32, device="cuda")
    with pytest.raises(TypeError, match="Int"):
        nspl_filler.fill_(ints, seed=1)
    assert not ints.any()
    base = torch.zeros(1, 4, device="cuda")
    with pytest.raises(ValueError, match="share memory"):
        nspl_filler.fill_(base.expand(3, 4), seed=1)
    assert not base.any()


# ------------------------------------------------------------ torch's CUDA generator
def _generator():
    return torch.cuda.default_generators[torch.cuda.current_device()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
def test_torch_generator_stream_is_its_offset_over_four(dtype):
    # Key = the generator's seed, first block = its offset / 4; the offset then advances
    # by 4 · blocks (Note [Reserving torch's Philox counters] in fill_cuda.cu).
    torch.cuda.manual_seed(77)
    torch.randn(3, device="cuda")  # some other draw first, so the offset is not zero
    gen = _generator()
    offset = gen.get_offset()
    got = nspl_filler.fill_(nan_cuda(33, 7, dtype=dtype))
    want = nspl_filler.fill_(torch.empty(33, 7, dtype=dtype), generator=nspl_filler.Generator(77, offset // 4))
    assert_same_stream(got, want, NSPL)
    per_block = 2 if dtype == torch.float64 else 4
    assert gen.get_offset() == offset + 4 * -(-got.numel() // per_block)


def test_manual_seed_reproduces_and_consecutive_fills_differ():
    for reseed in (torch.manual_seed, torch.cuda.manual_seed):
        reseed(123)
        a = nspl_filler.fill_(nan_cuda(32, 32))
        b = nspl_filler.fill_(nan_cuda(32, 32))
        reseed(123)
        c = nspl_filler.fill_(nan_cuda(32, 32))
        assert torch.equal(a, c)
        assert not torch.equal(a, b)


def test_torch_cuda_generator_object():
    g = torch.Generator(device="cuda").manual_seed(5)
    default_offset = _generator().get_offset()
    a = nspl_filler.fill_(nan_cuda(16, 16), generator=g)
    b = nspl_filler.fill_(nan_cuda(16, 16), generator=g)
    g.manual_seed(5)
    assert torch.equal(a, nspl_filler.fill_(nan_cuda(16, 16), generator=g))
    assert not torch.equal(a, b)
    assert _generator().get_offset() == default_offset


def test_a_reservation_that_would_wrap_is_refused_and_consumes_nothing():
    # Note [Reserving torch's Philox counters]: the generator's offset is a uint64; an
    # increment that would carry it past 2^64 is refused before anything is reserved.
    gen = torch.Generator(device="cuda").manual_seed(1)
    gen.set_offset(2**64 - 8)
    t = torch.full((64,), 7.0, device="cuda")
    with pytest.raises(RuntimeError, match="wrap past 2\\^64"):
        nspl_filler.fill_(t, fan_in=8, generator=gen)
    with pytest.raises(RuntimeError, match="wrap past 2\\^64"):
        nspl_filler.fill_many_([t, nan_cuda(8, 8)], generator=gen)
    assert gen.get_offset() == 2**64 - 8
    assert (t == 7.0).all()


def test_cuda_graph_replays_draw_fresh_values_without_host_sync():
    torch.cuda.manual_seed(2024)
    gen = _generator()
    t = nan_cuda(300, 70)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture, as torch recommends
        nspl_filler.fill_(t)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # a host sync here would abort the capture
        nspl_filler.fill_(t)
    replays = []
    for _ in range(2):
        offset = gen.get_offset()
        graph.replay()
        torch.cuda.synchronize()
        replays.append(t.clone())
        assert gen.get_offset() > offset
        # Each replay reads the generator's state at replay time.
        want = nspl_filler.fill_(torch.empty(300, 70), generator=nspl_filler.Generator(2024, offset // 4))
        assert_same_stream(t, want, NSPL)
    assert not torch.equal(replays[0], replays[1])


def test_fill_allocates_no_device_memory():
    storage = nan_cuda(1 << 20)
    matrix = storage.view(1024, 1024)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    nspl_filler.fill_(matrix, seed=1)
    nspl_filler.fill_(matrix.t(), seed=1)
    nspl_filler.fill_(matrix)
    ops.nspl_(matrix[:, 3:500], seed=1, global_shape=[2048, 2048], global_start=[7, 9])
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() == before


def test_fills_go_on_the_current_stream():
    # The side stream sleeps first (some tens of milliseconds), so a fill wrongly put on
    # another stream would run at once, before the zero_ queued behind the sleep: then the
    # clone would hold zeros. On the current stream the fill runs after zero_, always.
    side = torch.cuda.Stream()
    t = nan_cuda(1 << 22)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)
        t.zero_()
        UNIFORM.run(t, seed=4)
        last = t.clone()  # ordered after the fill only if the fill ran on this stream
    side.synchronize()
    assert_same_stream(last, reference(UNIFORM, (1 << 22,), torch.float32, seed=4), UNIFORM)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_device_guard_fills_on_the_tensors_device():
    with torch.cuda.device(0):
        t = torch.empty(40, 9, device="cuda:1")
        nspl_filler.fill_(t, seed=SEED)
        torch.cuda.synchronize(1)
    assert_same_stream(t, nspl_filler.fill_(torch.empty(40, 9), seed=SEED), NSPL)


# ------------------------------------------------------------------ bulk op on CUDA
def _bulk_tensors(device):
    """A bulk call that takes every route of the CUDA bulk op: small contiguous tensors of
    each dtype (the table kernel), one large enough for the per-tensor contiguous kernel,
    and non-contiguous ones (the per-tensor strided kernel). NaN until filled."""

    def nan(*shape, dtype=torch.float32):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    return [
        nan(33, 7),
        nan(5, 9, dtype=torch.bfloat16),
        nan(2049, (1 << 11) + 3),
        nan(40, 30).t(),
        nan(3, 7, 5, dtype=torch.float64).permute(2, 0, 1),
        nan(11, 13, dtype=torch.float16),
    ]


def test_bulk_every_route_matches_cpu():
    cuda, cpu = _bulk_tensors("cuda"), _bulk_tensors("cpu")
    nspl_filler.fill_many_(cuda, alpha=0.7, ratio=50.0, seed=SEED)
    nspl_filler.fill_many_(cpu, alpha=0.7, ratio=50.0, seed=SEED)
    for got, want in zip(cuda, cpu):
        assert_same_stream(got, want.contiguous(), NSPL)


# Each form of the power-law sampler (kernel_args.h), one bulk kernel per form and dtype:
# alpha = 1 is the log-uniform form; alpha < 1; alpha > 1; and alpha > 1 where exp(K) =
# r^-(alpha-1) underflows the arithmetic type (1e4^-79 = 1e-316 underflows float and double
# alike, and c·r stays within float16).
BULK_FORMS = {"log_uniform": (1.0, 100.0), "alpha_below_one": (0.5, 100.0), "alpha_above_one": (2.5, 1000.0),
              "alpha_above_one_tiny_exp_k": (80.0, 1e4)}


def _many_small_tensors(device):
    """More small tensors of every dtype than one launch's table holds (a table holds a few
    hundred slots at most, fewer for float64's larger sampler), of sizes that put tensor
    boundaries at every lane of a Philox block and tiles of every length: several tables
    per dtype, each with many slots. NaN until filled."""
    tensors = []
    for k in range(2000):
        dtype = DTYPES[k % 4]
        # Up to 305 elements of any residue mod 4; four in every 50 (one per dtype) over a
        # tile (1024 Philox blocks).
        shape = (1 + k % 5, 1 + (k * 37) % 61) if k % 50 >= 4 else (1 + k % 3, 4096 + k % 7)
        tensors.append(torch.full(shape, float("nan"), dtype=dtype, device=device))
    return tensors


@pytest.mark.parametrize("stream", ["seed", "names"])
@pytest.mark.parametrize("form", list(BULK_FORMS))
def test_bulk_tables_match_cpu_bit_for_bit(form, stream):
    alpha, ratio = BULK_FORMS[form]
    cuda, cpu = _many_small_tensors("cuda"), _many_small_tensors("cpu")
    gains = [0.5 + 0.001 * k for k in range(len(cpu))]
    # names=: every tensor its own key, carried in its table slot (the key-per-tensor kernel).
    extra = dict(names=[f"layer{k}.weight" for k in range(len(cpu))]) if stream == "names" else {}
    nspl_filler.fill_many_(cuda, alpha=alpha, ratio=ratio, gain=gains, seed=SEED, **extra)
    nspl_filler.fill_many_(cpu, alpha=alpha, ratio=ratio, gain=gains, seed=SEED, **extra)
    for k, (got, want) in enumerate(zip(cuda, cpu)):
        assert torch.isfinite(want).all(), (k, form)
        assert_same_stream(got, want, NSPL)


def test_bulk_graph_capture_with_torch_generator_takes_every_route():
    torch.cuda.manual_seed(99)
    gen = _generator()
    tensors = _bulk_tensors("cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        nspl_filler.fill_many_(tensors)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        nspl_filler.fill_many_(tensors)
    offset = gen.get_offset()
    graph.replay()
    torch.cuda.synchronize()
    want = _bulk_tensors("cpu")
    nspl_filler.fill_many_(want, generator=nspl_filler.Generator(99, offset // 4))
    for got, w in zip(tensors, want):
        assert_same_stream(got, w.contiguous(), NSPL)


def test_bulk_cuda_generator_with_cpu_tensors_is_the_per_tensor_error():
    tensors = [torch.full((4, 4), 7.0), torch.full((3, 5), 7.0)]
    with pytest.raises(RuntimeError, match="CUDA generator cannot fill a tensor on cpu"):
        nspl_filler.fill_many_(tensors, generator=torch.Generator(device="cuda"))
    assert all((t == 7.0).all() for t in tensors)


def test_bulk_errors_leave_the_torch_generator_unchanged():
    good = torch.full((4, 4), 7.0, device="cuda")
    offset = _generator().get_offset()
    with pytest.raises(TypeError):
        nspl_filler.fill_many_([good, torch.zeros(3, 3, dtype=torch.int64, device="cuda")])
    with pytest.raises(ValueError):
        nspl_filler.fill_many_([good, torch.zeros(2, 3, device="cuda")], alpha=float("nan"))
    assert _generator().get_offset() == offset
    assert (good == 7.0).all()


# ---------------------------------------------------- ops, torch.compile, Caffe layer
OPCHECK_CASES = [
    (ops.nspl_.default, (), dict(seed=3)),
    (ops.nspl_.default, (), dict(seed=3, offset=7, global_shape=[12, 10], global_start=[4, 0])),
    (ops.symmetric_power_law_.default, (2.0, 0.1, 1.0), dict(seed=1)),
    (ops.symmetric_uniform_.default, (0.5,), dict(seed=1)),
    (ops.normal_.default, (0.5,), dict(seed=1)),
]


@pytest.mark.parametrize("op,args,kwargs", OPCHECK_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=dtype_id)
def test_opcheck_on_cuda(op, args, kwargs, dtype):
    torch.library.opcheck(op, (torch.empty(6, 10, dtype=dtype, device="cuda"), *args), kwargs)
    torch.library.opcheck(op, (torch.empty(10, 6, dtype=dtype, device="cuda").t(), *args), kwargs)


def test_compile_fullgraph_matches_eager():
    def init(w):
        return nspl_filler.fill_(w, seed=1)

    torch._dynamo.reset()
    compiled = torch.compile(init, fullgraph=True)
    got = compiled(torch.empty(64, 32, device="cuda"))
    assert torch.equal(got, init(torch.empty(64, 32, device="cuda")))


# The fill whose law (and so whose CPU = CUDA tolerance) each Caffe filler type samples.
CAFFE_LAWS = {"nspl": NSPL, "symmetric_power_law": NSPL, "xavier": UNIFORM, "msra": NORMAL}


@pytest.mark.parametrize("kind", list(CAFFE_LAWS))
@pytest.mark.parametrize("shape", [(64, 3, 5, 5), (10,)])
def test_caffe_fillers_give_the_cpu_values(kind, shape):
    param = dict(type=kind, min=0.01, seed=5)
    cuda_filler = nspl_filler.get_filler(nspl_filler.FillerParameter(**param))
    cpu_filler = nspl_filler.get_filler(nspl_filler.FillerParameter(**param))
    law = CAFFE_LAWS[kind]
    for _ in range(2):  # a seeded filler moves along its stream alike on both devices
        got = cuda_filler.fill(nan_cuda(shape))
        want = cpu_filler.fill(torch.empty(shape))
        assert_same_stream(got, want, law)
    assert cuda_filler.offset == cpu_filler.offset
