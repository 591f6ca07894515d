"""Streams by name across processes, on two gloo processes: each stage of a pipeline split,
FSDP2 shards, tensor-parallel shards and a model wrapped by DistributedDataParallel (and
torch.compile) get exactly the values a single process gives the same names. The same
checks run on NCCL where two GPUs are visible."""
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from distributed import WORLD, requires_nccl, run_workers

from nspl_filler import canonical_name, fill_, fill_many_, init_module_

pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed (gloo)"
)
SEED = 2**64 - 29
# Biases and norm layers keep their values by default, and a fresh model's differ: these rules
# write them, so that every parameter can be compared with the single-process model's.
BASE = {"*bias": "zeros", nn.LayerNorm: "ones"}


class Block(nn.Module):
    """7 hidden units: uneven shards over two ranks."""

    def __init__(self, width):
        super().__init__()
        self.up = nn.Linear(width, 7)
        self.down = nn.Linear(7, width)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class Net(nn.Module):
    """Layers in a ModuleDict and optional ends, as pipeline trainers build stages: a stage is
    the whole definition with the other stages' modules deleted, so names do not change."""

    def __init__(self, layers=4, width=8):
        super().__init__()
        self.embed = nn.Embedding(13, width, padding_idx=12)
        self.layers = nn.ModuleDict({str(i): Block(width) for i in range(layers)})
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 5)

    def forward(self, x):
        h = self.embed(x) if self.embed is not None else x
        for layer in self.layers.values():
            h = layer(h)
        h = self.norm(h) if self.norm is not None else h
        return self.head(h) if self.head is not None else h


def stage_of(rank, device):
    """Pipeline stage `rank` of two: built on meta, trimmed to its layers, materialised."""
    with torch.device("meta"):
        model = Net()
    if rank == 0:
        del model.layers["2"], model.layers["3"]
        model.norm = model.head = None
    else:
        del model.layers["0"], model.layers["1"]
        model.embed = None
    return model.to_empty(device=device)


def full_values(model):
    """Canonical name -> the global values, for plain and DTensor parameters alike."""
    values = {}
    for name, p in model.named_parameters():
        p = p.full_tensor() if hasattr(p, "full_tensor") else p
        values[canonical_name(name, model)] = p.detach().cpu()
    return values


def assert_values(model, reference, expected_names=None):
    values = full_values(model)
    assert set(values) == set(expected_names or reference), sorted(values)
    for name, value in values.items():
        assert torch.equal(value, reference[name]), name


def check_pipeline(rank, device, reference):
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    stage = stage_of(rank, device)
    init_module_(stage, seed=SEED, stream="name", rules=BASE)
    held = [name for name, _ in stage.named_parameters()]
    assert held and all(name.startswith(("layers.0.", "layers.1.", "embed.")) == (rank == 0) for name in held)
    assert_values(stage, reference, held)

    # The stages run as one pipeline and compute what the single-process model computes.
    x = torch.tensor([[1, 5, 12, 3], [0, 2, 7, 9]], device=device)
    schedule = ScheduleGPipe(PipelineStage(stage, rank, WORLD, device), n_microbatches=2)
    with torch.no_grad():
        out = schedule.step(x) if rank == 0 else schedule.step()
        if rank == WORLD - 1:
            model = Net()
            model.load_state_dict(reference)
            torch.testing.assert_close(out.cpu(), model(x.cpu()), rtol=1e-6, atol=1e-6)

    # The sequential stream, by contrast, gives the second stage other values.
    sequential = init_module_(stage_of(rank, device), seed=SEED, rules=BASE)
    if rank == 1:
        assert not torch.equal(sequential.head.weight.detach().cpu(), reference["head.weight"])


def check_fsdp(mesh, device, reference):
    from torch.distributed.fsdp import fully_shard

    with torch.device("meta"):
        model = Net()
    for layer in model.layers.values():
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device=device)
    init_module_(model, seed=SEED, stream="name", rules=BASE)
    assert_values(model, reference)


def check_tensor_parallel(mesh, device, reference):
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    model = Net().to(device)
    plan = {}
    for key in model.layers:
        plan.update({f"layers.{key}.up": ColwiseParallel(), f"layers.{key}.down": RowwiseParallel()})
    parallelize_module(model, mesh, plan)
    init_module_(model, seed=SEED, stream="name", rules=BASE)
    assert_values(model, reference)

    # fill_many_ by name: DTensors of uneven shards and a plain tensor.
    tensors = [distribute_tensor(torch.zeros(7, 8, device=device), mesh, [Shard(0)]),
               distribute_tensor(torch.zeros(8, 7, device=device), mesh, [Shard(1)]), torch.zeros(13, 8, device=device)]
    names = ["layers.2.up.weight", "layers.2.down.weight", "embed.weight"]
    fill_many_(tensors, seed=SEED, names=names)
    for t, name in zip(tensors, names):
        expected = fill_(torch.empty(t.shape), seed=SEED, name=name)
        assert torch.equal((t.full_tensor() if hasattr(t, "full_tensor") else t).cpu(), expected), name
    assert torch.equal(tensors[0].full_tensor().cpu(), reference[names[0]])


def check_ddp(device, reference):
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(Net().to(device), device_ids=None if device.type == "cpu" else [device])
    assert all(name.startswith("module.") for name, _ in ddp.named_parameters())
    assert canonical_name("module.head.weight", ddp) == "head.weight"
    assert canonical_name("module.head.weight") == "module.head.weight"  # no model: no DDP to strip
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        canonical_name("head.weight", ddp)
    init_module_(ddp, seed=SEED, stream="name", rules=BASE)
    assert_values(ddp, reference)
    compiled = torch.compile(DistributedDataParallel(Net().to(device), device_ids=None if device.type == "cpu"
                                                     else [device]), backend="eager")
    assert all(name.startswith("_orig_mod.module.") for name, _ in compiled.named_parameters())
    init_module_(compiled, seed=SEED, stream="name", rules=BASE)
    assert_values(compiled, reference)
    # The sequential stream follows the order, which DDP keeps.
    init_module_(ddp, seed=SEED, rules=BASE)
    assert_values(ddp, full_values(init_module_(Net(), seed=SEED, rules=BASE)))


def worker(rank, device):
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (WORLD,))
    reference = full_values(init_module_(Net(), seed=SEED, stream="name", rules=BASE))
    check_pipeline(rank, device, reference)
    check_fsdp(mesh, device, reference)
    check_tensor_parallel(mesh, device, reference)
    check_ddp(device, reference)


def test_gloo_two_processes(tmp_path):
    run_workers(worker, "gloo", tmp_path)


@requires_nccl
def test_nccl_two_gpus(tmp_path):
    run_workers(worker, "nccl", tmp_path)
