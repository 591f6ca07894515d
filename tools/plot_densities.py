"""Draws docs/img/densities.png: the density of the symmetric power law for a few alphas,
from nspl_filler.distributions.SymmetricPowerLaw, with histograms of the fill kernel's
samples drawn over it (the object and the sampler describe one law).

    .venv/bin/python tools/plot_densities.py [--out docs/img/densities.png]

Needs matplotlib. Runs in a few seconds on a CPU; the samples use fixed seeds.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from nspl_filler.distributions import SymmetricPowerLaw

ALPHAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0)
LOW, HIGH = 0.01, 1.0  # the package's default ratio, 100
GAP_LOW = 0.2  # a narrow range for the linear panel, where the gap (-low, low) shows
SAMPLES = 200_000


def law(alpha: float, low: float) -> SymmetricPowerLaw:
    return SymmetricPowerLaw(*(torch.tensor(v, dtype=torch.float64) for v in (alpha, low, HIGH)), validate_args=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "img" / "densities.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    w = torch.linspace(-HIGH, HIGH, 4001, dtype=torch.float64)
    y = torch.exp(torch.linspace(math.log(LOW), math.log(HIGH), 400, dtype=torch.float64))
    edges = torch.exp(torch.linspace(math.log(LOW), math.log(HIGH), 41, dtype=torch.float64))
    for k, alpha in enumerate(ALPHAS):
        color = f"C{k}"
        left.plot(w, law(alpha, GAP_LOW).log_prob(w).exp(), color=color, lw=1.2, label=f"alpha = {alpha:g}")
        d = law(alpha, LOW)
        # |w| has twice the density of w at each magnitude.
        right.plot(y, 2 * d.log_prob(y).exp(), color=color, lw=1.2, label=f"alpha = {alpha:g}")
        magnitudes = d.sample((SAMPLES,), seed=k).abs()
        counts = torch.histogram(magnitudes, bins=edges).hist
        centres = (edges[1:] * edges[:-1]).sqrt()
        right.plot(centres, counts / (SAMPLES * (edges[1:] - edges[:-1])), "o", color=color, ms=3)
    left.set(xlabel="w", ylabel="density p(w)", ylim=(0, 3.2),
             title=f"p(w), low = {GAP_LOW}, high = {HIGH}")
    left.axvspan(-GAP_LOW, GAP_LOW, color="0.92", zorder=0)
    left.annotate("gap\n(-low, low):\nno density", (0.0, 0.1), ha="center", fontsize=8)
    right.set(xscale="log", yscale="log", xlabel="|w|", ylabel="density of |w|",
              title=f"|w|, low = {LOW}, high = {HIGH}: lines the law, dots the fill kernel")
    left.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
