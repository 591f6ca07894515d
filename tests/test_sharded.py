"""DTensor shards and FSDP2 (fully_shard) models: every rank fills its shard with exactly the
values its slice has in a single-process fill. Two processes on gloo (CPU); the same checks
on NCCL where two GPUs are visible."""
import copy
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from distributed import WORLD, requires_nccl, run_workers

import nspl_filler
from nspl_filler import Generator, fill_, fill_many_, init_module_, symmetric_power_law_

pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed (gloo)"
)


class Net(nn.Module):
    """Odd sizes on purpose: 7 and 13 rows split unevenly over two ranks."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(13, 8, padding_idx=12)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 8), nn.LayerNorm(8)) for _ in range(2)
        )
        self.head = nn.Linear(8, 3)


def check_fill(mesh, device):
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    cases = [
        ((8, 6), [Shard(0)], torch.float32),
        ((7, 5), [Shard(0)], torch.float32),  # uneven: 4 + 3 rows
        ((4, 9), [Shard(1)], torch.float64),  # uneven columns: 5 + 4
        ((3, 5, 4), [Shard(1)], torch.float32),  # a middle dim: local indices are not consecutive
        ((6, 6), [Replicate()], torch.bfloat16),
        ((1, 4), [Shard(0)], torch.float32),  # one rank holds nothing
    ]
    for shape, placements, dtype in cases:
        expected = fill_(torch.empty(shape, dtype=dtype), alpha=1.5, seed=5)
        dt = distribute_tensor(torch.zeros(shape, dtype=dtype, device=device), mesh, placements)
        assert fill_(dt, alpha=1.5, seed=5) is dt
        assert torch.equal(dt.full_tensor().cpu(), expected), (shape, placements)

        expected = symmetric_power_law_(torch.empty(shape, dtype=dtype), 2.0, 0.1, 3.0, seed=6)
        symmetric_power_law_(dt, 2.0, 0.1, 3.0, seed=6)
        assert torch.equal(dt.full_tensor().cpu(), expected), (shape, placements)

    # fill_many_: DTensors of every placement and a plain tensor, from one Generator.
    shapes = [((7, 5), [Shard(0)], torch.float32), ((3, 3), None, torch.float32),
              ((4, 6), [Shard(1)], torch.float64), ((5, 4), [Replicate()], torch.float32)]
    tensors = [torch.zeros(s, dtype=d, device=device) if p is None else
               distribute_tensor(torch.zeros(s, dtype=d, device=device), mesh, p) for s, p, d in shapes]
    g = Generator(11, offset=3)
    fill_many_(tensors, gain=[1.0, 2.0, 3.0, 4.0], generator=g)
    reference = Generator(11, offset=3)
    for t, (s, p, d), gain in zip(tensors, shapes, [1.0, 2.0, 3.0, 4.0]):
        expected = fill_(torch.empty(s, dtype=d), gain=gain, generator=reference)
        assert torch.equal((t if p is None else t.full_tensor()).cpu(), expected), (s, p)
    assert g.get_state() == reference.get_state()

    # A torch generator: ranks seeded differently still agree on one key (rank 0's).
    rank = dist.get_rank()
    torch.manual_seed(100 + rank)
    key = nspl_filler.stream.agreed_key(mesh, None)
    keys = [None] * WORLD
    dist.all_gather_object(keys, key)
    assert keys == [key] * WORLD
    torch.manual_seed(100 + rank)
    dt = distribute_tensor(torch.zeros(7, 5, device=device), mesh, [Shard(0)])
    fill_(dt)
    assert torch.equal(dt.full_tensor().cpu(), fill_(torch.empty(7, 5), seed=key))
    torch.manual_seed(100 + rank)
    fill_many_(tensors[:1] + tensors[2:])
    for t, (s, _, d), offset in zip(tensors[:1] + tensors[2:], shapes[:1] + shapes[2:], [0, 9, 21]):
        assert torch.equal(t.full_tensor().cpu(), fill_(torch.empty(s, dtype=d), generator=Generator(key, offset)))

    partial = DTensor.from_local(torch.zeros(4, 4, device=device), mesh, [Partial()])
    with pytest.raises(ValueError, match="summands"):
        fill_(partial, seed=0)


# A model built on meta and materialised with to_empty holds garbage where init_module_ would
# keep values: biases and norm layers get rules.
RULES = [("*.bias", "zeros"), (nn.LayerNorm, "ones")]


def check_fsdp(mesh, device):
    from torch.distributed.fsdp import fully_shard

    for build_on_meta in (True, False):
        if build_on_meta:
            with torch.device("meta"):
                model = Net()
        else:
            model = Net().to(device)
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        if build_on_meta:
            model.to_empty(device=device)
        assert all(nspl_filler.sharded.is_dtensor(p) for p in model.parameters())
        init_module_(model, seed=21, rules=RULES)
        reference = init_module_(Net(), seed=21, rules=RULES)
        names = [name for name, _ in reference.named_parameters()]
        assert [name for name, _ in model.named_parameters()] == names
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            assert torch.equal(p.full_tensor().cpu(), q.detach()), name

    # scale "keep": the std of each global tensor, measured across the mesh.
    own = copy.deepcopy(reference)
    with torch.no_grad():
        own.blocks[0][2].weight.mul_(0.01)
        own.head.weight.zero_()
    from torch.distributed.tensor import distribute_tensor

    with torch.no_grad():
        for p, q in zip(model.parameters(), own.parameters()):
            p.copy_(distribute_tensor(q.detach().to(device), mesh, p.placements))
    init_module_(model, seed=3, scale="keep", rules=RULES)
    init_module_(own, seed=3, scale="keep", rules=RULES)
    for (name, p), q in zip(model.named_parameters(), own.parameters()):
        assert torch.allclose(p.full_tensor().cpu(), q.detach(), rtol=1e-5, atol=0), name

    # A torch generator: the key is agreed across the mesh.
    rank = dist.get_rank()
    torch.manual_seed(50 + rank)
    key = nspl_filler.stream.agreed_key(mesh, None)
    torch.manual_seed(50 + rank)
    init_module_(model, rules=RULES)
    reference = init_module_(Net(), seed=key, rules=RULES)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p.full_tensor().cpu(), q.detach()), name


def worker(rank, device):
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (WORLD,))
    check_fill(mesh, device)
    check_fsdp(mesh, device)


def test_gloo_two_processes(tmp_path):
    run_workers(worker, "gloo", tmp_path)


@requires_nccl
def test_nccl_two_gpus(tmp_path):
    run_workers(worker, "nccl", tmp_path)


def test_single_process_helpers():
    """Without a process group: plain tensors pass through local_shard unchanged."""
    t = torch.empty(3, 3)
    assert nspl_filler.sharded.local_shard(t) == (t, None, None)
    assert not nspl_filler.sharded.is_dtensor(t)
    assert nspl_filler.stream.common_mesh([t]) is None


def test_strided_shards_take_the_indices_torch_gives_them():
    """sharded._strided_chunk (arithmetic) against torch's own index computation for
    _StridedShard, uneven sizes and empty chunks included."""
    from torch.distributed.tensor.placement_types import _StridedShard, _StridedShardOffsetMode

    for length in range(0, 23):
        for split_factor in (1, 2, 3, 4):
            for chunks in (1, 2, 3, 4):
                placement = _StridedShard(0, split_factor=split_factor)
                for rank in range(chunks):
                    size, offsets = placement._local_shard_size_and_offset(
                        length, chunks, rank, offset_mode=_StridedShardOffsetMode.ALL)
                    assert nspl_filler.sharded._strided_chunk(length, split_factor, chunks, rank) == offsets[:size], \
                        (length, split_factor, chunks, rank)
