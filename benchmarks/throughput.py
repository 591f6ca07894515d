"""Throughput of nspl_filler.fill_ against torch's own samplers and initialisers.

Three measurements, each the median of --repeat timed calls after one warm-up call
(3 calls for ops slower than a second per call):

* table: samples/s and GB/s (bytes written) of nspl_filler.fill_ at each --alphas value
  (default 1, the log-uniform default, and 2, the general power law; ratio 100),
  Tensor.uniform_, Tensor.normal_, nn.init.kaiming_uniform_, kaiming_normal_,
  trunc_normal_ (torch's, and nspl_filler.trunc_normal_ with the same defaults, with their
  ratio), a naive composition of the same distribution from torch ops (sign · c ·
  inverse CDF of torch.rand, at the first alpha), and Tensor.fill_(1.0) (write
  bandwidth), with ratios to uniform_, to the naive composition and to fill_(1.0) (the
  fraction of the memory bandwidth a method uses); per dtype and size;
* per-call: microseconds per call on a 64x64 float32 tensor (small-tensor overhead):
  fill_(seed=1), fill_ with torch's generator, kaiming_uniform_, uniform_;
* sweep (--sweep): fill_ at each alpha and uniform_ over sizes 2^10 .. 2^26 on 1 and 2
  threads (CPU).

CPU timing uses time.perf_counter; CUDA timing uses CUDA events, synchronised. On a
machine shared with other work, --runs N repeats everything and reports the best run of
each measurement (other work only slows a run down); the JSON keeps every run's value.

    python benchmarks/throughput.py                          # table + per-call
    python benchmarks/throughput.py --sweep --runs 3 --json out.json --markdown out.md
    python benchmarks/throughput.py --device cuda --dtype float32 --sizes 2^28
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import time

import torch

import nspl_filler
from common import cpu_name, load_average
from nspl_filler import _C

NAIVE = "naive NSPL (torch ops)"
UNIFORM = "Tensor.uniform_"
TORCH_TRUNC_NORMAL = "trunc_normal_"
TRUNC_NORMAL = "nspl_filler.trunc_normal_"


# ---------------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------------
def naive_nspl_(tensor: torch.Tensor, alpha: float = nspl_filler.DEFAULT_ALPHA, ratio: float = nspl_filler.DEFAULT_RATIO):
    """The NSPL from plain torch ops, as a user would write it: |w| = c·y with y the
    inverse CDF of torch.rand, y = exp(u·ln r) (alpha = 1) or (1 + u·(r^b - 1))^(1/b),
    b = 1 - alpha, c = sigma / sqrt(E[y^2]) with sigma = sqrt(2 / fan_in), and a sign
    from a second torch.rand."""
    fan_in, _ = nspl_filler.compute_fans(tensor)
    c = math.sqrt(2.0 / fan_in) / math.sqrt(nspl_filler.second_moment(alpha, ratio))
    with torch.no_grad():
        u = torch.rand(tensor.shape, dtype=tensor.dtype, device=tensor.device)
        b = 1.0 - alpha
        if b == 0.0:
            y = torch.exp(u * math.log(ratio))
        else:
            y = torch.pow(1.0 + u * math.expm1(b * math.log(ratio)), 1.0 / b)
        sign = torch.where(torch.rand_like(u) < 0.5, -1.0, 1.0).to(tensor.dtype)
        tensor.copy_(sign * c * y)
    return tensor


FILL_ONE = "Tensor.fill_(1.0)"


def fill_name(alpha: float) -> str:
    return f"nspl_filler.fill_ (alpha={alpha:g})"


def methods(alphas: list[float], ratio: float) -> dict:
    """The table's methods: fill_ at each alpha, torch's samplers and initialisers, the
    naive composition (at the first alpha) and the write bandwidth."""
    table = {fill_name(a): (lambda t, a=a: nspl_filler.fill_(t, alpha=a, ratio=ratio)) for a in alphas}
    table.update({
        UNIFORM: lambda t: t.uniform_(),
        "Tensor.normal_": lambda t: t.normal_(),
        "kaiming_uniform_": lambda t: torch.nn.init.kaiming_uniform_(t),
        "kaiming_normal_": lambda t: torch.nn.init.kaiming_normal_(t),
        TORCH_TRUNC_NORMAL: lambda t: torch.nn.init.trunc_normal_(t),
        TRUNC_NORMAL: lambda t: nspl_filler.trunc_normal_(t),
        NAIVE: lambda t: naive_nspl_(t, alpha=alphas[0], ratio=ratio),
        FILL_ONE: lambda t: t.fill_(1.0),
    })
    return table


# ---------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------
def median_seconds(fn, device: str, repeat: int) -> float:
    """Median wall time of `repeat` calls of fn() after one warm-up call; 3 calls when
    the warm-up took over a second (trunc_normal_ on 2^25 elements), to keep the
    default run short."""
    begin = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    if time.perf_counter() - begin > 1.0:
        repeat = min(repeat, 3)
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeat):
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def median_seconds_per_call(fn, device: str, calls: int, repeat: int) -> float:
    """Median over `repeat` rounds of the mean time of `calls` back-to-back calls."""
    for _ in range(max(10, calls // 10)):
        fn()
    rounds = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        for _ in range(calls):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        rounds.append((time.perf_counter() - begin) / calls)
    return statistics.median(rounds)


def shape_for(numel: int) -> tuple[int, int]:
    """A 2-D weight shape (fan_out, fan_in) with numel elements: rows of 1024 when possible."""
    width = 1024 if numel >= 1024 and numel % 1024 == 0 else numel
    return (numel // width, width)


# ---------------------------------------------------------------------------------
# The three measurements
# ---------------------------------------------------------------------------------
def run_table(device: str, dtypes: list[torch.dtype], sizes: list[int], repeat: int, table: dict) -> dict:
    """{(dtype, numel): {method: samples/s}} for the methods of `table`."""
    rates = {}
    for dtype in dtypes:
        for numel in sizes:
            tensor = torch.empty(shape_for(numel), dtype=dtype, device=device)
            rates[(dtype, numel)] = {}
            for name, fn in table.items():
                try:
                    seconds = median_seconds(lambda: fn(tensor), device, repeat)
                except RuntimeError as error:  # e.g. an op without a kernel for this dtype
                    print(f"  {name} on {dtype}: not run ({error})")
                    continue
                rates[(dtype, numel)][name] = numel / seconds
            del tensor
    return rates


def table_rows(runs: list[dict]) -> list[dict]:
    """One row per (dtype, numel, method) with the best of the runs' medians (other work
    on a shared machine only ever slows a run down), and ratios between those."""
    rows = []
    for key in runs[0]:
        dtype, numel = key
        best = {name: max(run[key][name] for run in runs if name in run[key]) for name in runs[0][key]}
        for name, rate in best.items():
            rows.append(
                {
                    "dtype": str(dtype).replace("torch.", ""),
                    "numel": numel,
                    "method": name,
                    "samples_per_s": rate,
                    "samples_per_s_each_run": [run[key].get(name) for run in runs],
                    "gb_per_s": rate * torch.empty((), dtype=dtype).element_size() / 1e9,
                    "vs_uniform": rate / best[UNIFORM] if UNIFORM in best else None,
                    "vs_naive": rate / best[NAIVE] if NAIVE in best else None,
                    "vs_fill": rate / best[FILL_ONE] if FILL_ONE in best else None,
                    "vs_trunc_normal": rate / best[TORCH_TRUNC_NORMAL] if TORCH_TRUNC_NORMAL in best else None,
                }
            )
    return rows


def run_per_call(device: str, repeat: int) -> list[dict]:
    tensor = torch.empty(64, 64, device=device)
    cases = {
        "nspl_filler.fill_(t, seed=1)": lambda: nspl_filler.fill_(tensor, seed=1),
        "nspl_filler.fill_(t)": lambda: nspl_filler.fill_(tensor),
        "kaiming_uniform_(t)": lambda: torch.nn.init.kaiming_uniform_(tensor),
        "t.uniform_()": lambda: tensor.uniform_(),
    }
    return {name: 1e6 * median_seconds_per_call(fn, device, 2000, repeat) for name, fn in cases.items()}


def per_call_rows(runs: list[dict]) -> list[dict]:
    return [{"call": name, "us_per_call": min(run[name] for run in runs)} for name in runs[0]]


def run_sweep(device: str, dtype: torch.dtype, thread_counts: list[int], repeat: int, alphas: list[float],
              table: dict) -> dict:
    """{(numel, threads, method): samples/s} of fill_ at each alpha and uniform_."""
    rates = {}
    for exponent in range(10, 27, 2):
        numel = 1 << exponent
        tensor = torch.empty(shape_for(numel), dtype=dtype, device=device)
        # Enough calls per timing that small sizes are not lost in timer resolution.
        calls = max(1, (1 << 20) // numel)
        for threads in thread_counts:
            if device == "cpu":
                torch.set_num_threads(threads)
            for name in [fill_name(a) for a in alphas] + [UNIFORM]:
                fn = table[name]
                seconds = median_seconds_per_call(lambda: fn(tensor), device, calls, repeat)
                rates[(numel, threads, name)] = numel / seconds
        del tensor
    return rates


def sweep_rows(runs: list[dict]) -> list[dict]:
    return [
        {"numel": numel, "threads": threads, "method": name, "samples_per_s": max(run[key] for run in runs)}
        for key in runs[0]
        for numel, threads, name in [key]
    ]


# ---------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------
def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def fmt_rate(rate: float) -> str:
    return f"{rate / 1e6:,.0f}"


def fmt_ratio(ratio) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def table_markdown(rows: list[dict]) -> str:
    lines = [
        "| dtype | numel | method | M samples/s | GB/s | vs uniform_ | vs naive | vs trunc_normal_ | of fill_(1.0) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = "" if r["vs_fill"] is None else f"{100 * r['vs_fill']:.0f}%"
        lines.append(
            f"| {r['dtype']} | 2^{int(math.log2(r['numel']))} | {r['method']} | {fmt_rate(r['samples_per_s'])} | "
            f"{r['gb_per_s']:.2f} | {fmt_ratio(r['vs_uniform'])} | {fmt_ratio(r['vs_naive'])} | "
            f"{fmt_ratio(r['vs_trunc_normal'])} | {share} |"
        )
    return "\n".join(lines)


def per_call_markdown(rows: list[dict]) -> str:
    lines = ["| call (64x64 float32) | µs per call |", "|---|---:|"]
    lines += [f"| {r['call']} | {r['us_per_call']:.1f} |" for r in rows]
    return "\n".join(lines)


def sweep_markdown(rows: list[dict]) -> str:
    threads = sorted({r["threads"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    header = ["numel"] + [f"{m}, {t} thr (M/s)" for m in methods for t in threads]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    index = {(r["numel"], r["threads"], r["method"]): r["samples_per_s"] for r in rows}
    for numel in sorted({r["numel"] for r in rows}):
        cells = [f"2^{int(math.log2(numel))}"] + [fmt_rate(index[(numel, t, m)]) for m in methods for t in threads]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_size(text: str) -> int:
    text = text.strip()
    if "^" in text:
        base, exponent = text.split("^")
        return int(base) ** int(exponent)
    return int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", default="float32,bfloat16,float64", help="comma-separated dtypes")
    parser.add_argument("--sizes", default=None, help="comma-separated element counts, e.g. 2^25,1000000 "
                        "(default 2^25 on CPU, 2^28 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--runs", type=int, default=1, help="repeat everything this many times and report "
                        "the best run of each measurement (for machines shared with other work)")
    parser.add_argument("--alphas", default="1,2", help="comma-separated NSPL exponents for fill_ (the first "
                        "also for the naive composition)")
    parser.add_argument("--ratio", type=float, default=nspl_filler.DEFAULT_RATIO, help="NSPL ratio r")
    parser.add_argument("--sweep", action="store_true", help="also run the size sweep, 2^10 .. 2^26")
    parser.add_argument("--sweep-threads", default="1,2", help="thread counts of the sweep (CPU)")
    parser.add_argument("--json", default=None, help="write all results to this JSON file")
    parser.add_argument("--markdown", default=None, help="write the tables to this markdown file")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    dtypes = [getattr(torch, name.strip()) for name in args.dtype.split(",")]
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else [2**28 if args.device == "cuda" else 2**25]
    if args.device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    alphas = [float(a) for a in args.alphas.split(",")]
    table_methods = methods(alphas, args.ratio)

    meta = {
        "device": device_name(args.device),
        "device_kind": args.device,
        "torch": torch.__version__,
        "nspl_filler": nspl_filler.__version__,
        "nspl_cpu_kernels": _C._cpu_capability(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "threads": threads,
        "repeat": args.repeat,
        "runs": args.runs,
        "nspl_parameters": {"alphas": alphas, "ratio": args.ratio},
        "load_average_before": load_average(),
    }
    print(f"# {meta['device']} | torch {meta['torch']} | threads {threads} | nspl CPU kernels "
          f"{meta['nspl_cpu_kernels']} | NSPL {meta['nspl_parameters']} | load {meta['load_average_before']}")

    counts = [int(t) for t in args.sweep_threads.split(",")] if args.device == "cpu" else [threads]
    table_runs, per_call_runs, sweep_runs = [], [], []
    for _ in range(args.runs):
        table_runs.append(run_table(args.device, dtypes, sizes, args.repeat, table_methods))
        per_call_runs.append(run_per_call(args.device, args.repeat))
        if args.sweep:
            sweep_runs.append(run_sweep(args.device, torch.float32, counts, args.repeat, alphas, table_methods))
            if args.device == "cpu":
                torch.set_num_threads(threads)
    table, per_call = table_rows(table_runs), per_call_rows(per_call_runs)
    sweep = sweep_rows(sweep_runs) if args.sweep else []
    print(table_markdown(table), end="\n\n")
    print(per_call_markdown(per_call), end="\n\n")
    if sweep:
        print(sweep_markdown(sweep), end="\n\n")
    meta["load_average_after"] = load_average()

    if args.json:
        with open(args.json, "w") as f:
            json.dump({**meta, "table": table, "per_call": per_call, "sweep": sweep}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"Device: {meta['device']}  \ntorch {meta['torch']}, nspl_filler {meta['nspl_filler']} "
                    f"(CPU kernels: {meta['nspl_cpu_kernels']}), NSPL alphas {alphas}, ratio {args.ratio}, "
                    f"{threads} threads, median of {args.repeat} calls, best of {args.runs} run(s), "
                    f"{meta['date']}, load average {meta['load_average_before']} -> {meta['load_average_after']}\n\n")
            f.write(table_markdown(table) + "\n\n" + per_call_markdown(per_call) + "\n")
            if sweep:
                f.write("\nfloat32, samples/s by size and threads:\n\n" + sweep_markdown(sweep) + "\n")


if __name__ == "__main__":
    main()
