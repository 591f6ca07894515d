"""Minimax polynomial coefficients of nspl_filler's own float32 exp and log.

The kernels evaluate the polynomials below with separate multiplies and adds (no fused
multiply-add), identically on every path. This script recomputes the coefficients by
the Remez exchange algorithm in 60-digit arithmetic and prints them rounded to float32:

  exp:  e^r ≈ 1 + r + r^2·P(r),               |r| <= ln(2)/2 (+ margin)
  log:  log(1 + f) ≈ f - f^2/2 + f^3·Q(f),    sqrt(1/2) - 1 <= f <= sqrt(2) - 1 (+ margin)

each minimising the maximum relative error of the whole approximation.

    python tools/fit_polynomials.py
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 60


def remez(target, weight, lo, hi, degree, iterations=30, grid=4000):
    """Coefficients c0..c_degree of P minimising max |weight(x)·(P(x) - target(x))| on [lo, hi]."""
    n = degree + 2
    # Start from the Chebyshev extrema, the minimax points of a smooth function's limit.
    nodes = [mp.mpf(lo + hi) / 2 - mp.mpf(hi - lo) / 2 * mp.cos(mp.pi * i / (n - 1)) for i in range(n)]
    # The weights vanish at 0 (relative error of a function that is 0 or 1 there):
    # leave that point out of the grid.
    xs = [x for x in (mp.mpf(lo) + (mp.mpf(hi) - lo) * i / grid for i in range(grid + 1)) if x != 0]
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


def relative_error_f32(approx, exact, xs):
    return max(abs(float(approx(x)) / float(exact(x)) - 1) for x in xs)


def main():
    ln2_half = mp.log(2) / 2 * mp.mpf("1.01")

    def exp_target(r):
        # (e^r - 1 - r) / r^2, from its series near 0 where the difference cancels.
        if abs(r) < mp.mpf("1e-20"):
            return mp.mpf(1) / 2 + r / 6
        return (mp.exp(r) - 1 - r) / r**2

    exp_coeffs, exp_err = remez(exp_target, lambda r: r**2 / mp.exp(r), -ln2_half, ln2_half, 4)

    lo, hi = mp.sqrt(0.5) - 1 - mp.mpf("1e-3"), mp.sqrt(2) - 1 + mp.mpf("1e-3")

    def log_target(f):
        if abs(f) < mp.mpf("1e-20"):
            return mp.mpf(1) / 3 - f / 4
        return (mp.log1p(f) - f + f**2 / 2) / f**3

    log_degree = 7
    log_coeffs, log_err = remez(log_target, lambda f: f**3 / mp.log1p(f) if f != 0 else f**2, lo, hi, log_degree)

    for name, coeffs, err in (("exp P", exp_coeffs, exp_err), ("log Q", log_coeffs, log_err)):
        print(f"{name}: max relative error {float(err):.3e} (2^{float(mp.log(err, 2)):.1f})")
        for k, c in enumerate(coeffs):
            print(f"  c{k} = {np.float32(float(c))!r:>16}  ({mp.nstr(c, 20)})")


if __name__ == "__main__":
    main()
