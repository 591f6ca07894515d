"""Minimax polynomial coefficients of nspl_filler's own exp and log (csrc/nspl_math.h).

The kernels evaluate the polynomials by Horner's rule with one fused multiply-add per
coefficient, identically on every path. This script recomputes the coefficients by the
Remez exchange algorithm in 60-digit arithmetic, each minimising the maximum relative
error of the whole approximation, at the smallest degrees that keep exp within one ulp
and log within about one ulp (tests/test_simd.py measures both):

  float32  exp:  e^r ≈ 1 + r·(1 + r·P(r)),             |r| <= ln(2)/2 (+ 1%), P of degree 4
  float32  log:  log(1 + f) ≈ f + f^2·P(f),           sqrt(1/2) - 1 <= f <= sqrt(2) - 1 (+ 1e-3),
                 P of degree 7
  float64  exp:  as float32, P of degree 9
  float64  log:  log(1 + f) = 2 atanh(s) ≈ 2s + s·z·T(z),  s = f / (2 + f), z = s^2,
                 |s| <= (sqrt(2) - 1) / (sqrt(2) + 1) (+ 1%), T of degree 6

    python tools/fit_polynomials.py
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 60


def remez(target, weight, lo, hi, degree, iterations=30, grid=4000):
    """Coefficients c0..c_degree of P minimising max |weight(x)·(P(x) - target(x))| on [lo, hi]."""
    n = degree + 2
    # The weights vanish at 0 (relative error of a function that is 0 or 1 there):
    # leave that point out of the grid.
    xs = [x for x in (mp.mpf(lo) + (mp.mpf(hi) - lo) * i / grid for i in range(grid + 1)) if x != 0]
    # Start from the grid points nearest the Chebyshev extrema, the minimax points of a
    # smooth function's limit.
    chebyshev = [mp.mpf(lo + hi) / 2 - mp.mpf(hi - lo) / 2 * mp.cos(mp.pi * i / (n - 1)) for i in range(n)]
    nodes = [min(xs, key=lambda x: abs(x - c)) for c in chebyshev]
    fx = [target(x) for x in xs]
    wx = [weight(x) for x in xs]
    for _ in range(iterations):
        # P(x_i) + (-1)^i E / w(x_i) = f(x_i) for the n nodes: degree+1 coefficients and E.
        a = mp.matrix(n, n)
        rhs = mp.matrix(n, 1)
        for i, x in enumerate(nodes):
            for k in range(degree + 1):
                a[i, k] = x**k
            a[i, degree + 1] = (-1) ** i / weight(x)
            rhs[i] = target(x)
        sol = mp.lu_solve(a, rhs)
        coeffs = [sol[k] for k in range(degree + 1)]
        err = [w * (mp.polyval(coeffs[::-1], x) - f) for x, f, w in zip(xs, fx, wx)]
        # New nodes: the extreme point of each run of one sign, keeping n alternating extrema.
        runs, start = [], 0
        for i in range(1, len(err) + 1):
            if i == len(err) or mp.sign(err[i]) != mp.sign(err[start]):
                best = max(range(start, i), key=lambda j: abs(err[j]))
                runs.append(best)
                start = i
        while len(runs) > n:
            # Drop the smaller end so the alternation stays intact.
            runs.pop(0 if abs(err[runs[0]]) < abs(err[runs[-1]]) else -1)
        if len(runs) < n:
            break
        nodes = [xs[j] for j in runs]
    return coeffs, max(abs(e) for e in err)


def main():
    ln2_half = mp.log(2) / 2 * mp.mpf("1.01")

    def exp_target(r):
        # (e^r - 1 - r) / r^2, from its series near 0 where the difference cancels.
        if abs(r) < mp.mpf("1e-30"):
            return mp.mpf(1) / 2 + r / 6
        return (mp.exp(r) - 1 - r) / r**2

    def exp_weight(r):
        return r**2 / mp.exp(r)

    def log_target(f):
        if abs(f) < mp.mpf("1e-30"):
            return -mp.mpf(1) / 2 + f / 3
        return (mp.log1p(f) - f) / f**2

    def log_weight(f):
        return f**2 / abs(mp.log1p(f)) if f != 0 else mp.mpf(1)

    def atanh_target(z):
        # T(z) = (2 atanh(s) - 2s) / (s·z) with s = sqrt(z).
        if z < mp.mpf("1e-40"):
            return mp.mpf(2) / 3 + 2 * z / 5
        s = mp.sqrt(z)
        return (2 * mp.atanh(s) - 2 * s) / (s * z)

    def atanh_weight(z):
        s = mp.sqrt(z)
        return s * z / (2 * mp.atanh(s))

    f_lo, f_hi = mp.sqrt(0.5) - 1 - mp.mpf("1e-3"), mp.sqrt(2) - 1 + mp.mpf("1e-3")
    s_max = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1) * mp.mpf("1.01")
    fits = [
        ("float32 exp P", np.float32, remez(exp_target, exp_weight, -ln2_half, ln2_half, 4)),
        ("float32 log P", np.float32, remez(log_target, log_weight, f_lo, f_hi, 7)),
        ("float64 exp P", np.float64, remez(exp_target, exp_weight, -ln2_half, ln2_half, 9)),
        ("float64 log T", np.float64, remez(atanh_target, atanh_weight, mp.mpf(0), s_max**2, 6)),
    ]
    for name, dtype, (coeffs, err) in fits:
        print(f"{name}: max relative error {float(err):.3e} (2^{float(mp.log(err, 2)):.1f})")
        for k, c in enumerate(coeffs):
            print(f"  c{k} = {str(dtype(float(c)))}")


if __name__ == "__main__":
    main()
