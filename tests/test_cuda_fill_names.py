"""The fills that tests/test_cuda.py names are the fills they mean, checked on the CPU so it
runs everywhere (the CUDA tests themselves skip without a GPU). Each fill of its FILLS list
is run on a CPU tensor and its values tested against the law its name and attributes
declare (Kolmogorov-Smirnov against scipy.stats, fixed seed); the module's short names
(NSPL, UNIFORM, NORMAL) and the Caffe filler types are then checked against those laws.
A fill inserted into FILLS, or a name pointing at the wrong entry, fails here."""
import math

import numpy as np
import pytest
import torch

import test_cuda

scipy_stats = pytest.importorskip("scipy.stats")

N = 200_000


def _cpu_values(fill):
    t = torch.full((N // 250, 250), float("nan"))
    fill.run(t, seed=11)
    w = t.double().flatten().numpy()
    assert np.isfinite(w).all(), f"{fill.name} left elements unwritten"
    return w


def _law_pvalue(fill, w):
    """KS p-value of the values of `fill` against the law it declares."""
    if fill.law == "uniform":
        bound = fill.std * math.sqrt(3.0)
        return scipy_stats.kstest(w, scipy_stats.uniform(-bound, 2 * bound).cdf).pvalue
    if fill.law == "normal":
        return scipy_stats.kstest(w, scipy_stats.norm(scale=fill.std).cdf).pvalue
    if fill.law == "trunc_normal":  # on [-2 std, 2 std]
        return scipy_stats.kstest(w, scipy_stats.truncnorm(-2.0, 2.0, scale=fill.std).cdf).pvalue
    assert fill.law == "power_law", fill.law
    # |w| = c·y with y on [1, r], density ∝ y^-alpha; c is the smallest magnitude, which a
    # sample of this size hits to within a relative 1e-4 (well inside the KS resolution).
    y = np.abs(w) / np.abs(w).min()
    alpha, ratio = fill.alpha, fill.ratio
    if alpha == 1.0:
        cdf = scipy_stats.loguniform(1.0, ratio).cdf
    else:
        b = 1.0 - alpha
        cdf = lambda v: np.expm1(b * np.log(np.clip(v, 1.0, ratio))) / math.expm1(b * math.log(ratio))  # noqa: E731
    return scipy_stats.kstest(y, cdf).pvalue


@pytest.mark.parametrize("fill", test_cuda.FILLS, ids=repr)
def test_each_fill_samples_the_law_it_declares(fill):
    w = _cpu_values(fill)
    assert _law_pvalue(fill, w) > 1e-3, f"{fill.name} does not sample {fill.law}"
    # Symmetric: the share of negative values within 4 standard errors of 1/2.
    assert abs((w < 0).mean() - 0.5) < 4 * 0.5 / math.sqrt(w.size)


def test_every_other_law_is_rejected():
    # The check above can fail: each fill's values are far from every other law in FILLS.
    values = {fill.name: _cpu_values(fill) for fill in test_cuda.FILLS}
    for fill in test_cuda.FILLS:
        for other in test_cuda.FILLS:
            if (other.law, other.alpha, other.ratio, other.std) == (fill.law, fill.alpha, fill.ratio, fill.std):
                continue
            assert _law_pvalue(other, values[fill.name]) < 1e-6, (fill.name, "passes as", other.name)


def test_names_are_unique_and_look_up_their_own_fill():
    names = [fill.name for fill in test_cuda.FILLS]
    assert len(set(names)) == len(names)
    assert all(test_cuda.FILL[name] is fill for name, fill in zip(names, test_cuda.FILLS))


def test_short_names_are_the_fills_they_say():
    assert test_cuda.NSPL.name == "nspl" and test_cuda.NSPL.law == "power_law" and test_cuda.NSPL.alpha == 1.0
    assert test_cuda.UNIFORM.name == "uniform" and test_cuda.UNIFORM.law == "uniform"
    assert test_cuda.NORMAL.name == "normal" and test_cuda.NORMAL.law == "normal"
    # NSPL is nspl_filler.fill_'s default law: its values are fill_'s at fan_in = 64.
    t = torch.empty(40, 64)
    test_cuda.NSPL.run(t, seed=3)
    import nspl_filler

    assert torch.equal(t, nspl_filler.fill_(torch.empty(40, 64), seed=3))


@pytest.mark.parametrize("kind,law", [("nspl", "power_law"), ("symmetric_power_law", "power_law"),
                                      ("xavier", "uniform"), ("msra", "normal")])
def test_caffe_filler_types_map_to_their_law(kind, law):
    # Caffe's XavierFiller samples a uniform and its MSRAFiller a gaussian; the CUDA test
    # compares each with the CPU under that law's tolerance.
    assert test_cuda.CAFFE_LAWS[kind].law == law
