"""Plots of fit() results: the empirical and fitted tail of each layer on log-log axes.
matplotlib is an optional dependency: pip install "nspl_filler[plot]" (docs/fitting.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING

import torch

from .fit import PowerLawFit, fit, sorted_magnitudes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_fit", "plot_fits"]


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        # A ModuleNotFoundError naming the module, as the failed import itself would be.
        raise ModuleNotFoundError(
            "nspl_filler: plotting needs matplotlib, an optional dependency: "
            'pip install "nspl_filler[plot]" (or pip install matplotlib)',
            name="matplotlib",
        ) from exc
    return Figure


def plot_fit(
    weights: torch.Tensor,
    result: PowerLawFit | Sequence[PowerLawFit] | None = None,
    *,
    ax: Axes | None = None,
    bins: int = 60,
    title: str | None = None,
) -> Axes:
    """Log-log plot of the empirical density of ``|w|`` against fitted power laws.

    The empirical density over log-spaced bins is ``count / (n·width)`` (per unit of
    ``|w|``, all nonzero magnitudes). Each fit is drawn as ``(n_tail/n)·p(y)`` on
    ``[low, high]`` so that it overlays the same normalisation; the dashed line is the
    log-log least-squares line (slope ``loglog_slope``) of the first fit, on the same scale.

    Args:
        weights: the tensor that was fitted.
        result: its :class:`PowerLawFit`, or several (e.g. for different cut-off rules);
            computed with the defaults when omitted.
        ax: matplotlib Axes to draw into; a new figure is made when omitted.
        bins: number of log-spaced bins between the smallest and largest ``|w|``.
        title: axes title.

    Returns:
        The Axes drawn into.

    Raises:
        ImportError: matplotlib is not installed.
    """
    figure_class = _figure_class()
    if result is None:
        results = [fit(weights)]
    elif isinstance(result, PowerLawFit):
        results = [result]
    else:
        results = list(result)
    if ax is None:
        ax = figure_class(figsize=(5.0, 4.0), layout="constrained").add_subplot()
    y = sorted_magnitudes(weights)
    n = y.numel()
    edges = torch.logspace(math.log10(float(y[0])), math.log10(float(y[-1])), bins + 1, dtype=torch.float64)
    edges[0], edges[-1] = y[0], y[-1]
    cuts = torch.searchsorted(y, edges, side="left")
    cuts[-1] = n
    density = torch.diff(cuts).to(torch.float64) / (n * torch.diff(edges))
    centres = torch.sqrt(edges[:-1] * edges[1:])
    occupied = density > 0
    ax.loglog(centres[occupied].numpy(), density[occupied].numpy(), "o", ms=3.0, color="0.35", label="empirical |w|")

    colours = ("C3", "C2", "C1", "C4", "C5")
    for k, item in enumerate(results):
        colour = colours[k % len(colours)]
        grid = torch.logspace(math.log10(item.low), math.log10(item.high), 200, dtype=torch.float64)
        grid[0], grid[-1] = item.low, item.high
        scale = item.n_tail / item.n
        label = f"MLE α={item.alpha:.2f}±{item.alpha_se:.2g}, r={item.ratio:.3g} (q≥{item.low_quantile:.2f})"
        ax.loglog(grid.numpy(), (scale * item.pdf(grid)).numpy(), "-", color=colour, lw=2.0, label=label)
        ax.axvline(item.low, color=colour, ls=":", lw=1.0)
        if k == 0:
            line = scale * 10.0 ** (item.loglog_intercept + item.loglog_slope * torch.log10(grid))
            label = f"log-log LS slope {item.loglog_slope:.2f}"
            ax.loglog(grid.numpy(), line.numpy(), "--", color="C0", lw=1.2, label=label)
    ax.set_xlabel("|w|")
    ax.set_ylabel("density")
    first = results[0]
    ax.set_title(title if title is not None else f"KS={first.ks:.3f}, tail {first.n_tail}/{first.n}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return ax


def plot_fits(
    weights: Mapping[str, torch.Tensor],
    fits: Mapping[str, PowerLawFit | Sequence[PowerLawFit]],
    path: str | PathLike[str] | None = None,
    *,
    ncols: int = 3,
    bins: int = 60,
) -> Figure:
    """A grid of :func:`plot_fit` panels, one per entry of ``fits``, optionally saved.

    Args:
        weights: name → tensor, holding every name in ``fits``.
        fits: name → :class:`PowerLawFit` (or several, drawn together) of the panels to
            draw, in order.
        path: where to save the figure (format from the suffix); not saved when omitted.
        ncols: panels per row.
        bins: log-spaced bins per panel.

    Returns:
        The matplotlib Figure.

    Raises:
        ImportError: matplotlib is not installed.
    """
    figure_class = _figure_class()
    if not fits:
        raise ValueError("nspl_filler: nothing to plot: fits is empty")
    ncols = max(1, min(ncols, len(fits)))
    nrows = -(-len(fits) // ncols)
    figure = figure_class(figsize=(4.6 * ncols, 3.6 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, results) in zip(axes, fits.items()):
        first = results if isinstance(results, PowerLawFit) else results[0]
        shape = "×".join(str(d) for d in first.shape)
        title = f"{name} ({shape})\nKS={first.ks:.3f}, tail {first.n_tail} of {first.n}"
        plot_fit(weights[name], results, ax=ax, bins=bins, title=title)
    for ax in axes[len(fits) :]:
        ax.set_visible(False)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure
