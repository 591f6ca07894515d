"""Figures of the convergence study (needs matplotlib): per study, the training-loss and
test-accuracy curves with their 95% bands and, when the NSPL grid ran, the grid's final
accuracy against He normal; across studies, the paired differences with He normal."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

import convergence_report
import convergence_stats as st

# The curves drawn: the baselines and the NSPL defaults; the grid's best is added when it ran.
SHOWN = ("he_normal", "he_uniform", "xavier_uniform", "orthogonal", "nspl")
COLOURS = {"he_normal": "black", "he_uniform": "tab:gray", "xavier_uniform": "tab:blue",
           "orthogonal": "tab:green", "nspl": "tab:red"}


def _runs(result: dict, name: str) -> list[dict]:
    return [r for r in result["runs"] if r["init"] == name]


def _shown(result: dict) -> list[str]:
    names = [n for n in SHOWN if n in result["inits"]]
    best = convergence_report.best_nspl(result)
    if best is not None and best not in names:
        names.append(best)
    return names


def plot_study(result: dict, path: str) -> None:
    """Writes the figure of one study to `path`: (a) the training loss, trailing mean of the
    thresholds' window, geometric mean over seeds with its 95% band, log scale; (b) the test
    accuracy at the evaluation steps, mean and 95% band; (c, d) with the NSPL grid, the mean
    paired differences with He normal of final test accuracy and of steps to the loss
    threshold, for each (alpha, ratio)."""
    window = result["thresholds"]["window"]
    names = _shown(result)
    grid = _grid(result)
    fig = Figure(figsize=(20 if grid else 10.5, 4.4), layout="constrained")
    axes = fig.subplots(1, 2 + len(GRID_PANELS) if grid else 2)
    loss_ax, acc_ax = axes[0], axes[1]
    for name in names:
        colour = COLOURS.get(name, "tab:orange")
        runs = _runs(result, name)
        curves = np.array([st.trailing_mean(convergence_report.as_curve(r["train_loss"]), window) for r in runs])
        mean, low, high = st.log_band(curves)
        steps = np.arange(1, mean.size + 1)
        loss_ax.plot(steps, mean, color=colour, label=name, lw=1.3)
        loss_ax.fill_between(steps, low, high, color=colour, alpha=0.15, lw=0)
        eval_steps = runs[0]["eval_steps"]
        if all(r["eval_steps"] == eval_steps for r in runs):
            mean, low, high = st.band(np.array([r["test_acc"] for r in runs]))
            acc_ax.plot(eval_steps, 100 * mean, color=colour, label=name, lw=1.3, marker=".")
            acc_ax.fill_between(eval_steps, 100 * low, 100 * high, color=colour, alpha=0.15, lw=0)
    th = result["thresholds"]
    loss_ax.axhline(th["loss"], color="0.6", ls=":", lw=1)
    loss_ax.set(yscale="log", xlabel="SGD step", ylabel=f"training loss (trailing mean of {window})",
                title=f"{result['dataset']} / {result['model']}: training loss,\ngeometric mean and 95% band")
    loss_ax.legend(fontsize=8)
    acc_ax.set(xlabel="SGD step", ylabel="test accuracy %", title="test accuracy, mean and 95% band")
    low_acc = min((100 * min(r["test_acc"]) for r in result["runs"] if r["test_acc"]), default=0)
    acc_ax.set_ylim(max(low_acc - 2, 0), 100)
    if grid:
        for ax, panel in zip(axes[2:], GRID_PANELS):
            _grid_panel(fig, ax, result, *grid, *panel)
    fig.savefig(path, dpi=110)


def _grid(result: dict):
    rows = result["summary"]["inits"]
    points = {(r["nspl"]["alpha"], r["nspl"]["ratio"]): n for n, r in rows.items()
              if r["nspl"] is not None and "vs_reference" in r}
    alphas = sorted({a for a, _ in points})
    ratios = sorted({r for _, r in points})
    if len(alphas) < 2 or len(ratios) < 2:
        return None
    return points, alphas, ratios


# The grid panels: (endpoint, scale, title); a lower step count is better, so its colours flip.
GRID_PANELS = (("final_test_acc", 100.0, "final test acc, pp"), ("steps_to_loss", 1.0, "steps to the loss threshold"))


def _grid_panel(fig: Figure, ax, result: dict, points: dict, alphas: list, ratios: list,
                endpoint: str, scale: float, title: str) -> None:
    rows = result["summary"]["inits"]
    # A point of the grid that was not run stays blank.
    comparisons = [[rows[points[(a, r)]]["vs_reference"][endpoint] if (a, r) in points else None for r in ratios]
                   for a in alphas]
    values = np.array([[math.nan if c is None else scale * c["difference"]["mean"] for c in row]
                       for row in comparisons])
    limit = float(np.nanmax(np.abs(values))) or 1.0
    cmap = "RdBu" if endpoint == "final_test_acc" else "RdBu_r"
    image = ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(alphas)):
        for j in range(len(ratios)):
            if comparisons[i][j] is None:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=8, color="0.5")
                continue
            p_holm = comparisons[i][j]["p_holm"]
            mark = "*" if math.isfinite(p_holm) and p_holm < 0.05 else ""
            ax.text(j, i, f"{values[i, j]:+.{1 if scale > 1 else 0}f}{mark}", ha="center", va="center", fontsize=9,
                    color="white" if abs(values[i, j]) > 0.6 * limit else "black")
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set(xlabel="ratio", ylabel="alpha", title=f"NSPL − He normal: {title}\nmean of paired differences, * Holm p < 0.05")
    fig.colorbar(image, ax=ax, shrink=0.8)


def plot_differences(results: Sequence[dict], path: str) -> None:
    """Writes to `path` one panel per study: each initialiser's paired difference of final
    test accuracy with He normal, mean and 95% interval, in percentage points; the NSPL
    defaults in red, the rest of the grid in orange, the baselines in grey."""
    results = [r for r in results if r["summary"]["reference"]]
    columns = min(4, len(results))
    rows_n = math.ceil(len(results) / columns)
    fig = Figure(figsize=(4.2 * columns, 0.22 * max(len(r["inits"]) for r in results) * rows_n + 1.2 * rows_n),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows_n, columns, squeeze=False)).ravel()
    for ax, result in zip(axes, results):
        rows = result["summary"]["inits"]
        names = [n for n in result["inits"] if "vs_reference" in rows[n]]
        for y, name in enumerate(names):
            d = rows[name]["vs_reference"]["final_test_acc"]["difference"]
            colour = "tab:red" if name == "nspl" else "tab:orange" if rows[name]["nspl"] else "0.4"
            low, high = d["low"], d["high"]
            if math.isfinite(low) and math.isfinite(high):
                ax.plot([100 * low, 100 * high], [y, y], color=colour, lw=1.5)
            ax.plot(100 * d["mean"], y, "o", color=colour, ms=4)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("Δ final test accuracy vs He normal (pp)", fontsize=8)
        ax.set_title(f"{result['dataset']} / {result['model']} ({len(result['seeds'])} seeds)", fontsize=9)
    for ax in axes[len(results):]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)
