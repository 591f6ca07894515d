"""DTensor support (torch.distributed.tensor, FSDP2's fully_shard): where a rank's local shard
sits in its global tensor, and giving a DTensor on meta memory for its shard alone. (The key
that every rank of a mesh agrees on is stream.py's.)

A shard is filled with the values its slice has in the unsharded tensor (docs/spec.md §4): the fill
runs on the local tensor with ``global_shape`` = the DTensor's shape and ``global_start`` =
the offset of the shard in it, so element indices, fans and the blocks the fill consumes
are those of the global tensor.
"""
from __future__ import annotations

import sys
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

ShardInfo = tuple[Tensor, Optional[list[int]], Optional[list[int]]]


#: The tensor types whose instances are exactly what they hold (no DTensor, no subclass that
#: may answer for itself): C++ passes over many tensors read these directly.
PLAIN_TYPES = (nn.Parameter, Tensor)


def is_dtensor(tensor: object) -> bool:
    """True for a torch.distributed.tensor.DTensor (an nn.Parameter wrapping one included).

    Reads sys.modules instead of importing: a DTensor exists only once its module has been
    imported, and importing torch.distributed.tensor costs far more than the check."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def any_dtensor(tensors: Iterable[object]) -> bool:
    """Whether any of `tensors` is a DTensor (see is_dtensor)."""
    module = sys.modules.get("torch.distributed.tensor")
    if module is None:
        return False
    kind = module.DTensor
    return any(isinstance(t, kind) for t in tensors)


def local_shard(tensor: Tensor) -> ShardInfo:
    """(local tensor, global_shape, global_start) to fill `tensor` with.

    A DTensor gives its local tensor and the block of the global tensor that the local tensor
    holds: Shard(d) (uneven splits included) and Replicate placements on any mesh; the same
    global block on every rank that holds a replica. Any other tensor gives (tensor, None, None).
    FSDP2 over tensor parallel (_StridedShard) too, where the slice is one block of the global
    tensor. Partial placements (a sum still to be reduced) and shards whose slice is not one
    block raise ValueError / NotImplementedError. Call under no_grad so
    that the local tensor is the DTensor's own storage, not an autograd view of it.
    """
    if not is_dtensor(tensor):
        return tensor, None, None
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    for placement in tensor.placements:
        if not isinstance(placement, (Shard, _StridedShard, Replicate)):
            if placement.is_partial():
                raise ValueError(
                    f"nspl_filler: cannot fill a DTensor with placement {placement}: its local "
                    "tensors are summands of the values, not the values; redistribute it first"
                )
            raise NotImplementedError(
                f"nspl_filler: DTensor placement {placement} is not supported; use Shard or Replicate"
            )
    local = tensor.to_local()
    block = _global_block(tensor)
    if block is None:  # this rank is not in the mesh and holds nothing
        return local, None, None
    shape, start = block
    if tuple(shape) != tuple(local.shape):
        raise RuntimeError(
            f"nspl_filler: the local tensor of shape {tuple(local.shape)} is not the shard "
            f"{tuple(shape)} that the placements {tensor.placements} give for {tuple(tensor.shape)}"
        )
    return local, list(tensor.shape), start


def _global_block(tensor: Tensor) -> Optional[tuple[list[int], list[int]]]:
    """(shape, start) of the block of the global tensor that this rank's shard of `tensor`
    holds; None if this rank is not in the mesh.

    Follows the indices of each tensor dimension through the placements, mesh dimension by
    mesh dimension, as DTensor shards: Shard(d) keeps a contiguous chunk of what is left of
    dimension d, _StridedShard(d) (FSDP2 over a tensor-parallel dimension, placed before it)
    a strided selection of it. A 2-D FSDP x TP shard is one block again; a selection that is
    not one block (an interleaved _StridedShard) raises NotImplementedError, since one fill
    call writes one block."""
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    mesh = tensor.device_mesh
    coordinate = mesh.get_coordinate()
    if coordinate is None:
        return None
    indices: list[Sequence[int]] = [range(n) for n in tensor.shape]
    for mesh_dim, placement in enumerate(tensor.placements):
        if isinstance(placement, _StridedShard):
            kept = _strided_chunk(len(indices[placement.dim]), placement.split_factor, mesh.size(mesh_dim),
                                  coordinate[mesh_dim])
            indices[placement.dim] = [indices[placement.dim][k] for k in kept]
        elif isinstance(placement, Shard):
            size, offset = Shard.local_shard_size_and_offset(len(indices[placement.dim]), mesh.size(mesh_dim),
                                                             coordinate[mesh_dim])
            indices[placement.dim] = indices[placement.dim][offset:offset + size]
    shape, start = [], []
    for dim, kept in enumerate(indices):
        first = kept[0] if len(kept) else tensor.shape[dim]
        if not isinstance(kept, range) and kept != list(range(first, first + len(kept))):
            raise NotImplementedError(
                f"nspl_filler: DTensor placements {tensor.placements}: this rank's shard of dimension {dim} "
                f"holds indices {list(kept)[:8]}..., not one block of the global tensor"
            )
        shape.append(len(kept))
        start.append(first)
    return shape, start


def _strided_chunk(length: int, split_factor: int, chunks: int, rank: int) -> list[int]:
    """The indices, among `length`, that _StridedShard(split_factor) gives chunk `rank` of
    `chunks`: the dimension is cut into split_factor pieces (torch.chunk's sizes), each piece
    into `chunks` (the same way), and the rank takes its part of every piece. Arithmetic only:
    no index tensors, so that placing a shard allocates nothing."""
    first = -(-length // split_factor)
    kept: list[int] = []
    for piece in range(split_factor):
        start, end = min(first * piece, length), min(first * (piece + 1), length)
        size = max(0, end - start)
        second = -(-size // chunks)
        kept.extend(range(start + min(second * rank, size), start + min(second * (rank + 1), size)))
    return kept

def comm_device(mesh) -> torch.device:
    """The device on which the collectives of `mesh` take their tensors (the current one of
    the mesh's device type)."""
    device = torch.device(mesh.device_type)
    if device.type != "cpu":
        device = torch.device(device.type, torch.get_device_module(device.type).current_device())
    return device


def root_meshes(tensors: Iterable[Tensor]) -> list:
    """The root device meshes of the DTensors among `tensors` (FSDP2 over tensor parallel puts
    some parameters on a 1-D sub-mesh, others on the 2-D mesh it comes from), in an order every
    rank agrees on; only those this rank belongs to."""
    roots = {}
    for t in tensors:
        if is_dtensor(t):
            root = t.device_mesh._get_root_mesh()
            if root.get_coordinate() is not None:
                roots[tuple(root.mesh.flatten().tolist())] = root
    return [roots[k] for k in sorted(roots)]


def all_passed(meshes: Sequence, passed: bool) -> bool:
    """Whether every rank of `meshes` passed: a collective (a max over each mesh dimension in
    turn, which reaches every rank) that every rank of them must join, so that a check that
    fails on one rank stops all of them at the same point instead of leaving the others
    waiting in a later collective."""
    import torch.distributed as dist

    for mesh in meshes:
        flag = torch.tensor([0 if passed else 1], dtype=torch.int32, device=comm_device(mesh))
        for dim in range(mesh.ndim):
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
        passed = passed and int(flag) == 0
    return passed


def check_placeable(tensor: Tensor, device: torch.device, name: str) -> None:
    """Checks that materialise_shard can give DTensor `tensor` (parameter `name`) memory on
    `device`: a mesh of that device type, placements whose shards are blocks."""
    if tensor.device_mesh.device_type != device.type:
        raise ValueError(
            f"nspl_filler: parameter {name!r} is a DTensor on a {tensor.device_mesh.device_type!r} device mesh, "
            f"so its shard cannot live on device {str(device)!r}; pass a device of type "
            f"{tensor.device_mesh.device_type!r}"
        )
    with torch.no_grad():
        local_shard(tensor)


def materialise_shard(param: nn.Parameter, device: torch.device) -> None:
    """Gives DTensor parameter `param` memory on `device` for its local shard only (its
    values: uninitialised where it was on meta, moved otherwise), in place: the Parameter
    object stays the same (torch.utils.swap_tensors, as nn.Module._apply does for tensor
    subclasses), so every name tied to it and FSDP2's record of it follow."""
    from torch.distributed.tensor import DTensor

    with torch.no_grad():
        local = param._local_tensor
        local = torch.empty_like(local, device=device) if local.is_meta else local.to(device)
        new = DTensor.from_local(local, param.device_mesh, param.placements, run_check=False,
                                 shape=param.shape, stride=param.stride())
        new = nn.Parameter(new, requires_grad=param.requires_grad)
        new.__dict__.update(param.__dict__)  # swap_tensors swaps the attributes too
        torch.utils.swap_tensors(param, new)


def reset_fsdp_shards(modules: Iterable[nn.Module]) -> None:
    """FSDP2 keeps each sharded parameter's local tensor padded to an even split (and a flat
    view of it to all-gather): after materialise_shard changed them, it re-reads them, as it
    does after nn.Module._apply (to_empty) and load_state_dict(assign=True)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    if fsdp is None:
        return
    with torch.no_grad():
        for module in modules:
            if isinstance(module, fsdp.FSDPModule):
                for group in module._get_fsdp_state()._fsdp_param_groups:
                    for fsdp_param in group.fsdp_params:
                        fsdp_param.reset_sharded_param()
