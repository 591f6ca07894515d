"""Planning at scale: init_module_ and init_plan on models of many small parameters.

Models: nn.Sequential of N nn.Linear(16, 16) (2N parameters) for N in --layers, and an
MoE-shaped model (--moe: layers x experts x 3 projections, experts in nn.ModuleList, plus a
router per layer). init_module_ with a rule that zeroes the biases runs against a plain loop
of torch.nn.init.kaiming_uniform_ (weights) and zeros_ (biases), which writes the same
parameters. Each time is the best of --repeats runs (more for a small model: enough runs for
2*10^4 parameters), with the garbage collector on (as a user
runs) and off (gc.disable(), to show what collections cost); per parameter and as the ratio
loop / init_module_ (above 1: init_module_ is faster), in wall-clock time and in the
process's CPU time (which a shared machine's other work does not inflate).

Planning alone, on the model built on the meta device: the planner with init_module_'s
defaults and with a table of glob rules, the planner plus the keys of stream="name", and
init_plan (the report); and init_module_ itself on meta (planning, streams and every op's
checks: all but the writing). The planning paths and torch's named_parameters() are timed
twice: as above, where a small model stays in the caches between runs, and from cold caches
(EVICT_BYTES written before each run), where every size reads its model from memory, as a
model too large for the caches always does. Their times are the best of PLAN_REPEATS runs at
every size (with warm caches, more for a model under 10^3 parameters), so that the growth from one size to
another compares the best of as many runs: the best of a few runs is the slower, by how often
a run meets a slow spell of the machine.

    python benchmarks/plan_scale.py                       # table on stdout
    python benchmarks/plan_scale.py --save benchmarks/results

--save writes plan_scale_cpu_<date>.json and .md there, naming the machine and its load.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import time
import warnings

import torch
from torch import nn

import nspl_filler
from common import load_average, machine
from nspl_filler import plan as planning
from nspl_filler import stream
from nspl_filler.options import PlanOptions, resolve

ZERO_BIAS = {"*.bias": "zeros"}
GLOBS = {"*.router.weight": "zeros", "*.gate_proj.weight": {"init": "normal"}, "[0-9]*.weight": "nspl",
         "*.bias": "zeros", "*.down_proj.*": {"init": "nspl", "gain": 0.5}}


def sequential(layers: int, device: str = "cpu") -> nn.Module:
    with torch.device(device):
        return nn.Sequential(*(nn.Linear(16, 16) for _ in range(layers)))


class Expert(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)


class MoELayer(nn.Module):
    def __init__(self, experts: int, width: int, hidden: int) -> None:
        super().__init__()
        self.router = nn.Linear(width, experts, bias=False)
        self.experts = nn.ModuleList(Expert(width, hidden) for _ in range(experts))


def moe(layers: int, experts: int, device: str = "cpu", width: int = 16, hidden: int = 8) -> nn.Module:
    with torch.device(device):
        return nn.ModuleList(MoELayer(experts, width, hidden) for _ in range(layers))


def torch_loop(model: nn.Module) -> None:
    """What a user writes with torch.nn.init: kaiming_uniform_ for the weights, zeros_ for the
    biases (the same parameters init_module_ with ZERO_BIAS writes)."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        else:
            nn.init.kaiming_uniform_(p, nonlinearity="relu")


# Written before each run from cold caches: more than the last-level cache of the machines
# this runs on, so that the model's objects are read from memory, as they are where a program
# did other work between building a model and initialising it.
EVICT_BYTES = 256 * 2**20
_evict: list[torch.Tensor] = []


