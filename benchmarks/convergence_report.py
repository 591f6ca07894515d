"""Summaries and tables of the convergence study (convergence.py): per initialiser, the
final test accuracy with its 95% interval, the steps to a training-loss and a
training-accuracy threshold, and the paired differences against He normal with paired
t-tests, Holm-corrected within each family of comparisons; as JSON-ready dicts and as
markdown. Run as a script, it combines several studies' JSON files into one table:

    python benchmarks/convergence_report.py benchmarks/results/convergence_*.json \\
        --markdown benchmarks/results/convergence.md --plot benchmarks/results/convergence_summary.png
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

import convergence_inits
import convergence_stats as st
from nspl_filler._json import json_safe

# Fixed before the study, for both datasets, from a one-seed pilot: the levels the
# reference (He normal) reaches within the step budget on every model; the scaled AlexNet on
# MNIST, whose training loss includes dropout, is the slowest (0.45 and 87% at step 600).
LOSS_THRESHOLD = 0.5
ACC_THRESHOLD = 0.85
WINDOW = 20
# The paired comparisons against the reference, each a family of its own for Holm.
ENDPOINTS = ("final_test_acc", "steps_to_loss", "steps_to_acc")
DEFAULTS = "nspl"
# A run that ends below twice the chance accuracy of the 10 digit classes did not learn (a
# ReLU network whose units all died, say), whether or not its loss stayed finite.
FAILED_ACCURACY = 0.2


@dataclass(frozen=True)
class Thresholds:
    """A run has converged to `loss` (training cross-entropy, <=) or to `accuracy`
    (training batch accuracy, >=) at the first step where the trailing mean of the last
    `window` steps crosses it."""

    loss: float = LOSS_THRESHOLD
    accuracy: float = ACC_THRESHOLD
    window: int = WINDOW


def as_curve(values: Sequence[Optional[float]]) -> np.ndarray:
    """A recorded curve as floats, its nulls (steps after a divergence) as NaN."""
    return np.array([math.nan if v is None else v for v in values], dtype=float)


def steps_to(run: dict, key: str, threshold: float, below: bool, window: int) -> Optional[int]:
    """Steps run `run` took until the trailing mean of its curve `key` ('train_loss' or
    'train_acc') crossed `threshold`; None if it never did."""
    return st.first_step(st.trailing_mean(as_curve(run[key]), window), threshold, below)


def summarise(result: dict) -> dict:
    """The summary of a study's record (convergence.run_study): per initialiser, the runs,
    divergences and failures (diverged, or ended below FAILED_ACCURACY), final test accuracy
    (interval), steps to each threshold (per seed, how many reached it, and the interval
    with the others counted at the step budget: see convergence_stats.censored), and for every initialiser but the reference the paired
    comparisons with the reference on ENDPOINTS, Holm-corrected per endpoint; every other
    NSPL point is also compared with the NSPL defaults ('vs_nspl_defaults'), likewise."""
    th = Thresholds(**result["thresholds"])
    budget = result["settings"]["steps"]
    reference = result["reference"]
    seeds = result["seeds"]
    by_init: dict[str, dict[int, dict]] = {}
    for run in result["runs"]:
        by_init.setdefault(run["init"], {})[run["seed"]] = run

    values: dict[str, dict[str, list[float]]] = {}
    inits: dict[str, dict] = {}
    for name in result["inits"]:
        runs = [by_init[name][s] for s in seeds]
        loss_steps = [steps_to(r, "train_loss", th.loss, True, th.window) for r in runs]
        acc_steps = [steps_to(r, "train_acc", th.accuracy, False, th.window) for r in runs]
        values[name] = {
            "final_test_acc": [r["final_test_acc"] for r in runs],
            "steps_to_loss": st.censored(loss_steps, budget),
            "steps_to_acc": st.censored(acc_steps, budget),
        }
        nspl = convergence_inits.nspl_parameters(name)
        inits[name] = {
            "nspl": None if nspl is None else {"alpha": nspl[0], "ratio": nspl[1]},
            "runs": len(runs),
            "diverged": sum(r["diverged"] for r in runs),
            "failed": sum(r["diverged"] or r["final_test_acc"] < FAILED_ACCURACY for r in runs),
            "final_test_acc": st.interval(values[name]["final_test_acc"]).as_dict(),
            "steps_to_loss": {"per_seed": loss_steps, "reached": sum(s is not None for s in loss_steps),
                              "censored_interval": st.interval(values[name]["steps_to_loss"]).as_dict()},
            "steps_to_acc": {"per_seed": acc_steps, "reached": sum(s is not None for s in acc_steps),
                             "censored_interval": st.interval(values[name]["steps_to_acc"]).as_dict()},
        }

    others = [n for n in result["inits"] if n != reference]
    if reference in values:
        for endpoint in ENDPOINTS:
            family = st.holm({n: st.paired(values[n][endpoint], values[reference][endpoint]) for n in others})
            for name, comparison in family.items():
                inits[name].setdefault("vs_reference", {})[endpoint] = comparison.as_dict()
    # Are the defaults the best of the grid? The other NSPL points against the defaults, a
    # family of its own per endpoint.
    grid = [n for n in result["inits"] if inits[n]["nspl"] is not None and n != DEFAULTS]
    if DEFAULTS in values and grid:
        for endpoint in ENDPOINTS:
            family = st.holm({n: st.paired(values[n][endpoint], values[DEFAULTS][endpoint]) for n in grid})
            for name, comparison in family.items():
                inits[name].setdefault("vs_nspl_defaults", {})[endpoint] = comparison.as_dict()
    return {
        "reference": reference if reference in values else None,
        "comparisons_per_endpoint": len(others) if reference in values else 0,
        "nspl_comparisons_per_endpoint": len(grid) if DEFAULTS in values else 0,
        "test": "two-sided paired t-test over seeds (scipy.stats.ttest_rel); Holm-corrected per endpoint",
        "inits": inits,
    }


# ---------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------
def _pct(x: Optional[float]) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _p(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.2g}" if x >= 0.001 else f"{x:.0e}"


def _acc_cell(interval: dict) -> str:
    # An accuracy cannot pass 100%: a t interval that does (few seeds, all near the top) is cut there.
    return f"{_pct(interval['mean'])} [{_pct(interval['low'])}, {_pct(min(interval['high'], 1.0))}]"


def _difference_cell(comparison: Optional[dict], scale: float, digits: int) -> str:
    if comparison is None:
        return "reference"
    d = comparison["difference"]

    def f(x: float) -> str:
        return "–" if x is None or not math.isfinite(x) else f"{scale * x:+.{digits}f}"

    return f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}]; p {_p(comparison['p'])}, Holm {_p(comparison['p_holm'])}"


def _steps_cell(summary: dict, runs: int) -> str:
    interval = summary["censored_interval"]
    reached = summary["reached"]
    mean = "–" if not math.isfinite(interval["mean"]) else f"{interval['mean']:.0f}"
    return f"{mean} ({reached}/{runs})"


def describe(result: dict) -> str:
    """The lines above a study's table: what ran, on what machine, under what load, how long."""
    s, th, m = result["settings"], result["thresholds"], result["machine"]
    return "\n".join([
        f"### {result['dataset']} / {result['model']}",
        "",
        f"{len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}) × {len(result['inits'])} initialisers; "
        f"SGD lr {s['lr']:g}, momentum {s['momentum']:g}, batch {s['batch_size']}, {s['steps']} steps; "
        f"thresholds on the trailing mean of {th['window']} steps: loss ≤ {th['loss']:g}, batch accuracy ≥ "
        f"{th['accuracy']:g}. {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']}, {result['workers']} "
        f"worker(s) of 1 thread; load average {m['load_average']} before, {result['load_average_after']} after; "
        f"{result['wall_seconds'] / 60:.1f} min, started {result['started']}.",
    ])


