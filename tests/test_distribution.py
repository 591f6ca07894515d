"""The sampled law: KS of |w| against scipy.stats, sign balance, and the variance gain² / n.

Thresholds: KS p-values > 1e-3 at fixed seeds (a correct sampler fails one of these with
probability ~1e-3 per test, and the seeds are fixed, so it is reproducible); sign balance
within 4 binomial standard errors; the sample variance within 5 standard errors of gain² / n,
the error computed from the law's own fourth moment."""
import math

import numpy as np
import pytest
import scipy.stats
import torch

import nspl_filler
import reference

N = 1 << 17


def magnitude_cdf(alpha, ratio):
    """CDF of y on [1, r] with density ∝ y^-alpha, from scipy where it has the law."""
    if alpha == 1.0:
        return scipy.stats.loguniform(1.0, ratio).cdf
    if alpha > 1.0:
        return scipy.stats.truncpareto(alpha - 1.0, ratio).cdf
    b = 1.0 - alpha  # y^b is uniform on [1, r^b] for b > 0
    return lambda y: (np.power(y, b) - 1.0) / (ratio**b - 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0, 3.0, 6.0])
@pytest.mark.parametrize("ratio", [10.0, 100.0, 1e6])
def test_magnitudes_follow_the_truncated_power_law(dtype, alpha, ratio):
    t = nspl_filler.symmetric_power_law_(torch.empty(N, dtype=dtype), alpha, 1.0, ratio, seed=31)
    y = t.abs().double().numpy()
    assert scipy.stats.kstest(y, magnitude_cdf(alpha, ratio)).pvalue > 1e-3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_signs_are_balanced_and_independent_of_magnitude(seed):
    t = nspl_filler.fill_(torch.empty(N, 1), fan_in=1, seed=seed)
    negative = (t < 0).double().numpy().ravel()
    assert abs(negative.mean() - 0.5) < 4 * 0.5 / math.sqrt(N)
    # Magnitudes of positive and negative values have the same law.
    y = t.abs().numpy().ravel()
    assert scipy.stats.ks_2samp(y[negative == 1], y[negative == 0]).pvalue > 1e-3


def variance_tolerance(alpha, ratio, sigma2, n):
    """5 standard errors of the mean of w² (w = c·y·sign, E[w²] = sigma2)."""
    kurtosis = reference.second_moment(alpha, ratio, 4) / reference.second_moment(alpha, ratio, 2) ** 2
    return 5 * sigma2 * math.sqrt((kurtosis - 1) / n)


@pytest.mark.parametrize(
    "mode,shape,n_of",
    [
        ("fan_in", (256, 128), lambda fi, fo: fi),
        ("fan_out", (256, 128), lambda fi, fo: fo),
        ("average", (64, 32, 3, 3), lambda fi, fo: (fi + fo) / 2),
        ("fan_avg", (512, 300), lambda fi, fo: (fi + fo) / 2),
        (nspl_filler.VarianceNorm.FAN_OUT, (64, 32, 5, 5), lambda fi, fo: fo),
    ],
)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_variance_is_gain_squared_over_n(mode, shape, n_of, alpha):
    t = nspl_filler.fill_(torch.empty(shape, dtype=torch.float64), mode, alpha=alpha, seed=7)
    fan_in, fan_out = nspl_filler.compute_fans(t)
    sigma2 = 2.0 / n_of(fan_in, fan_out)  # default nonlinearity relu: gain sqrt(2)
    w2 = t.square().mean().item()  # the law is symmetric: E[w] = 0
    assert abs(w2 - sigma2) < variance_tolerance(alpha, 100.0, sigma2, t.numel())


@pytest.mark.parametrize(
    "nonlinearity,param",
    [("linear", None), ("tanh", None), ("leaky_relu", 0.2), ("selu", None), ("sigmoid", None)],
)
def test_gain_follows_torch_calculate_gain(nonlinearity, param):
    t = nspl_filler.fill_(torch.empty(400, 500, dtype=torch.float64), nonlinearity=nonlinearity, param=param, seed=3)
    sigma2 = torch.nn.init.calculate_gain(nonlinearity, param) ** 2 / 500
    assert abs(t.square().mean().item() - sigma2) < variance_tolerance(1.0, 100.0, sigma2, t.numel())


def test_normalised_range_is_c_to_c_r():
    alpha, ratio, gain, n = 2.0, 40.0, 1.5, 64
    t = nspl_filler.fill_(torch.empty(256, n, dtype=torch.float64), alpha=alpha, ratio=ratio, gain=gain, seed=2)
    c = gain / math.sqrt(n) / math.sqrt(reference.second_moment(alpha, ratio))
    assert t.abs().min().item() >= c
    assert t.abs().max().item() <= c * ratio
    # The extremes are reached to within the sampling resolution.
    assert t.abs().min().item() < c * 1.001 and t.abs().max().item() > c * ratio * 0.9


def test_second_moment_closed_form_matches_integration():
    for alpha in [-3.0, 0.0, 1.0, 1.0 + 1e-12, 2.0, 3.0, 3.0 - 1e-12, 7.5]:
        for ratio in [1.5, 100.0, 1e30]:
            want = reference.second_moment(alpha, ratio)
            got = nspl_filler.second_moment(alpha, ratio)
            assert got == pytest.approx(want, rel=1e-9), (alpha, ratio)
    # The limits of docs/spec.md §2 at b = 0 and b = -2.
    r = 100.0
    assert nspl_filler.second_moment(1.0, r) == pytest.approx((r * r - 1) / (2 * math.log(r)), rel=1e-14)
    assert nspl_filler.second_moment(3.0, r) == pytest.approx(2 * math.log(r) / (1 - r**-2), rel=1e-14)


@pytest.mark.parametrize("kind,std_of_n", [("xavier", lambda n: math.sqrt(1 / n)), ("msra", lambda n: math.sqrt(2 / n))])
def test_caffe_fillers_have_caffe_laws(kind, std_of_n):
    t = nspl_filler.get_filler(nspl_filler.FillerParameter(type=kind, seed=5)).fill(torch.empty(512, 256, dtype=torch.float64))
    std = std_of_n(256)
    x = t.numpy().ravel() / std
    law = scipy.stats.uniform(-math.sqrt(3), 2 * math.sqrt(3)) if kind == "xavier" else scipy.stats.norm()
    assert scipy.stats.kstest(x, law.cdf).pvalue > 1e-3
