"""Whole-model initialisation: nspl_filler.init_module_ against a loop of torch.nn.init calls.

The model is a deep transformer encoder (nn.TransformerEncoderLayer blocks, 12 parameter
tensors each, plus embedding and head: >= 500 tensors by default), built on the meta device
and materialised with to_empty, as large models are. Both sides initialise exactly the same
parameters: tensors of >= 2 dims (kaiming_uniform_ with the ReLU gain against NSPL with the
same variance, 2 / fan_in), biases zero, norm weights one. Times are medians of --repeats
runs after a warm-up, on the CPU and (when one is visible) on CUDA, synchronised.

A third case, a loop of nspl_filler.fill_ calls giving the same values as
init_module_(seed=0), separates what bulk filling saves from the cost of sampling NSPL:
"ns per element" near the per-tensor loop's means sampling dominates. init_module_ with
stream="name" (a key per parameter, from its name) runs beside the sequential stream.

    python benchmarks/bulk_init.py                      # table on stdout
    python benchmarks/bulk_init.py --save benchmarks/results
    python benchmarks/bulk_init.py --streams --threads 1 --repeats 201   # stream="name" vs sequential

--save writes bulk_init_<device>_<date>.json and .md there, naming the machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import torch
from torch import nn

import nspl_filler
from common import machine


def build_model(layers: int, width: int, device: str) -> nn.Module:
    with torch.device("meta"):
        model = nn.ModuleDict({
            "embed": nn.Embedding(1000, width),
            "encoder": nn.TransformerEncoder(
                nn.TransformerEncoderLayer(width, nhead=max(1, width // 64), dim_feedforward=4 * width,
                                           batch_first=True),
                num_layers=layers, enable_nested_tensor=False,
            ),
            "head": nn.Linear(width, 1000),
        })
    return model.to_empty(device=device)


def per_tensor_loop(model: nn.Module, weight_init) -> None:
    """One call per parameter, by the rules init_module_'s defaults apply: norm weights 1,
    biases 0, >= 2-D tensors weight_init."""
    for module in model.modules():
        is_norm = isinstance(module, nn.LayerNorm)
        for name, p in module.named_parameters(recurse=False):
            if is_norm and name == "weight":
                nn.init.ones_(p)
            elif p.dim() >= 2:
                weight_init(p)
            else:
                nn.init.zeros_(p)


# init_module_ keeps biases and norm layers by default, and gives embeddings gain 1; the rules
# that make it write what the loops write (after to_empty those hold garbage).
SAME_AS_LOOPS = [("*.bias", "zeros"), (nn.LayerNorm, "ones"), (nn.Embedding, "nspl")]


def torch_nn_init_loop(model: nn.Module) -> None:
    """The baseline: torch.nn.init, He-uniform (kaiming_uniform_, ReLU gain) weights."""
    per_tensor_loop(model, lambda p: nn.init.kaiming_uniform_(p, nonlinearity="relu"))


def nspl_fill_loop(model: nn.Module) -> None:
    """The same NSPL values as init_module_(seed=0, rules=SAME_AS_LOOPS), one fill_ call per weight: what the
    bulk path saves, with the sampling cost equal on both sides."""
    generator = nspl_filler.Generator(0)
    per_tensor_loop(model, lambda p: nspl_filler.fill_(p, generator=generator))


def time_cases(cases: dict, repeats: int, sync) -> dict[str, list[float]]:
    """Seconds per run of each case. The cases take turns within each repeat, in reverse order
    every other repeat, so load from other work on the machine, which comes and goes, and
    whatever a case leaves behind for the next, fall on all of them alike."""
    for fn in cases.values():  # warm-up: allocator, first-call caches
        fn()
    sync()
    times = {name: [] for name in cases}
    for repeat in range(repeats):
        for name, fn in (cases.items() if repeat % 2 == 0 else reversed(cases.items())):
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def run(device: str, layers: int, width: int, repeats: int, streams_only: bool = False) -> dict:
    """Times the cases on one model; the first case is the baseline of the speed-ups.
    streams_only: init_module_'s two streams alone, the sequential one the baseline."""
    model = build_model(layers, width, device)
    params = list(model.parameters())
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cases = {
        "torch.nn.init loop": lambda: torch_nn_init_loop(model),
        "nspl_filler.fill_ loop": lambda: nspl_fill_loop(model),
        "init_module_(seed=0)": lambda: nspl_filler.init_module_(model, seed=0, rules=SAME_AS_LOOPS),
        "init_module_(seed=0, stream=\"name\")": lambda: nspl_filler.init_module_(model, seed=0, stream="name",
                                                                                rules=SAME_AS_LOOPS),
        "init_module_() (torch generator)": lambda: nspl_filler.init_module_(model, rules=SAME_AS_LOOPS),
    }
    if streams_only:
        cases = {name: cases[name] for name in ("init_module_(seed=0)", "init_module_(seed=0, stream=\"name\")")}
    results = time_cases(cases, repeats, sync)
    baseline_name = next(iter(cases))
    baseline = statistics.median(results[baseline_name])
    return {
        "device": device,
        "model": {"layers": layers, "width": width, "tensors": len(params),
                  "elements": sum(p.numel() for p in params),
                  "nspl_tensors": sum(p.dim() >= 2 for p in params)},
        "repeats": repeats,
        "baseline": baseline_name,
        "median_ms": {name: 1e3 * statistics.median(t) for name, t in results.items()},
        "min_ms": {name: 1e3 * min(t) for name, t in results.items()},
        "speedup_vs_baseline": {name: baseline / statistics.median(t) for name, t in results.items()},
    }


