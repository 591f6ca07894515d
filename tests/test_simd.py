"""The AVX2 CPU kernels against the scalar ones, and the accuracy of nspl_filler's own
exp / log / log1p (csrc/nspl_math.h) that both use.

Both paths perform the same float operations in the same order, so they must agree bit
for bit (stronger than the contract's 4 ulp for float32), for every dtype, distribution,
parameter range, seed, offset, layout, shard and thread count.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import nspl_filler
from nspl_filler import _C

ops = torch.ops.nspl_filler

requires_avx2 = pytest.mark.skipif(not _C._avx2_supported(), reason="this CPU or build has no AVX2 kernels")

ALPHAS = [0.0, 0.5, 1.0, 1.0 + 1e-7, 2.0, 3.0, -2.0, 10.0]
RATIOS = [2.0, 100.0, 1e30]
BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


@pytest.fixture(autouse=True)
def restore_capability():
    yield
    _C._set_cpu_capability("auto")


def fill_with(capability, make, fill):
    """The tensor `make()` filled by `fill` on the scalar or the AVX2 kernels."""
    _C._set_cpu_capability(capability)
    assert _C._cpu_capability() == capability
    tensor = make()
    fill(tensor)
    return tensor


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    bits_a = a.contiguous().view(BITS[a.dtype])
    bits_b = b.contiguous().view(BITS[b.dtype])
    differ = (bits_a != bits_b).sum().item()
    assert differ == 0, f"{differ} of {a.numel()} elements differ, e.g. {a[a != b][:4]} vs {b[a != b][:4]}"


def assert_paths_agree(make, fill):
    assert_same_bits(fill_with("scalar", make, fill), fill_with("avx2", make, fill))


def ratio_fits(dtype, ratio):
    return ratio < 6e4 if dtype == torch.float16 else True


# ---------------------------------------------------------------------------------
# SIMD == scalar
# ---------------------------------------------------------------------------------
@requires_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_power_law_paths_agree(dtype, ratio, alpha):
    if not ratio_fits(dtype, ratio):
        pytest.skip("c·r overflows float16")
    # 37 columns: rows of a transposed view start at global indices that are not
    # multiples of the vector width.
    for seed in (0, 12345, 2**64 - 1):
        assert_paths_agree(
            lambda: torch.empty(301, 37, dtype=dtype),
            lambda t: nspl_filler.symmetric_power_law_(t, alpha, 1.0, ratio, seed=seed),
        )
    assert_paths_agree(
        lambda: torch.empty(37, 301, dtype=dtype).t(),
        lambda t: nspl_filler.symmetric_power_law_(t, alpha, 0.5, 0.5 * ratio, seed=7),
    )


@requires_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_normalised_fill_paths_agree(dtype):
    for mode in ("fan_in", "fan_out"):
        assert_paths_agree(
            lambda: torch.empty(64, 3, 5, 5, dtype=dtype),
            lambda t: nspl_filler.fill_(t, mode, alpha=1.7, ratio=90.0, seed=3),
        )
    # The default (alpha = 1: the log-uniform form) in channels_last.
    assert_paths_agree(
        lambda: torch.empty(16, 8, 3, 3, dtype=dtype).to(memory_format=torch.channels_last),
        lambda t: nspl_filler.fill_(t, seed=5),
    )


@requires_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_offsets_and_generator_paths_agree(dtype):
    for offset in (0, 1, 3, 2**32 - 3, 2**63 - 1 - 500):
        # 2^32 - 3: the 64-bit block counter carries from its low word inside one
        # vector of blocks. 2^63 - 1 - 500: the 500 blocks of a float64 fill end where the
        # stream does.
        assert_paths_agree(
            lambda: torch.empty(1000, dtype=dtype),
            lambda t: ops.symmetric_power_law_(t, 2.5, 1.0, 1e6, seed=99, offset=offset),
        )

    def fill_rows_from_one_generator(t):
        generator = nspl_filler.Generator(4, 5)
        for row in t:  # 1001 elements: each row starts in the middle of a block
            nspl_filler.fill_(row, fan_in=10, generator=generator)

    assert_paths_agree(lambda: torch.empty(3, 1001, dtype=dtype), fill_rows_from_one_generator)


@requires_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shards_paths_agree(dtype):
    # Shards along dim 1 map rows to scattered global indices with unaligned starts.
    for start in ((0, 3), (5, 17), (2, 1)):
        assert_paths_agree(
            lambda: torch.empty(7, 45, dtype=dtype),
            lambda t: ops.nspl_(t, alpha=0.3, fan_in=50.0, seed=1, global_shape=[20, 100], global_start=list(start)),
        )


@requires_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_uniform_and_normal_paths_agree(dtype):
    assert_paths_agree(lambda: torch.empty(3001, dtype=dtype), lambda t: ops.symmetric_uniform_(t, 0.25, seed=8))
    assert_paths_agree(lambda: torch.empty(3001, dtype=dtype), lambda t: ops.normal_(t, 0.1, seed=8))


@requires_avx2
def test_extreme_power_laws_paths_agree():
    # Exponents whose exp(K) is denormal or flushes to zero, and u rounding to 1.
    for alpha in (30.0, 1000.0, -1000.0, 1.0 - 1e-12):
        for dtype in (torch.float32, torch.float64):
            assert_paths_agree(
                lambda: torch.empty(100003, dtype=dtype),
                lambda t: nspl_filler.symmetric_power_law_(t, alpha, 1e-3, 1e3, seed=21),
            )


@requires_avx2
@pytest.mark.parametrize("capability", ["scalar", "avx2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_thread_count_does_not_change_values(capability, dtype):
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(
                fill_with(
                    capability,
                    lambda: torch.empty(200003, dtype=dtype),
                    lambda t: nspl_filler.fill_(t, fan_in=9, alpha=2.0, seed=2),
                )
            )
        for other in results[1:]:
            assert_same_bits(results[0], other)
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------
# The capability switch
# ---------------------------------------------------------------------------------
def test_capability_switch():
    _C._set_cpu_capability("scalar")
    assert _C._cpu_capability() == "scalar"
    _C._set_cpu_capability("auto")
    assert _C._cpu_capability() == ("avx2" if _C._avx2_supported() else "scalar")
    with pytest.raises(ValueError, match="capability"):
        _C._set_cpu_capability("sse9")
    if not _C._avx2_supported():
        with pytest.raises(ValueError, match="AVX2"):
            _C._set_cpu_capability("avx2")


@pytest.mark.parametrize("value, expected", [("scalar", "scalar"), ("auto", None), ("bogus", None)])
def test_capability_environment_variable(value, expected):
    expected = expected or ("avx2" if _C._avx2_supported() else "scalar")
    env = dict(os.environ, NSPL_FILLER_CPU_CAPABILITY=value)
    code = "import nspl_filler; from nspl_filler import _C; print(_C._cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


# ---------------------------------------------------------------------------------
# Accuracy of the own exp / log / log1p, against numpy in higher precision
# ---------------------------------------------------------------------------------
def ulp_error(got, exact, mantissa_bits, min_exponent):
    """|got - exact| in units of the last place of `exact` in a format with that many
    explicit mantissa bits and smallest normal exponent (denormals: fixed ulp)."""
    got = got.astype(np.longdouble)
    exact = exact.astype(np.longdouble)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.abs(exact)))
    ulp = np.ldexp(np.longdouble(1), (np.maximum(exponent, min_exponent) - mantissa_bits).astype(np.int64))
    return np.abs(got - exact) / ulp


def float32_grid(lo, hi, count):
    """About `count` float32 values evenly spaced in bit pattern between lo and hi (> 0)."""
    a, b = np.array([lo, hi], dtype=np.float32).view(np.int32)
    return np.unique(np.linspace(a, b, count).astype(np.int32)).view(np.float32)


FLOAT32_CASES = [
    # function, reference, arguments, max ulp measured exhaustively (see nspl_math.h)
    ("exp", np.exp, np.concatenate([float32_grid(1e-30, 88.7, 400000), -float32_grid(1e-30, 104.0, 400000)]), 1.0),
    ("log", np.log, float32_grid(1e-45, 3.4e38, 800000), 1.0),
    ("log1p", np.log1p, -float32_grid(1e-30, 1.0, 400000)[:-1], 1.0),
    ("log1p", np.log1p, float32_grid(1e-30, 1e30, 400000), 1.5),
]


@pytest.mark.parametrize("name, reference, x, bound", FLOAT32_CASES, ids=["exp", "log", "log1p-", "log1p+"])
def test_float32_math_accuracy(name, reference, x, bound):
    got = _C._math(name, torch.from_numpy(x), "scalar").numpy()
    exact = reference(x.astype(np.float64))
    assert ulp_error(got, exact, 23, -126).max() <= bound
    if _C._avx2_supported():
        assert np.array_equal(_C._math(name, torch.from_numpy(x), "avx2").numpy().view(np.int32), got.view(np.int32))


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs an 80-bit long double reference")
@pytest.mark.parametrize("name", ["exp", "log", "log1p"])
def test_float64_math_accuracy(name):
    rng = np.random.default_rng(0)
    if name == "exp":
        x = rng.uniform(-745.0, 709.7, 400000)
    elif name == "log":
        x = np.exp(rng.uniform(-740.0, 709.0, 400000))
    else:
        x = np.concatenate([-rng.uniform(0.0, 1.0, 200000), np.exp(rng.uniform(-60.0, 60.0, 200000))])
    reference = {"exp": np.exp, "log": np.log, "log1p": np.log1p}[name]
    got = _C._math(name, torch.from_numpy(x), "scalar").numpy()
    exact = reference(x.astype(np.longdouble))
    assert ulp_error(got, exact, 52, -1022).max() <= 1.5
    if _C._avx2_supported():
        assert np.array_equal(_C._math(name, torch.from_numpy(x), "avx2").numpy().view(np.int64), got.view(np.int64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("capability", ["scalar", "avx2"])
def test_math_special_values(dtype, capability):
    if capability == "avx2" and not _C._avx2_supported():
        pytest.skip("no AVX2")
    inf, nan = float("inf"), float("nan")
    tiny = torch.finfo(dtype).smallest_normal

    def run(name, values):
        return _C._math(name, torch.tensor(values, dtype=dtype), capability).tolist()

    assert run("exp", [-inf, inf, 0.0, -1e4, 1e4]) == [0.0, inf, 1.0, 0.0, inf]
    assert np.isnan(run("exp", [nan])[0])
    assert run("log", [0.0, -0.0, inf, 1.0]) == [-inf, -inf, inf, 0.0]
    assert all(np.isnan(run("log", [-1.0, nan])))
    assert run("log1p", [-1.0, 0.0, inf]) == [-inf, 0.0, inf]
    assert np.isnan(run("log1p", [-2.0])[0])
    # Denormal arguments and results.
    denormal = tiny / 1024
    assert run("log", [denormal])[0] == pytest.approx(np.log(denormal), rel=1e-6)
    assert run("exp", [np.log(denormal)])[0] == pytest.approx(denormal, rel=2e-3)
