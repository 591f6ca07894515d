"""An independent implementation of docs/spec.md §2-§4 (stream version 2) for the tests:
Philox4x32-10 in NumPy uint64 arithmetic, the element -> (block, word) map, the cells and
their exact centres, and the inverse CDF at a cell's centre, in mpmath at high precision
(inverse_cdf_mp, the accuracy reference) or in x87 extended precision for whole tensors
(inverse_cdf). Written from the spec, not from the kernels: nothing here rounds as the
kernels do."""
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


def cells(bits: np.ndarray, double: bool) -> tuple[np.ndarray, np.ndarray]:
    """(m, negative) of elements with random bits `bits` (stream version 2, docs/spec.md §4): the
    sign is bit 0, m the bits above it (31 of a uint32 word, 63 of float64's uint64), the
    index of the magnitude's cell; its uniform is the cell's centre u = (m + 1/2)·2^-31
    (2^-63)."""
    if double:
        return bits >> np.uint64(1), (bits & np.uint64(1)).astype(bool)
    return (bits >> 1).astype(np.uint32), (bits & 1).astype(bool)


def cell_bits(double: bool) -> int:
    """Bits of m: 31 (16/32-bit outputs) or 63 (float64)."""
    return 63 if double else 31


def cell_centre(m: int, double: bool):
    """(u, q) of cell m as exact mpmath numbers: u = (2m + 1)/2^(p+1), q = 1 - u."""
    import mpmath

    p = cell_bits(double) + 1
    numerator = 2 * int(m) + 1
    return mpmath.ldexp(numerator, -p), mpmath.ldexp((1 << p) - numerator, -p)


def inverse_cdf_mp(u, q, alpha: float, ratio: float):
    """y on [1, r] with density ∝ y^-alpha at CDF value u = 1 - q (u and q exact mpmath
    numbers), in mpmath at the working precision, from the CDF F(y) = (y^b - 1)/(r^b - 1),
    b = 1 - alpha (F(y) = ln y / ln r at b = 0), solved for y:
        b < 0: y^b = q + u·r^b          b > 0: y^b = r^b·(u + q·r^-b)        b = 0: y = r^u
    (sums of two positive terms, so the high-precision evaluation loses nothing)."""
    import mpmath

    r = mpmath.mpf(ratio)
    b = 1 - mpmath.mpf(alpha)
    if b == 0:
        return mpmath.power(r, u)
    # y^b = 1 + s·expm1(±b·L) with s = u (b < 0) or q (b > 0): by log1p where that sum is
    # near 1 (alpha near 1, or s small), else as the sum of two positive terms.
    s, t = (u, q) if b < 0 else (q, u)
    k = -abs(b) * mpmath.log(r)
    e = mpmath.expm1(k)
    if abs(s * e) < 0.5:
        log_yb = mpmath.log1p(s * e)
    else:
        log_yb = mpmath.log(t + s * mpmath.exp(k))
    return mpmath.exp(log_yb / b) if b < 0 else r * mpmath.exp(log_yb / b)


def exact_magnitudes(ms, alpha: float, ratio: float, scale: float, double: bool, precision: int = 160) -> np.ndarray:
    """c·F^-1 at the exact centre of each cell m in `ms`, by mpmath at `precision` bits,
    rounded to float64 (a float64 rounding is far below the kernels' float32 bound; for
    float64 outputs `exact_magnitudes_mp` keeps the digits)."""
    return np.array([float(v) for v in exact_magnitudes_mp(ms, alpha, ratio, scale, double, precision)])


def exact_magnitudes_mp(ms, alpha, ratio, scale, double, precision=160) -> list:
    import mpmath

    with mpmath.workprec(precision):
        c = mpmath.mpf(scale)
        return [c * inverse_cdf_mp(*cell_centre(m, double), alpha, ratio) for m in ms]


def symmetric_uniforms(seed: int, offset: int, indices: np.ndarray, double: bool) -> np.ndarray:
    """The uniform and gaussian samplers' variate in (-1, 1), exact in float64: the sign of
    bit 0 and |v| = (j + 1/2)·2^-23 with j = w >> 9, the word's top 23 bits (float64
    outputs: (j + 1/2)·2^-52 with j = v >> 12, the top 52 of the 64 bits)."""
    bits = element_bits(seed, offset, indices, double)
    if double:
        j = (bits >> np.uint64(12)).astype(np.float64)
        magnitude = (j + 0.5) * 2.0**-52
        negative = (bits & np.uint64(1)).astype(bool)
    else:
        j = (bits >> 9).astype(np.float64)
        magnitude = (j + 0.5) * 2.0**-23
        negative = (bits & 1).astype(bool)
    return np.where(negative, -magnitude, magnitude)


def inverse_cdf(u: np.ndarray, q: np.ndarray, alpha: float, ratio: float) -> np.ndarray:
    """y at CDF values u = 1 - q (both given, each exact), in x87 extended precision (64-bit
    significand) by the same non-cancelling forms as inverse_cdf_mp: fast, for whole
    tensors, accurate to a few 2^-64 relative (tests compare it with inverse_cdf_mp)."""
    ld = np.longdouble
    u = np.asarray(u, dtype=ld)
    q = np.asarray(q, dtype=ld)
    L = np.log(ld(ratio))
    b = ld(1.0) - ld(alpha)
    if b == 0:
        return np.exp(u * L).astype(np.float64)
    s, t = (u, q) if b < 0 else (q, u)
    k = -abs(b) * L
    e = np.expm1(k)
    near_one = np.abs(s * e) < 0.5
    log_yb = np.where(near_one, np.log1p(s * e), np.log(np.where(near_one, 1, t + s * np.exp(k))))
    y = np.exp(log_yb / b) if b < 0 else np.exp(L + log_yb / b)
    return y.astype(np.float64)


def uniforms(seed: int, offset: int, indices: np.ndarray, double: bool):
    """(u, q, negative) for elements at logical indices `indices`: the cell centres
    u = (m + 1/2)·2^-31 (2^-63) and q = 1 - u, exact in extended precision (64-bit
    significand: 2m + 1 < 2^64), and the sign bits."""
    m, negative = cells(element_bits(seed, offset, indices, double), double)
    p = cell_bits(double) + 1
    numerator = 2 * m.astype(np.uint64) + np.uint64(1)
    u = np.ldexp(numerator.astype(np.longdouble), -p)
    # 2^p - (2m + 1), wrapping in uint64 arithmetic (exact: the result is below 2^p).
    complement = (np.uint64(0) - numerator) & np.uint64((1 << p) - 1)
    q = np.ldexp(complement.astype(np.longdouble), -p)
    return u, q, negative


def second_moment(alpha: float, ratio: float, power: int = 2) -> float:
    """E[y^power] for y on [1, r] with density ∝ y^-alpha, by direct integration in closed
    form: (1/Z)∫ y^(power - alpha) dy, Z = ∫ y^-alpha dy (each = (r^e - 1)/e or ln r)."""

    def integral(exponent_plus_one: float) -> float:
        e = exponent_plus_one
        L = math.log(ratio)
        return L if e == 0 else math.expm1(e * L) / e

    return integral(power + 1 - alpha) / integral(1 - alpha)


def power_law_values(seed, offset, indices, alpha, ratio, scale, double):
    """sign · scale · F^-1(cell centre) for the given logical indices, float64 (extended
    precision inside)."""
    u, q, negative = uniforms(seed, offset, indices, double)
    v = scale * inverse_cdf(u, q, alpha, ratio)
    return np.where(negative, -v, v), u