def markdown(result: dict) -> str:
    """A study's table: one row per initialiser, with the final test accuracy (%, mean and
    95% interval over seeds), its paired difference with the reference (percentage points),
    steps to each threshold (mean, runs that reached it; the others counted at the budget)
    and their paired differences, and the divergences."""
    summary = result["summary"]
    th = result["thresholds"]
    lines = [describe(result), "",
             f"Differences are initialiser − {summary['reference']}, paired by seed: mean [95% CI]; "
             f"{summary['test']} ({summary['comparisons_per_endpoint']} comparisons per endpoint). "
             "Steps: mean over seeds, a run that never reached the threshold counted at the budget "
             f"(reached/runs in brackets). Failed: diverged, or final test accuracy below {FAILED_ACCURACY:.0%}.", "",
             f"| init | test acc % [95% CI] | Δ acc, pp | steps to loss ≤ {th['loss']:g} | Δ steps (loss) | "
             f"steps to acc ≥ {th['accuracy']:g} | Δ steps (acc) | diverged / failed |",
             "|---|---|---|---|---|---|---|---:|"]
    for name in result["inits"]:
        row = summary["inits"][name]
        vs = row.get("vs_reference", {})
        lines.append(
            f"| {name} | {_acc_cell(row['final_test_acc'])} | {_difference_cell(vs.get('final_test_acc'), 100, 1)} | "
            f"{_steps_cell(row['steps_to_loss'], row['runs'])} | {_difference_cell(vs.get('steps_to_loss'), 1, 0)} | "
            f"{_steps_cell(row['steps_to_acc'], row['runs'])} | {_difference_cell(vs.get('steps_to_acc'), 1, 0)} | "
            f"{row['diverged']} / {row['failed']} |")
    return "\n".join(lines)


