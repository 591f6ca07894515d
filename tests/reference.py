"""An independent NumPy implementation of docs/spec.md §2-§4 for the tests: Philox4x32-10 in
uint64 arithmetic, the element -> (block, word) map, the uniform variates and the inverse
CDF in float64, written from the spec and not from the kernels."""
from __future__ import annotations

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """counter: (n, 4) uint32; key: (k0, k1). Returns (n, 4) uint32 words."""
    c = [counter[:, j].astype(np.uint64) for j in range(4)]
    k0, k1 = key[0] & MASK32, key[1] & MASK32
    for round_ in range(10):
        if round_:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK32)
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return np.stack(c, axis=1).astype(np.uint32)


def stream_words(seed: int, first_block: int, n_blocks: int) -> np.ndarray:
    """(n_blocks, 4) words of blocks first_block, ... under key = 64-bit seed."""
    seed %= 1 << 64
    blocks = np.arange(first_block, first_block + n_blocks, dtype=np.uint64)
    counter = np.zeros((n_blocks, 4), dtype=np.uint32)
    counter[:, 0] = (blocks & np.uint64(MASK32)).astype(np.uint32)
    counter[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    return philox4x32_10(counter, (seed & MASK32, seed >> 32))


def element_bits(seed: int, offset: int, indices: np.ndarray, double: bool) -> np.ndarray:
    """The random bits of the elements at logical indices `indices` (docs/spec.md §4): word i % 4 of
    block offset + i // 4 (uint32), or for float64 words 2(i % 2) and 2(i % 2) + 1 of block
    offset + i // 2 joined high-to-low into a uint64."""
    indices = np.asarray(indices, dtype=np.int64)
    per = 2 if double else 4
    lo, hi = int(indices.min()) // per, int(indices.max()) // per
    words = stream_words(seed, offset + lo, hi - lo + 1)
    block = indices // per - lo
    if double:
        lane = indices % 2
        high = words[block, 2 * lane].astype(np.uint64)
        return (high << np.uint64(32)) | words[block, 2 * lane + 1].astype(np.uint64)
    return words[block, indices % 4]


def uniforms(seed: int, offset: int, indices: np.ndarray, double: bool):
    """(u, negative) for elements at logical indices `indices` (docs/spec.md §4).

    float32 mode: u is the float32 value ((w >> 8) + 0.5) * 2^-24 (as the kernels compute
    it in float32), returned as float64; float64 mode: u = ((v >> 11) + 0.5) * 2^-53."""
    bits = element_bits(seed, offset, indices, double)
    if double:
        u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
        return u, (bits & np.uint64(1)).astype(bool)
    u = (((bits >> 8).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)).astype(np.float64)
    return u, (bits & 1).astype(bool)


def symmetric_uniforms(seed: int, offset: int, indices: np.ndarray, double: bool) -> np.ndarray:
    """x = 2u - 1 in exact arithmetic, the variate of the uniform and gaussian samplers:
    (k - 2^23 + 0.5) · 2^-23 with k = w >> 8 (float64 outputs: (k - 2^52 + 0.5) · 2^-52
    with k = v >> 11). Both are exact in float64."""
    bits = element_bits(seed, offset, indices, double)
    if double:
        k = (bits >> np.uint64(11)).astype(np.int64)
        return ((k - (1 << 52)).astype(np.float64) + 0.5) * 2.0**-52
    k = (bits >> 8).astype(np.int64)
    return ((k - (1 << 23)).astype(np.float64) + 0.5) * 2.0**-23


def inverse_cdf(u: np.ndarray, alpha: float, ratio: float) -> np.ndarray:
    """y on [1, r] with density ∝ y^-alpha at probability u, by the three forms of docs/spec.md §2,
    evaluated in x87 extended precision (64-bit significand) so that the reference's own
    rounding, amplified where the forms cancel, stays well below a float64 ulp."""
    ld = np.longdouble
    u = np.asarray(u, dtype=ld)
    L = np.log(ld(ratio))
    b = ld(1.0) - ld(alpha)
    if abs(b * L) < 1e-12:
        return np.exp(u * L).astype(np.float64)
    if b * L < 0:
        y = np.exp(np.log1p(u * np.expm1(b * L)) / b)
    else:
        y = np.exp(L + np.log(u + (ld(1) - u) * np.exp(-b * L)) / b)
    return y.astype(np.float64)


def second_moment(alpha: float, ratio: float, power: int = 2) -> float:
    """E[y^power] for y on [1, r] with density ∝ y^-alpha, by direct integration in closed
    form: (1/Z)∫ y^(power - alpha) dy, Z = ∫ y^-alpha dy (each = (r^e - 1)/e or ln r)."""

    def integral(exponent_plus_one: float) -> float:
        e = exponent_plus_one
        L = math.log(ratio)
        return L if e == 0 else math.expm1(e * L) / e

    return integral(power + 1 - alpha) / integral(1 - alpha)


def power_law_values(seed, offset, indices, alpha, ratio, scale, double):
    """sign · scale · y for the given logical indices, float64."""
    u, negative = uniforms(seed, offset, indices, double)
    v = scale * inverse_cdf(u, alpha, ratio)
    return np.where(negative, -v, v), u