def markdown(report: dict) -> str:
    m = report["model"]
    lines = [
        f"### {report['device']}: {m['tensors']} tensors ({m['nspl_tensors']} NSPL), "
        f"{m['elements'] / 1e6:.2f} M elements, {m['layers']} layers of width {m['width']}",
        "",
        f"| method | median ms | min ms | ns per element | speed-up vs {report['baseline']} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, ms in report["median_ms"].items():
        per_element = 1e6 * ms / m["elements"]
        lines.append(f"| {name} | {ms:.2f} | {report['min_ms'][name]:.2f} | {per_element:.2f} | "
                     f"{report['speedup_vs_baseline'][name]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--widths", type=int, nargs="*", default=[32, 128, 512],
                        help="model widths; small ones show the per-tensor overhead, large ones the sampling cost")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 keeps a shared machine's other work from "
                             "stalling a parallel region")
    parser.add_argument("--streams", action="store_true",
                        help="time init_module_'s sequential stream against stream=\"name\" only")
    parser.add_argument("--save", metavar="DIR", help="write bulk_init_<device>_<date>.json and .md here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    today = datetime.date.today().isoformat()
    for device in devices:
        reports = [run(device, args.layers, width, args.repeats, args.streams) for width in args.widths]
        text = "\n\n".join(markdown(r) for r in reports)
        info = machine()
        header = (f"# bulk_init, {device}, {today}\n\n{info['cpu']} ({info['cpu_count']} cores, "
                  f"{info['torch_threads']} torch threads){', ' + info['gpu'] if device.startswith('cuda') else ''}, "
                  f"torch {info['torch']}, {info['platform']}, load average {info['load_average']}\n")
        print(header + "\n" + text + "\n")
        if args.save:
            os.makedirs(args.save, exist_ok=True)
            stem = os.path.join(args.save, f"bulk_init{'_streams' if args.streams else ''}_{device.split(':')[0]}_{today}")
            with open(stem + ".json", "w") as f:
                json.dump({"date": today, "machine": info, "results": reports}, f, indent=2)
                f.write("\n")
            with open(stem + ".md", "w") as f:
                f.write(header + "\n" + text + "\n")


if __name__ == "__main__":
    main()