def best_nspl(result: dict) -> Optional[str]:
    """The NSPL initialiser with the highest mean final test accuracy in a study (None if it
    has none): a point estimate, chosen after the fact, so its lead is optimistic."""
    rows = result["summary"]["inits"]
    candidates = [n for n in result["inits"] if rows[n]["nspl"] is not None]
    return max(candidates, key=lambda n: rows[n]["final_test_acc"]["mean"], default=None)


def overview(results: Sequence[dict]) -> str:
    """One row per study: the runs of He normal and of NSPL (defaults) that failed, their
    final test accuracy, their paired difference, their steps to the loss threshold, the
    defaults' rank among the NSPL points run (by mean final accuracy), the best of them with
    its paired difference from the defaults (Holm over the NSPL points; picked after the
    fact, so optimistic), and the best initialiser overall."""
    lines = ["| data / model | inits × seeds | failed runs: He normal / NSPL | He normal: test acc % | "
             "NSPL defaults: test acc % | Δ NSPL − He normal, pp | "
             "steps to loss: He normal → NSPL (Δ; p, Holm) | defaults' rank in NSPL | best NSPL: acc %, Δ vs defaults, pp "
             "| best init (acc %) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows = r["summary"]["inits"]
        ref, nspl = rows.get("he_normal"), rows.get("nspl")
        if ref is None or nspl is None:
            continue
        vs = nspl["vs_reference"]
        loss = vs["steps_to_loss"]
        best = best_nspl(r)
        top = max(r["inits"], key=lambda n: rows[n]["final_test_acc"]["mean"])
        points = sorted((n for n in r["inits"] if rows[n]["nspl"] is not None),
                        key=lambda n: -rows[n]["final_test_acc"]["mean"])
        best_cell = f"{best} {_pct(rows[best]['final_test_acc']['mean'])}"
        if best != DEFAULTS:
            best_cell += ", " + _difference_cell(rows[best]["vs_nspl_defaults"]["final_test_acc"], 100, 1)
        lines.append(
            f"| {r['dataset']} / {r['model']} | {len(r['inits'])} × {len(r['seeds'])} | "
            f"{ref['failed']} / {nspl['failed']} | "
            f"{_acc_cell(ref['final_test_acc'])} | {_acc_cell(nspl['final_test_acc'])} | "
            f"{_difference_cell(vs['final_test_acc'], 100, 1)} | "
            f"{ref['steps_to_loss']['censored_interval']['mean']:.0f} → {nspl['steps_to_loss']['censored_interval']['mean']:.0f} "
            f"({loss['difference']['mean']:+.0f}; p {_p(loss['p'])}, Holm {_p(loss['p_holm'])}) | "
            f"{points.index(DEFAULTS) + 1} of {len(points)} | {best_cell} | "
            f"{top} ({_pct(rows[top]['final_test_acc']['mean'])}) |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------
def write_json(result: dict, path: str) -> None:
    """Writes a study's record to `path` as strict JSON (NaN as null), creating folders."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(json_safe(result), f, separators=(",", ":"))
        f.write("\n")


def read_json(path: str) -> dict:
    """A study's record as written by write_json, with null intervals read back as NaN."""
    with open(path) as f:
        result = json.load(f)

    def nan(value):
        if isinstance(value, dict):
            return {k: (math.nan if v is None and k in ("mean", "low", "high", "p", "p_holm") else nan(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [nan(v) for v in value]
        return value

    result["summary"] = nan(result["summary"])
    return result


def main(argv: Optional[list[str]] = None) -> int:
    """Combines studies' JSON files into one markdown file (overview, then each table) and,
    with --plot, one figure of the paired differences; with --resummarise, first brings each
    file's summary and table up to date with this module; returns 0."""
    p = argparse.ArgumentParser(description="Combine convergence studies into one report.")
    p.add_argument("files", nargs="*", help="JSON files of convergence.py (default: benchmarks/results/convergence_*.json)")
    p.add_argument("--markdown", default="", help="write the combined markdown here")
    p.add_argument("--plot", default="", help="write the figure of paired differences here (needs matplotlib)")
    p.add_argument("--resummarise", action="store_true",
                   help="recompute each file's summary from its runs and rewrite it and its .md table "
                        "(after a change to the statistics; the runs are kept as they are)")
    args = p.parse_args(argv)
    files = args.files or sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "results", "convergence_*.json")))
    results = [read_json(f) for f in files]
    if args.resummarise:
        for path, result in zip(files, results):
            result["summary"] = summarise(result)
            write_json(result, path)
            with open(os.path.splitext(path)[0] + ".md", "w") as f:
                f.write(markdown(result) + "\n")
    text = "\n\n".join([overview(results)] + [markdown(r) for r in results]) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        import convergence_plot

        convergence_plot.plot_differences(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
