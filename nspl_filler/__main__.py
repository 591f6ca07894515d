"""Command line of nspl_filler: ``python -m nspl_filler SUBCOMMAND ...``.

Subcommands:

* ``demo``: the main job (see :mod:`nspl_filler.demo`): initialise a small CNN with NSPL,
  check its statistics and reproducibility, time fill_ against torch's samplers.
* ``fit CHECKPOINT``: per-layer truncated power-law fit of the weight magnitudes of a
  checkpoint (any file torch.load reads, a safetensors file, a sharded index, a Hugging Face
  model folder) (see :mod:`nspl_filler.fit`), printed as a table, optionally written as
  JSON and plotted.

and one option:

* ``--cmake-prefix-path``: print the CMAKE_PREFIX_PATH under which CMake finds the C++
  library (``find_package(NsplFiller)``) and the Torch it was built with, and exit.

A subcommand is a function ``(argparse.Namespace) -> int`` registered in ``_build_parser``
with its own sub-parser.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from .fit import DEFAULT_QUANTILES, PowerLawFit, fit, is_fittable, load_weights, plot_fits

_TABLE_COLUMNS = (
    ("layer", "<"),
    ("shape", "<"),
    ("n (tail)", ">"),
    ("alpha±se", ">"),
    ("low", ">"),
    ("high", ">"),
    ("ratio", ">"),
    ("KS", ">"),
    ("LR vs normal (p)", ">"),
    ("loglog slope", ">"),
)


def _row(name: str, result: PowerLawFit) -> tuple[str, ...]:
    return (
        name,
        "×".join(str(d) for d in result.shape),
        str(result.n_tail),
        f"{result.alpha:.3f}±{result.alpha_se:.3f}",
        f"{result.low:.3g}",
        f"{result.high:.3g}",
        f"{result.ratio:.1f}",
        f"{result.ks:.4f}",
        f"{result.lr:+.4g} ({result.lr_p:.2g})",
        f"{result.loglog_slope:.3f}",
    )


def format_table(fits: dict[str, PowerLawFit]) -> str:
    """Fixed-width text table of per-layer fits, one row per layer."""
    rows = [tuple(title for title, _ in _TABLE_COLUMNS)] + [_row(name, r) for name, r in fits.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_COLUMNS))]
    lines = []
    for k, row in enumerate(rows):
        cells = [f"{cell:{align}{width}}" for cell, (_, align), width in zip(row, _TABLE_COLUMNS, widths)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_summary(fits: dict[str, PowerLawFit]) -> str:
    """Median and interquartile range of alpha and ratio over the fitted layers."""
    if not fits:
        return "no layer fitted"

    def spread(values: list[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:.3g}"
        q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return f"{q2:.3g} (IQR {q1:.3g}–{q3:.3g})"

    alphas = [r.alpha for r in fits.values()]
    ratios = [r.ratio for r in fits.values()]
    favoured = sum(1 for r in fits.values() if r.lr > 0 and r.lr_p < 0.1)
    return (
        f"{len(fits)} layers: median alpha {spread(alphas)}, median ratio {spread(ratios)}; "
        f"power law favoured over half-normal (R > 0, p < 0.1) in {favoured}"
    )


def _error(message: str) -> int:
    """Reports a bad input as argparse does, one line on stderr, and gives its exit status."""
    print(f"python -m nspl_filler: error: {message}", file=sys.stderr)
    return 2


def _json_value(value: object) -> object:
    """`value` for JSON: NaN and infinities, which JSON has not, become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return value


def _run_fit(args: argparse.Namespace) -> int:
    try:
        weights = load_weights(args.checkpoint)
    except (OSError, ValueError, ImportError) as error:
        return _error(str(error).splitlines()[0])
    if not any(t.is_floating_point() for t in weights.values()):
        return _error(f"{args.checkpoint}: the checkpoint holds no floating-point tensors, so no weights to fit")
    if args.max_layers is not None:
        eligible = [name for name, t in weights.items() if is_fittable(t, args.layer_min_size)]
        weights = {name: weights[name] for name in eligible[: args.max_layers]}
    quantiles = DEFAULT_QUANTILES if args.quantile is None else (args.quantile,)
    try:
        fits = fit(weights, quantiles=quantiles, min_count=args.layer_min_size)
    except ValueError as error:
        return _error(f"{args.checkpoint}: {error}")
    print(format_table(fits))
    print()
    print(format_summary(fits))
    if args.json is not None:
        payload = {
            "checkpoint": str(args.checkpoint),
            "quantiles": list(quantiles),
            "layer_min_size": args.layer_min_size,
            "layers": {name: r.to_dict() for name, r in fits.items()},
            "median_alpha": statistics.median(r.alpha for r in fits.values()) if fits else None,
            "median_ratio": statistics.median(r.ratio for r in fits.values()) if fits else None,
        }
        Path(args.json).write_text(json.dumps(_json_value(payload), indent=2, allow_nan=False) + "\n")
    if args.plot is not None:
        shown = dict(list(fits.items())[: args.plot_panels])
        if not shown:
            print("nothing to plot: no layer was fitted", file=sys.stderr)
            return 1
        plot_fits(weights, shown, args.plot)
    return 0


class _PrintCMakePrefixPath(argparse.Action):
    """Prints the CMAKE_PREFIX_PATH of the C++ library and exits, as --version does."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from .cpp import cmake_prefix_paths

        print(cmake_prefix_paths())
        parser.exit()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nspl_filler", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cmake-prefix-path",
        action=_PrintCMakePrefixPath,
        help="print the CMAKE_PREFIX_PATH that finds the C++ library (find_package(NsplFiller)) and its Torch",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit_parser = commands.add_parser(
        "fit",
        help="fit a truncated power law to the weight magnitudes of a checkpoint, layer by layer",
        description=(
            "Maximum-likelihood fit of p(|w|) ∝ |w|^-alpha on [low, high] per layer with >= 2 "
            "dimensions; low by minimum Kolmogorov–Smirnov distance over quantile cut-offs."
        ),
    )
    fit_parser.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint: a state_dict file torch.load reads (.pt, .pth, .bin; or a dict holding one under "
        "'state_dict' / 'model'), a safetensors file (by content, whatever its name), a sharded "
        "checkpoint's *.index.json, or a Hugging Face model folder",
    )
    fit_parser.add_argument(
        "--layer-min-size",
        type=int,
        default=256,
        metavar="N",
        help="skip tensors with fewer nonzero weights (default 256)",
    )
    fit_parser.add_argument(
        "--max-layers", type=int, default=None, metavar="K", help="fit only the first K eligible layers"
    )
    fit_parser.add_argument(
        "--quantile",
        type=float,
        default=None,
        metavar="Q",
        help="fix the cut-off at quantile Q of |w| instead of choosing it by KS distance",
    )
    fit_parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the fits as JSON")
    fit_parser.add_argument(
        "--plot", type=Path, default=None, metavar="OUT.png", help="plot density vs fit (needs matplotlib)"
    )
    fit_parser.add_argument("--plot-panels", type=int, default=9, metavar="P", help="layers in the plot (default 9)")
    fit_parser.set_defaults(handler=_run_fit)

    demo_parser = commands.add_parser(
        "demo", add_help=False, help="initialise a small CNN with NSPL and time fill_ (the main job)"
    )
    demo_parser.set_defaults(handler=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    return demo_main(args.rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args, rest = _build_parser().parse_known_args(argv)
    if args.command != "demo" and rest:
        _build_parser().parse_args(argv)  # reports the unknown arguments and exits
    args.rest = rest
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
