"""The AVX2 and AVX-512 CPU kernels against the portable one, and the accuracy of
nspl_filler's own exp2 and log (csrc/nspl_math.h) that all of them use.

Every path evaluates the same templates with the same IEEE operations (explicit fma,
no contraction), so they must agree bit for bit, for every dtype, distribution, parameter
range, seed, offset, layout, shard and thread count. A capability this CPU lacks is
skipped with the reason.
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

SIMD = [
    pytest.param(name, marks=pytest.mark.skipif(not _C._cpu_supported(name), reason=f"this CPU or build has no {name}"))
    for name in ("avx2", "avx512")
]
BEST = "avx512" if _C._cpu_supported("avx512") else "avx2" if _C._cpu_supported("avx2") else "scalar"

ALPHAS = [0.0, 0.5, 1.0, 1.0 + 1e-7, 2.0, 3.0, -2.0, 10.0]
RATIOS = [2.0, 100.0, 1e30]
BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


@pytest.fixture(autouse=True)
def restore_capability():
    yield
    _C._set_cpu_capability("auto")


def fill_with(capability, make, fill):
    """The tensor `make()` filled by `fill` on the kernels of `capability`."""
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


def assert_paths_agree(capability, make, fill):
    assert_same_bits(fill_with("scalar", make, fill), fill_with(capability, make, fill))


def ratio_fits(dtype, ratio):
    return ratio < 6e4 if dtype == torch.float16 else True


# ---------------------------------------------------------------------------------
# SIMD == portable, bit for bit
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_power_law_paths_agree(capability, dtype, ratio, alpha):
    if not ratio_fits(dtype, ratio):
        pytest.skip("c·r overflows float16")
    # 37 columns: rows of a transposed view start at global indices that are not
    # multiples of the vector width.
    for seed in (0, 12345, 2**64 - 1):
        assert_paths_agree(
            capability,
            lambda: torch.empty(301, 37, dtype=dtype),
            lambda t: nspl_filler.symmetric_power_law_(t, alpha, 1.0, ratio, seed=seed),
        )
    assert_paths_agree(
        capability,
        lambda: torch.empty(37, 301, dtype=dtype).t(),
        lambda t: nspl_filler.symmetric_power_law_(t, alpha, 0.5, 0.5 * ratio, seed=7),
    )


@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_normalised_fill_paths_agree(capability, dtype):
    for mode in ("fan_in", "fan_out"):
        assert_paths_agree(
            capability,
            lambda: torch.empty(64, 3, 5, 5, dtype=dtype),
            lambda t: nspl_filler.fill_(t, mode, alpha=1.7, ratio=90.0, seed=3),
        )
    # The default (alpha = 1: the log-uniform sampler) in channels_last.
    assert_paths_agree(
        capability,
        lambda: torch.empty(16, 8, 3, 3, dtype=dtype).to(memory_format=torch.channels_last),
        lambda t: nspl_filler.fill_(t, seed=5),
    )


@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_offsets_and_generator_paths_agree(capability, dtype):
    for offset in (0, 1, 3, 2**32 - 3, 2**63 - 1 - 500):
        # 2^32 - 3: the 64-bit block counter carries from its low word inside one
        # vector of blocks. 2^63 - 1 - 500: the 500 blocks of a float64 fill end where the
        # stream does.
        assert_paths_agree(
            capability,
            lambda: torch.empty(1000, dtype=dtype),
            lambda t: ops.symmetric_power_law_(t, 2.5, 1.0, 1e6, seed=99, offset=offset),
        )

    def fill_rows_from_one_generator(t):
        generator = nspl_filler.Generator(4, 5)
        for row in t:  # 1001 elements: each row starts in the middle of a block
            nspl_filler.fill_(row, fan_in=10, generator=generator)

    assert_paths_agree(capability, lambda: torch.empty(3, 1001, dtype=dtype), fill_rows_from_one_generator)


@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shards_paths_agree(capability, dtype):
    # Shards along dim 1 map rows to scattered global indices with unaligned starts.
    for start in ((0, 3), (5, 17), (2, 1)):
        assert_paths_agree(
            capability,
            lambda: torch.empty(7, 45, dtype=dtype),
            lambda t: ops.nspl_(t, alpha=0.3, fan_in=50.0, seed=1, global_shape=[20, 100], global_start=list(start)),
        )


@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_uniform_and_normal_paths_agree(capability, dtype):
    assert_paths_agree(capability, lambda: torch.empty(3001, dtype=dtype), lambda t: ops.symmetric_uniform_(t, 0.25, seed=8))
    assert_paths_agree(capability, lambda: torch.empty(3001, dtype=dtype), lambda t: ops.normal_(t, 0.1, seed=8))


@pytest.mark.parametrize("capability", SIMD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_power_laws_paths_agree(capability, dtype):
    # exp(K) denormal or flushed to zero, u rounding to 1, |b| overflowing b·ln r, and
    # ratios whose values span nearly the whole float32 range.
    tiny = torch.finfo(torch.float32).tiny
    cases = [(30.0, 1e-3, 1e3), (1000.0, 1e-3, 1e3), (-1000.0, 1e-3, 1e3), (1.0 - 1e-12, 1e-3, 1e3),
             (1e308, 0.5, 2.0), (-1e308, 0.5, 2.0), (0.0, 1e-30, 1e20), (3.0, 4 * tiny, 1e38), (-1.0, 4 * tiny, 1e38)]
    for alpha, low, high in cases:
        assert_paths_agree(
            capability,
            lambda: torch.empty(100003, dtype=dtype),
            lambda t: nspl_filler.symmetric_power_law_(t, alpha, low, high, seed=21),
        )


@pytest.mark.parametrize("capability", ["scalar"] + SIMD)
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
    assert _C._cpu_capability() == BEST
    with pytest.raises(ValueError, match="capability"):
        _C._set_cpu_capability("sse9")
    for name in ("avx2", "avx512"):
        if not _C._cpu_supported(name):
            with pytest.raises(ValueError, match=name):
                _C._set_cpu_capability(name)


def test_avx512_implies_avx2():
    assert _C._cpu_supported("scalar")
    if _C._cpu_supported("avx512"):
        assert _C._cpu_supported("avx2")


@pytest.mark.parametrize("value", ["scalar", "avx2", "avx512", "auto", "bogus"])
def test_capability_environment_variable(value):
    expected = value if value in ("scalar", "avx2", "avx512") and _C._cpu_supported(value) else BEST
    env = dict(os.environ, NSPL_FILLER_CPU_CAPABILITY=value)
    code = "import nspl_filler; from nspl_filler import _C; print(_C._cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
    if value == "bogus" or expected != value and value != "auto":
        assert "NSPL_FILLER_CPU_CAPABILITY" in out.stderr


# ---------------------------------------------------------------------------------
# Accuracy of the own exp2 and log, against numpy in higher precision
# ---------------------------------------------------------------------------------
def ulp_error(got, exact, mantissa_bits):
    """|got - exact| in units of the last place of `exact` (a normal number) in a format
    with that many explicit mantissa bits."""
    got = got.astype(np.longdouble)
    exact = exact.astype(np.longdouble)
    exponent = np.floor(np.log2(np.abs(exact)))
    ulp = np.ldexp(np.longdouble(1), (exponent - mantissa_bits).astype(np.int64))
    return np.abs(got - exact) / ulp


def float32_grid(lo, hi, count):
    """About `count` float32 values evenly spaced in bit pattern between lo and hi (> 0)."""
    a, b = np.array([lo, hi], dtype=np.float32).view(np.int32)
    return np.unique(np.linspace(a, b, count).astype(np.int32)).view(np.float32)


def assert_capabilities_agree(name, x):
    got = _C._math(name, torch.from_numpy(x), "scalar").numpy()
    bits = np.int32 if x.dtype == np.float32 else np.int64
    for capability in ("avx2", "avx512"):
        if _C._cpu_supported(capability):
            other = _C._math(name, torch.from_numpy(x), capability).numpy()
            assert np.array_equal(other.view(bits), got.view(bits)), capability
    return got


# The domains the samplers use: exp2 where the result is a normal float, log of positive
# normal floats. Bounds measured over these grids (about 10^6 points each).
FLOAT32_CASES = [
    ("exp2", np.exp2, np.concatenate([float32_grid(1e-30, 127.99, 500000), -float32_grid(1e-30, 126.0, 500000)]), 1.0),
    ("log", np.log, np.concatenate([float32_grid(1.1754944e-38, 3.4e38, 500000), float32_grid(0.5, 2.0, 500000)]), 1.15),
]


@pytest.mark.parametrize("name, reference, x, bound", FLOAT32_CASES, ids=["exp2", "log"])
def test_float32_math_accuracy(name, reference, x, bound):
    got = assert_capabilities_agree(name, x)
    exact = reference(x.astype(np.float64))
    assert ulp_error(got, exact, 23).max() <= bound


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs an 80-bit long double reference")
@pytest.mark.parametrize("name", ["exp2", "log"])
def test_float64_math_accuracy(name):
    rng = np.random.default_rng(0)
    if name == "exp2":
        x = rng.uniform(-1022.0, 1023.99, 400000)
    else:
        x = np.exp(rng.uniform(-708.0, 709.0, 400000))
    reference = {"exp2": np.exp2, "log": np.log}[name]
    got = assert_capabilities_agree(name, x)
    exact = reference(x.astype(np.longdouble))
    assert ulp_error(got, exact, 52).max() <= 1.0
