"""Initialising a model sharded by FSDP2 over gloo processes (CPU), two ways:

- in place: every rank builds the model on meta, shards it (fully_shard), and
  ``materialize_(model, "cpu", values="reset_parameters", seed=0)`` gives each rank memory
  for its own shards and their values;
- full, then sharded (what users fall back on): rank 0 builds the whole model and
  ``init_module_(model, seed=0)`` fills it; every rank builds it on meta, shards it, gives
  it memory with ``to_empty`` and receives its shards from rank 0's full state dict
  (``set_model_state_dict(..., full_state_dict=True, broadcast_from_rank0=True)``), and
  the non-persistent buffers are computed again.

Per world size (1, 2, 4) and way: the wall time from the sharded meta model to every rank
holding its values (the slowest rank's, between barriers), and each rank's peak resident
memory above what it held before (its high-water mark, so each measurement is a fresh set
of processes). Both ways give every rank the same values (checked: a checksum of each
rank's shards). ``python benchmarks/sharded_init.py [--width 768 --blocks 6 --vocab 16000]
[--repeats 3] [--out benchmarks/results/sharded_init_cpu_DATE]``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

import nspl_filler  # noqa: E402

WAYS = ("in place", "full, then sharded")


class Rotary(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.register_buffer("inv_freq", torch.empty(dim // 2), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            dim = 2 * self.inv_freq.numel()
            self.inv_freq.copy_(1.0 / 10000 ** (torch.arange(0, dim, 2, device=self.inv_freq.device) / dim))


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.attention_norm, self.mlp_norm = nn.RMSNorm(width), nn.RMSNorm(width)
        self.q, self.k, self.v, self.o = (nn.Linear(width, width, bias=False) for _ in range(4))
        self.up = nn.Linear(width, 8 * width // 3, bias=False)
        self.down = nn.Linear(8 * width // 3, width, bias=False)


class Transformer(nn.Module):
    """A LLaMA-like decoder's parameters: no biases, RMSNorm, rotary buffer, tied embedding."""

    def __init__(self, width, blocks, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.rotary = Rotary(width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(blocks))
        self.norm = nn.RMSNorm(width)
        self.output = nn.Linear(width, vocab, bias=False)
        self.output.weight = self.embed.weight


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def sharded_on_meta(size):
    from torch.distributed.fsdp import fully_shard

    with torch.device("meta"):
        model = Transformer(*size)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def rank_main(rank, world, way, size, init_file, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = sharded_on_meta(size)
        dist.barrier()
        before = peak_rss_bytes()
        start = time.perf_counter()
        if way == "in place":
            nspl_filler.materialize_(model, "cpu", values="reset_parameters", seed=0)
        else:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            full = nspl_filler.init_module_(Transformer(*size), seed=0).state_dict() if rank == 0 else {}
            model.to_empty(device="cpu")
            set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True,
                                                                       broadcast_from_rank0=True))
            model.rotary.reset_parameters()
            del full
        dist.barrier()
        seconds = time.perf_counter() - start
        peak = peak_rss_bytes() - before
        with torch.no_grad():
            checksum = sum(float(p._local_tensor.double().sum()) for p in model.parameters())
            checksum += sum(float(b.double().sum()) for b in model.buffers())
        shard_bytes = sum(p._local_tensor.numel() * p.element_size() for p in model.parameters())
        results.put((rank, seconds, peak, shard_bytes, checksum))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def measure(world, way, size):
    """One fresh set of `world` processes (so that each peak is this measurement's), forked
    from a server that has imported torch once."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch.distributed.fsdp", "torch.distributed.checkpoint.state_dict",
                                    "nspl_filler", "common"])
    results = context.SimpleQueue()
    with tempfile.TemporaryDirectory() as scratch:
        mp.start_processes(rank_main, args=(world, way, size, os.path.join(scratch, "rendezvous"), results),
                           nprocs=world, start_method="forkserver")
    rows = sorted(results.get() for _ in range(world))
    return {
        "seconds": max(r[1] for r in rows),
        "peak_rss_above_start_bytes": [r[2] for r in rows],
        "shard_bytes": [r[3] for r in rows],
        "checksums": [r[4] for r in rows],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--worlds", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    size = (args.width, args.blocks, args.vocab)
    total = sum(p.numel() * p.element_size() for p in sharded_model_parameters(size))
    report = {"machine": machine(), "date": datetime.date.today().isoformat(), "width": args.width,
              "blocks": args.blocks, "vocab": args.vocab, "model_bytes": total, "runs": []}
    for world in (int(w) for w in args.worlds.split(",")):
        for repeat in range(args.repeats):
            for way in WAYS:  # the two ways take turns, so that load from elsewhere hits both
                run = {"world": world, "way": way, "repeat": repeat, **measure(world, way, size)}
                report["runs"].append(run)
                print(json.dumps(run), flush=True)
    for world in sorted({r["world"] for r in report["runs"]}):
        sums = {tuple(round(c, 3) for c in r["checksums"]) for r in report["runs"] if r["world"] == world}
        if len(sums) != 1:
            raise SystemExit(f"world {world}: the two ways gave different values: {sums}")
    table = summary(report)
    print(table)
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump(report, f, indent=1)
        with open(args.out + ".md", "w") as f:
            m = report["machine"]
            f.write(f"# sharded_init, cpu, {report['date']}\n\n{m['cpu']} ({m['cpu_count']} cores), torch "
                    f"{m['torch']}, {m['platform']}, load average at the start {m['load_average']}\n\n{table}\n")


def sharded_model_parameters(size):
    with torch.device("meta"):
        return list(Transformer(*size).parameters())


def summary(report) -> str:
    mib = 2 ** 20
    lines = [f"Model: width {report['width']}, {report['blocks']} blocks, vocabulary {report['vocab']}: "
             f"{report['model_bytes'] / mib:.0f} MiB of float32 parameters. Median of "
             f"{max(r['repeat'] for r in report['runs']) + 1} runs (time: the slowest rank; memory: peak "
             "resident memory above the start, the largest over the runs).\n",
             "| world | way | time s | peak MiB, rank 0 | peak MiB, other ranks (max) | own shards MiB per rank |",
             "|---:|---|---:|---:|---:|---:|"]
    for world in sorted({r["world"] for r in report["runs"]}):
        for way in WAYS:
            runs = [r for r in report["runs"] if r["world"] == world and r["way"] == way]
            seconds = statistics.median(r["seconds"] for r in runs)
            rank0 = max(r["peak_rss_above_start_bytes"][0] for r in runs) / mib
            others = max((max(r["peak_rss_above_start_bytes"][1:], default=0) for r in runs)) / mib
            shards = max(runs[0]["shard_bytes"]) / mib
            lines.append(f"| {world} | {way} | {seconds:.2f} | {rank0:.0f} | "
                         f"{others:.0f} | {shards:.0f} |" if world > 1 else
                         f"| {world} | {way} | {seconds:.2f} | {rank0:.0f} | - | {shards:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
