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

Every bad argument or input file is one line on stderr and exit status 2, found before
anything is computed, printed or written: values are checked by the parser, output paths
and optional dependencies before the checkpoint is read, and the JSON file is written whole
or not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import sys
from collections.abc import Sequence
from pathlib import Path

from . import demo
from ._json import json_safe
from .demo import positive_int
from .fit import DEFAULT_QUANTILES, PowerLawFit, fit, is_fittable, load_weights
from .plots import plot_fits

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


def _error(message: str, prog: str = "python -m nspl_filler") -> int:
    """Reports a bad input as argparse does, in one line on stderr (the library's
    "nspl_filler: " prefix dropped: the line names the program), and gives its exit status."""
    line = (message.splitlines() or [""])[0].removeprefix("nspl_filler: ")
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 2


class _BadArgument(Exception):
    """An argument that a parser refused: (message, the parser's prog)."""


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a bad argument in one line (no usage block) through main."""

    def error(self, message: str):
        raise _BadArgument(message, self.prog)


def _quantile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _output_problem(path: Path, checkpoint: Path) -> str | None:
    """Why `path` cannot be written as an output file, or None."""
    if path.is_dir():
        return f"{path} is a directory"
    folder = path.parent
    if not folder.is_dir():
        return f"{folder} is not an existing directory"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable"
    if path.exists() and checkpoint.exists() and path.resolve() == checkpoint.resolve():
        return f"{path} is the checkpoint itself"
    return None


def _plot_problem(path: Path) -> str | None:
    """Why the figure cannot be saved as `path` (matplotlib missing, an unknown format), or None."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return 'plotting needs matplotlib, an optional dependency: pip install "nspl_filler[plot]"'
    formats = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lstrip(".").lower()
    if suffix and suffix not in formats:
        return f"matplotlib cannot save {path}: the formats are {', '.join(sorted(formats))}"
    return None


def _write_whole(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file beside it, so that `path` is either
    left as it was or holds all of `text`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _run_fit(args: argparse.Namespace) -> int:
    outputs = {"--json": args.json, "--plot": args.plot}
    for option, path in outputs.items():
        problem = path is not None and _output_problem(path, args.checkpoint)
        if problem:
            return _error(f"argument {option}: {problem}")
    if args.json is not None and args.plot is not None and args.json.resolve() == args.plot.resolve():
        return _error("arguments --json and --plot: the same file")
    if args.plot is not None:
        problem = _plot_problem(args.plot)
        if problem:
            return _error(f"argument --plot: {problem}")
    try:
        weights = load_weights(args.checkpoint)
    except (OSError, ValueError, ImportError) as error:
        return _error(str(error))
    if not any(t.is_floating_point() for t in weights.values()):
        return _error(f"{args.checkpoint}: the checkpoint holds no floating-point tensors, so no weights to fit")
    if args.max_layers is not None:
        eligible = [name for name, t in weights.items() if is_fittable(t, args.layer_min_size)]
        weights = {name: weights[name] for name in eligible[: args.max_layers]}
    quantiles = DEFAULT_QUANTILES if args.quantile is None else (args.quantile,)
    try:
        fits = fit(weights, quantiles=quantiles, min_count=args.layer_min_size)
    except (TypeError, ValueError) as error:
        return _error(f"{args.checkpoint}: {str(error).removeprefix('nspl_filler: ')}")
    if args.plot is not None and not fits:
        return _error(f"{args.checkpoint}: no layer was fitted, so there is nothing to plot")
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
        _write_whole(args.json, json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    if args.plot is not None:
        plot_fits(weights, dict(list(fits.items())[: args.plot_panels]), args.plot)
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
    parser = _Parser(prog="python -m nspl_filler", description=__doc__.splitlines()[0])
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
        type=positive_int,
        default=256,
        metavar="N",
        help="skip tensors with fewer nonzero weights (default 256)",
    )
    fit_parser.add_argument(
        "--max-layers", type=positive_int, default=None, metavar="K", help="fit only the first K eligible layers"
    )
    fit_parser.add_argument(
        "--quantile",
        type=_quantile,
        default=None,
        metavar="Q",
        help="fix the cut-off at quantile Q of |w| instead of choosing it by KS distance",
    )
    fit_parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the fits as JSON")
    fit_parser.add_argument(
        "--plot", type=Path, default=None, metavar="OUT.png", help="plot density vs fit (needs matplotlib)"
    )
    fit_parser.add_argument(
        "--plot-panels", type=positive_int, default=9, metavar="P", help="layers in the plot (default 9)"
    )
    fit_parser.set_defaults(handler=_run_fit)

    demo_parser = commands.add_parser(
        "demo", help="initialise a small CNN with NSPL and time fill_ (the main job)", description=demo.DESCRIPTION
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    try:
        return demo.run(args)
    except (TypeError, ValueError) as error:
        return _error(str(error), "python -m nspl_filler demo")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code:
    0, or 2 for a bad argument or input, reported in one line on stderr."""
    try:
        args = _build_parser().parse_args(argv)
    except _BadArgument as error:
        return _error(*error.args)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
