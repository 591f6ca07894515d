"""The statistics of the convergence study (benchmarks/convergence_stats.py) against
numbers worked out by hand and against scipy."""
import math
import os
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import skip_module_outside_repository

pytestmark = pytest.mark.repository
skip_module_outside_repository()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import convergence_stats as st  # noqa: E402


def test_interval_is_the_student_t_interval():
    values = [0.90, 0.92, 0.95, 0.91, 0.93]
    got = st.interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / math.sqrt(5)
    assert got.mean == pytest.approx(0.922)
    assert (got.low, got.high) == pytest.approx((0.922 - half, 0.922 + half))
    assert got.n == 5


def test_interval_of_a_diverged_run_is_unknown_not_dropped():
    got = st.interval([0.9, float("nan"), 0.8])
    assert math.isnan(got.mean) and math.isnan(got.low) and got.n == 3


def test_band_matches_interval_pointwise():
    curves = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 9.0]])
    mean, low, high = st.band(curves)
    for k in range(2):
        i = st.interval(curves[:, k])
        assert (mean[k], low[k], high[k]) == pytest.approx((i.mean, i.low, i.high))
    g_mean, g_low, g_high = st.log_band(curves)
    assert g_mean[1] == pytest.approx((2 * 4 * 9) ** (1 / 3))
    assert g_low[1] > 0 and g_low[1] < g_mean[1] < g_high[1]


def test_trailing_mean_and_first_step():
    curve = [4.0, 2.0, 0.0, 0.0, 1.0]
    assert st.trailing_mean(curve, 2).tolist() == [4.0, 3.0, 1.0, 0.0, 0.5]
    assert st.trailing_mean(curve, 10).tolist() == [4.0, 3.0, 2.0, 1.5, 1.4]
    smoothed = st.trailing_mean(curve, 2)
    assert st.first_step(smoothed, 1.0, below=True) == 3       # steps are counted from 1
    assert st.first_step(smoothed, 3.5, below=False) == 1
    assert st.first_step(smoothed, -1.0, below=True) is None
    assert st.censored([3, None, 7], budget=10) == [3, 10, 7]


def test_paired_is_scipys_paired_t_test():
    a = [0.95, 0.96, 0.94, 0.97, 0.95]
    b = [0.93, 0.95, 0.94, 0.95, 0.92]
    got = st.paired(a, b)
    assert got.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert got.difference.mean == pytest.approx(0.016)
    assert got.difference.low < 0.016 < got.difference.high


def test_paired_without_spread_does_not_claim_significance():
    assert st.paired([1, 2, 3], [1, 2, 3]).p == 1.0
    assert math.isnan(st.paired([2, 3, 4], [1, 2, 3]).p)
    with pytest.raises(ValueError):
        st.paired([1, 2], [1, 2, 3])


def test_holm_step_down():
    def comparison(p):
        return st.PairedComparison(st.interval([0.0, 1.0]), p)

    family = st.holm({"a": comparison(0.01), "b": comparison(0.04), "c": comparison(0.03),
                      "d": comparison(float("nan"))})
    # m = 3 finite p-values: 3·0.01, then max(0.03, 2·0.03), then max(0.06, 1·0.04).
    assert family["a"].p_holm == pytest.approx(0.03)
    assert family["c"].p_holm == pytest.approx(0.06)
    assert family["b"].p_holm == pytest.approx(0.06)
    assert math.isnan(family["d"].p_holm)
    assert family["b"].p == 0.04
