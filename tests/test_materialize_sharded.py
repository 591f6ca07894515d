"""materialize_ of sharded models: a small transformer built on meta (or in empty_weights()),
sharded by FSDP2, tensor parallel or both on a 2-D mesh, gets memory for its local shards
only and, on every world size and mesh, the values a single process gives the unsharded
model, bit for bit. Gloo processes (CPU); the same checks on NCCL where GPUs are visible."""
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from distributed import requires_gpus, run_workers

from nspl_filler import empty_weights, init_module_, materialize_

pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed (gloo)"
)
SEED = 2**63 + 12345
VOCAB, WIDTH, HIDDEN, BLOCKS = 30, 12, 20, 2  # 30 rows over 4 ranks: 8, 8, 8, 6


class Rotary(nn.Module):
    """Buffers computed from the sizes (rotary frequencies, positions): on meta they have no
    values until reset_parameters computes them."""

    def __init__(self, dim, length=6):
        super().__init__()
        self.register_buffer("inv_freq", torch.empty(dim // 2), persistent=False)
        self.register_buffer("positions", torch.empty(length, dtype=torch.int64), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            dim = 2 * self.inv_freq.numel()
            self.inv_freq.copy_(1.0 / 10000 ** (torch.arange(0, dim, 2, device=self.inv_freq.device) / dim))
            self.positions.copy_(torch.arange(self.positions.numel(), device=self.positions.device))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention_norm = nn.RMSNorm(WIDTH)
        self.q, self.k, self.v = (nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(3))
        self.o = nn.Linear(WIDTH, WIDTH, bias=False)
        self.mlp_norm = nn.RMSNorm(WIDTH)
        self.up = nn.Linear(WIDTH, HIDDEN, bias=False)
        self.down = nn.Linear(HIDDEN, WIDTH, bias=False)


class Transformer(nn.Module):
    """Tied embedding and output layer, as GPT-2 and small LLaMAs tie them."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.rotary = Rotary(WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.norm = nn.RMSNorm(WIDTH)
        self.output = nn.Linear(WIDTH, VOCAB, bias=False)
        self.output.weight = self.embed.weight

    def init_weights(self):
        """torchtitan's convention: one method writes what the layers' initialisation does not."""
        for module in self.modules():
            if isinstance(module, (nn.RMSNorm, Rotary)):
                module.reset_parameters()


TP_PLAN = {"q": "colwise", "k": "colwise", "v": "colwise", "o": "rowwise", "up": "colwise", "down": "rowwise"}


def shard(model, mesh, how):
    """FSDP2 ("fsdp"), tensor parallel ("tp") or both ("fsdp+tp", mesh ("dp", "tp"))."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    if "tp" in how:
        tp = mesh["tp"] if mesh.ndim == 2 else mesh
        for block in model.blocks:
            parallelize_module(block, tp, {name: ColwiseParallel() if style == "colwise" else RowwiseParallel()
                                           for name, style in TP_PLAN.items()})
    if "fsdp" in how:
        dp = mesh["dp"] if mesh.ndim == 2 else mesh
        for block in model.blocks:
            fully_shard(block, mesh=dp)
        fully_shard(model, mesh=dp)
    return model


def reference_values(**init_args):
    model = init_module_(Transformer(), **init_args)
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


def assert_same_values(model, reference, context):
    seen = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        seen[name] = (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()
    assert set(seen) == set(reference) - {"output.weight"}, context  # the tie: one parameter, one name
    for name, value in seen.items():
        assert torch.equal(value, reference[name]), (context, name)
    assert model.output.weight is model.embed.weight, context


class Allocations(TorchDispatchMode):
    """Records the bytes of every tensor an op creates with storage of its own (factory ops,
    copies, out-of-place results), of a DTensor its local tensor's: views and in-place ops
    allocate nothing."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        held = {_storage(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta and _storage(t) not in held:
                self.sizes.append((str(func), _local(t).untyped_storage().nbytes()))
        return out


def _local(t):
    return t._local_tensor if hasattr(t, "_local_tensor") else t


def _storage(t):
    local = _local(t)
    return None if local.is_meta else local.untyped_storage().data_ptr()


def check_no_full_tensor(mesh, device, how):
    """Every allocation during materialize_ is at most one parameter's local shard (FSDP2's
    padded one), and all of them together at most twice the shards (FSDP2 pads uneven shards
    into a second allocation) and the buffers."""
    with torch.device("meta"):
        model = shard(Transformer(), mesh, how)
    with Allocations() as recorder:
        materialize_(model, device, values="reset_parameters", seed=SEED)
    shards = [_local(p).untyped_storage().nbytes() for p in model.parameters()]
    buffers = sum(b.untyped_storage().nbytes() for b in model.buffers())
    largest = max(shards)
    biggest = max(recorder.sizes, key=lambda s: s[1])
    assert biggest[1] <= largest, (how, biggest, largest)
    total = sum(size for _, size in recorder.sizes)
    assert total <= 2 * sum(shards) + buffers + 1024, (how, total, sum(shards), buffers)
    # The fallback, a full tensor on each rank, then sharded, fails the first check.
    from torch.distributed.tensor import Shard, distribute_tensor

    with Allocations() as recorder:
        full = init_module_(nn.Embedding(VOCAB, WIDTH, device=device), seed=SEED).weight.detach()
        distribute_tensor(full, mesh if mesh.ndim == 1 else mesh["dp"], [Shard(0)])
    fallback = max(size for _, size in recorder.sizes)
    assert fallback == VOCAB * WIDTH * 4
    if "fsdp" in how and mesh.size() > 1:
        assert fallback > largest


def check_values(mesh, device, layouts):
    for how in layouts:
        for stream, flows in (("sequential", ("meta", "empty_weights", "init_weights")), ("name", ("meta", "empty_weights"))):
            reference = reference_values(seed=SEED, stream=stream)
            for flow in flows:
                context = (mesh.shape, how, stream, flow)
                if flow == "empty_weights":
                    with empty_weights():
                        model = Transformer()
                else:
                    with torch.device("meta"):
                        model = Transformer()
                shard(model, mesh, how)
                values = {"meta": "reset_parameters", "empty_weights": None, "init_weights": Transformer.init_weights}
                materialize_(model, device, values=values[flow], seed=SEED, stream=stream)
                assert all(not t.is_meta for t in model.state_dict().values()), context
                assert_same_values(model, reference, context)


def check_refusal_on_one_rank(mesh, device):
    """A check that fails on rank 1 only (a rule that differs by rank) stops every rank before
    anything is allocated."""
    with torch.device("meta"):
        model = shard(Transformer(), mesh, "fsdp")
    rank = dist.get_rank()
    rules = {"norm.weight": 1e300 if rank == 1 else 1.0}
    with pytest.raises(ValueError, match="overflows" if rank == 1 else "another rank"):
        materialize_(model, device, values="reset_parameters", seed=SEED, rules=rules)
    assert all(p.is_meta for p in model.parameters())
    # A bad argument on one rank: the same.
    with pytest.raises(ValueError, match="meta_buffers" if rank == 1 else "another rank"):
        materialize_(model, device, values="reset_parameters", seed=SEED,
                     meta_buffers="zeros" if rank == 1 else "raise")
    assert all(p.is_meta for p in model.parameters())


def worker(device, mesh_shape, layouts, checks):
    from torch.distributed.device_mesh import init_device_mesh

    names = ("dp", "tp") if len(mesh_shape) == 2 else None
    mesh = init_device_mesh(device.type, mesh_shape, mesh_dim_names=names)
    check_values(mesh, device, layouts)
    if "allocations" in checks:
        for how in layouts:
            check_no_full_tensor(mesh, device, how)
    if "refusal" in checks:
        check_refusal_on_one_rank(mesh, device)


CASES = {
    # world size: (mesh shape, layouts, extra checks)
    1: [((1,), ("fsdp",), ("allocations",))],
    2: [((2,), ("fsdp", "tp"), ("allocations", "refusal"))],
    4: [((4,), ("fsdp",), ("allocations",)), ((2, 2), ("fsdp+tp",), ("allocations",))],
}


def many(rank, device, cases):
    for mesh_shape, layouts, checks in cases:
        worker(device, mesh_shape, layouts, checks)


@pytest.mark.parametrize("world", sorted(CASES))
def test_gloo(world, tmp_path):
    run_workers(many, "gloo", tmp_path, CASES[world], world=world)


@pytest.mark.parametrize("world", [2, 4])
def test_nccl(world, tmp_path):
    requires_gpus(world)
    run_workers(many, "nccl", tmp_path, CASES[world], world=world)