def evict_caches() -> None:
    if not _evict:
        _evict.append(torch.empty(EVICT_BYTES // 4))
    _evict[0].fill_(1.0)


def best(function, repeats: int, collect: bool, cold: bool = False) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the process), each the best of `repeats` runs after
    one warm-up; `cold`: each run after evict_caches(). On a shared machine the wall clock
    also counts time spent waiting for a core; the process's CPU time does not (it counts
    every thread's, so a fill spread over two threads counts twice)."""
    function()
    walls, cpus = [], []
    gc.collect()  # once: a full collection costs far more than planning a small model
    for _ in range(repeats):
        if cold:
            evict_caches()
        if not collect:
            gc.disable()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        finally:
            gc.enable()
    return min(walls), min(cpus)


def measure(label: str, model: nn.Module, meta_model: nn.Module, repeats: int) -> dict:
    count = sum(1 for _ in model.parameters())
    # A small model plans in well under a millisecond, where the best of 3 is at the mercy of
    # one interruption: there every time is the best of enough runs for 2*10^4 parameters.
    repeats = max(repeats, -(-20000 // count))
    row = {"model": label, "parameters": count}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ZERO_BIAS matches nothing in the MoE model, which has no biases
        for collect in (True, False):
            tag = "" if collect else "_nogc"
            ours, ours_cpu = best(lambda: nspl_filler.init_module_(model, seed=0, rules=ZERO_BIAS), repeats, collect)
            theirs, theirs_cpu = best(lambda: torch_loop(model), repeats, collect)
            row[f"init_module_us{tag}"] = 1e6 * ours / count
            row[f"torch_loop_us{tag}"] = 1e6 * theirs / count
            row[f"ratio{tag}"] = theirs / ours
            row[f"init_module_cpu_us{tag}"] = 1e6 * ours_cpu / count
            row[f"torch_loop_cpu_us{tag}"] = 1e6 * theirs_cpu / count
            row[f"ratio_cpu{tag}"] = theirs_cpu / ours_cpu
        plans = {
            # torch's own walk of the same model, for scale: what listing the parameters costs.
            "named_parameters": lambda: list(meta_model.named_parameters()),
            "planner": lambda: planning.plan(meta_model, resolve("plan", {}, PlanOptions)),
            "planner_globs": lambda: planning.plan(meta_model, resolve("plan", {"rules": GLOBS}, PlanOptions)),
            "planner_name": lambda: name_keys(meta_model),
            "plan_defaults": lambda: nspl_filler.init_module_(meta_model, seed=0),
            "plan_globs": lambda: nspl_filler.init_module_(meta_model, seed=0, rules=GLOBS),
            "plan_name": lambda: nspl_filler.init_module_(meta_model, seed=0, stream="name"),
            "init_plan": lambda: nspl_filler.init_plan(meta_model),
        }
        plan_repeats = max(repeats, PLAN_REPEATS)
        for key, function in plans.items():
            wall, cpu = best(function, plan_repeats, True)
            row[f"{key}_us"] = 1e6 * wall / count
            row[f"{key}_cpu_us"] = 1e6 * cpu / count
        # The same from cold caches: a model too large for them is read from memory on every
        # run, a small one only here, so these compare every size from one state.
        for key in COLD:
            # Each cold run first writes EVICT_BYTES (tens of ms): PLAN_REPEATS of them at every size.
            wall, cpu = best(plans[key], PLAN_REPEATS, True, cold=True)
            row[f"{key}_cold_us"] = 1e6 * wall / count
            row[f"{key}_cold_cpu_us"] = 1e6 * cpu / count
    return row


def name_keys(model: nn.Module) -> list[int]:
    """The plan and the stream keys of stream="name": the parameters' canonical names, checked,
    hashed to their keys (what init_module_ derives before its op calls)."""
    the_plan = planning.plan(model, resolve("plan", {}, PlanOptions))
    names = stream.check_names(the_plan.names, len(the_plan), "the parameters' names", model)
    return stream._keys(0, names)


# The planning paths measured from cold caches too; the runs of every planning path at every size.
COLD = ("planner", "planner_globs", "planner_name", "init_plan", "named_parameters")
PLAN_REPEATS = 20


def cold_table(rows: list[dict]) -> str:
    lines = ["| model | parameters | planner: defaults | globs | stream=name keys | init_plan | named_parameters() |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | "
                     + " | ".join(f"{r[f'{key}_cold_us']:.2f}" for key in COLD) + " |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | init_module_ µs/param | torch loop µs/param | ratio | ratio (gc off) "
             "| ratio (CPU time) | planner: defaults | globs | stream=name keys | init_plan "
             "| on meta: defaults | globs | stream=name | named_parameters() |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['init_module_us']:.2f} | {r['torch_loop_us']:.2f} "
            f"| {r['ratio']:.2f}x | {r['ratio_nogc']:.2f}x | {r['ratio_cpu']:.2f}x | {r['planner_us']:.2f} "
            f"| {r['planner_globs_us']:.2f} | {r['planner_name_us']:.2f} | {r['init_plan_us']:.2f} "
            f"| {r['plan_defaults_us']:.2f} | {r['plan_globs_us']:.2f} | {r['plan_name_us']:.2f} "
            f"| {r['named_parameters_us']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[100, 500, 1000, 10000, 30000, 50000])  # 2 params each
    parser.add_argument("--moe", type=int, nargs=3, default=[24, 64, 3], metavar=("LAYERS", "EXPERTS", "PROJ"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0, help="cProfile init_module_ at this many layers")
    parser.add_argument("--save", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = load_average()
    if args.profile:
        import cProfile
        import pstats
        model = sequential(args.profile)
        nspl_filler.init_module_(model, seed=0, rules=ZERO_BIAS)
        profiler = cProfile.Profile()
        profiler.runcall(nspl_filler.init_module_, model, seed=0, rules=ZERO_BIAS)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return
    rows = []
    for n in args.layers:
        rows.append(measure(f"Sequential({n:,} x Linear(16, 16))", sequential(n), sequential(n, "meta"),
                            args.repeats))
        print(table(rows[-1:]), cold_table(rows[-1:]), sep="\n", flush=True)
    layers, experts, _ = args.moe
    rows.append(measure(f"MoE {layers} layers x {experts} experts x 3 projections", moe(layers, experts),
                        moe(layers, experts, "meta"), args.repeats))
    text = table(rows) + "\n\nPlanning from cold caches (each run after writing " \
        f"{EVICT_BYTES >> 20} MiB), µs per parameter:\n\n" + cold_table(rows)
    print(text)
    if args.save:
        date = datetime.date.today().isoformat()
        info = machine()
        os.makedirs(args.save, exist_ok=True)
        base = os.path.join(args.save, f"plan_scale_cpu_{date}")
        with open(base + ".json", "w") as f:
            json.dump({"date": date, "machine": info, "load_average_before": load_before, "threads": args.threads,
                       "repeats": args.repeats, "rows": rows}, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write(f"# Planning at scale ({date})\n\nMachine: {info['cpu']}, {info['cpu_count']} cores, "
                    f"{args.threads} torch threads, torch {info['torch']}, Python {info['python']}; load average "
                    f"{load_before} before, {info['load_average']} after. Best of {args.repeats} runs (of more for a small model: "
                    "enough runs for 2*10^4 parameters) after a warm-up. "
                    "Times per parameter in µs. Ratio: torch loop time / init_module_ time (above 1: init_module_ "
                    "is faster), wall clock, wall clock with the collector off, and CPU time of the process. "
                    "Planning, on the model built on the meta device: the planner (nspl_filler.plan.plan) with the "
                    "defaults and with a table of globs, the planner and the keys of stream=\"name\" (names "
                    "checked and hashed), and init_plan (the report). On meta: init_module_ of that model "
                    "(planning, streams and every op's checks; nothing is written). named_parameters(): torch's own "
                    "listing of the meta model's parameters, for scale (what a walk of its modules costs). "
                    f"These planning times are the best of {PLAN_REPEATS} runs at every size (of more for a small "
                    "model), so that the growth from one size to another compares the best of as many runs. "
                    "The second table times the planning paths again from cold caches, the best of "
                    f"{PLAN_REPEATS} runs at every size.\n\n"
                    + text + "\n")


if __name__ == "__main__":
    main()
