"""Statistics of the convergence study: means with Student-t 95% intervals over seeds,
trailing means of noisy per-step curves, steps to a threshold, and paired comparisons
against a reference initialiser with Holm's correction for the number of comparisons.

Seeds are the unit of replication: every number here is computed over runs, one value per
seed, and the paired comparisons pair the runs that share a seed (same data order, same
dropout masks; only the initial weights differ)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of `n` values and its two-sided Student-t confidence interval [low, high]:
    mean ± t_{(1+level)/2, n-1} · s / sqrt(n), s the sample standard deviation."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """Candidate minus reference over runs paired by seed: the mean difference with its
    Student-t interval, the two-sided paired t-test p-value (scipy.stats.ttest_rel), and
    `p_holm`, that p-value after Holm's step-down correction over the comparisons made
    together (filled in by holm())."""

    difference: Interval
    p: float
    p_holm: Optional[float] = None

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (the difference as a nested dict)."""
        return {"difference": self.difference.as_dict(), "p": self.p, "p_holm": self.p_holm}


def t_quantile(n: int, level: float = LEVEL) -> float:
    """The Student-t quantile for a two-sided `level` interval of a mean of n values."""
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean and Student-t interval of `values` (one per seed). A single value, or any
    non-finite value, gives an interval of NaN width around the mean (NaN too if non-finite):
    a diverged run makes the spread unknown, and it must not be silently dropped."""
    x = np.asarray(values, dtype=float)
    n = x.size
    mean = float(np.mean(x)) if n else math.nan
    if n < 2 or not np.all(np.isfinite(x)):
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(n, level) * float(np.std(x, ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def band(curves: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise mean and Student-t band of `curves` (seeds × steps): (mean, low, high).
    A step where some run is NaN (it diverged earlier) is NaN in all three."""
    curves = np.asarray(curves, dtype=float)
    n = curves.shape[0]
    mean = curves.mean(axis=0)
    if n < 2:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    half = t_quantile(n, level) * curves.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def log_band(curves: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """band() of log(curves), mapped back: the geometric mean over seeds and its 95% band,
    for positive curves drawn on a log scale (a band of the plain mean would go below zero
    where runs differ by orders of magnitude)."""
    mean, low, high = band(np.log(np.asarray(curves, dtype=float)), level)
    return np.exp(mean), np.exp(low), np.exp(high)


def trailing_mean(curve: Sequence[float], window: int) -> np.ndarray:
    """The mean of the last `window` values at each step (fewer at the start):
    per-batch loss and accuracy are too noisy for a single batch to say a threshold is
    reached. A NaN stays NaN from where it appears on."""
    x = np.asarray(curve, dtype=float)
    sums = np.cumsum(x)
    out = np.empty_like(x)
    out[:window] = sums[:window] / np.arange(1, min(window, x.size) + 1)
    out[window:] = (sums[window:] - sums[:-window]) / window
    return out


def first_step(curve: Sequence[float], threshold: float, below: bool) -> Optional[int]:
    """The first step (1-based: the number of updates taken) at which `curve` is <= threshold
    (below=True, for a loss) or >= threshold (below=False, for an accuracy); None if never."""
    x = np.asarray(curve, dtype=float)
    hits = np.nonzero(x <= threshold if below else x >= threshold)[0]
    return int(hits[0]) + 1 if hits.size else None


def censored(steps: Sequence[Optional[int]], budget: int) -> list[int]:
    """Steps to a threshold with the runs that never reached it counted as `budget` (the
    steps they trained): a lower bound for those runs, so means and differences built on it
    understate the gap to a run that did reach the threshold, never overstate it."""
    return [budget if s is None else s for s in steps]


def paired(candidate: Sequence[float], reference: Sequence[float], level: float = LEVEL) -> PairedComparison:
    """Compares two initialisers over runs paired by seed (candidate[i] and reference[i]
    share seed i): the interval of the differences and the two-sided paired t-test. Equal
    differences in every pair (zero spread, which whole-sample accuracies and step counts
    can give) leave the t statistic undefined: p = 1 if they are all zero, else NaN (no
    test), rather than the p = 0 of an infinite t that a few seeds cannot support."""
    a, b = np.asarray(candidate, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired: {a.size} candidate runs against {b.size} reference runs")
    d = a - b
    if not np.all(np.isfinite(d)):
        return PairedComparison(interval(d, level), math.nan)
    if np.all(d == d[0]):
        return PairedComparison(interval(d, level), 1.0 if d[0] == 0 else math.nan)
    return PairedComparison(interval(d, level), float(stats.ttest_rel(a, b).pvalue))


def holm(comparisons: dict[str, PairedComparison]) -> dict[str, PairedComparison]:
    """Holm's step-down correction over a family of comparisons (familywise error rate,
    no assumption on their dependence): with the m finite p-values sorted, the k-th
    smallest (k from 0) becomes max over j <= k of min(1, (m - j) · p_(j)). NaN p-values
    stay NaN and do not count in m."""
    finite = sorted((c.p, name) for name, c in comparisons.items() if math.isfinite(c.p))
    m = len(finite)
    adjusted: dict[str, float] = {}
    running = 0.0
    for k, (p, name) in enumerate(finite):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[name] = running
    return {
        name: PairedComparison(c.difference, c.p, adjusted.get(name, math.nan))
        for name, c in comparisons.items()
    }
