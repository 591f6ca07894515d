"""DTensor support (torch.distributed.tensor, FSDP2's fully_shard): where a rank's local shard
sits in its global tensor. (The key that every rank of a mesh agrees on is stream.py's.)

A shard is filled with the values its slice has in the unsharded tensor (docs/spec.md §4): the fill
runs on the local tensor with ``global_shape`` = the DTensor's shape and ``global_start`` =
the offset of the shard in it, so element indices, fans and the blocks the fill consumes
are those of the global tensor.
"""
from __future__ import annotations

import sys
from typing import Optional

from torch import Tensor

ShardInfo = tuple[Tensor, Optional[list[int]], Optional[list[int]]]


def is_dtensor(tensor: object) -> bool:
    """True for a torch.distributed.tensor.DTensor (an nn.Parameter wrapping one included).

    Reads sys.modules instead of importing: a DTensor exists only once its module has been
    imported, and importing torch.distributed.tensor costs far more than the check."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def local_shard(tensor: Tensor) -> ShardInfo:
    """(local tensor, global_shape, global_start) to fill `tensor` with.

    A DTensor gives its local tensor and the block of the global tensor that the local tensor
    holds: Shard(d) (uneven splits included) and Replicate placements on any mesh; the same
    global block on every rank that holds a replica. Any other tensor gives (tensor, None, None).
    Partial placements (a sum still to be reduced) and strided shards (whose slice is not one
    block of the global tensor) raise ValueError / NotImplementedError. Call under no_grad so
    that the local tensor is the DTensor's own storage, not an autograd view of it.
    """
    if not is_dtensor(tensor):
        return tensor, None, None
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    for placement in tensor.placements:
        if type(placement) is not Shard and not isinstance(placement, Replicate):
            if placement.is_partial():
                raise ValueError(
                    f"nspl_filler: cannot fill a DTensor with placement {placement}: its local "
                    "tensors are summands of the values, not the values; redistribute it first"
                )
            raise NotImplementedError(
                f"nspl_filler: DTensor placement {placement} is not supported (its local "
                "shard is not one block of the global tensor); use Shard or Replicate"
            )
    local = tensor.to_local()
    shape, start = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
    if not start:  # this rank is not in the mesh and holds nothing
        return local, None, None
    if tuple(shape) != tuple(local.shape):
        raise RuntimeError(
            f"nspl_filler: the local tensor of shape {tuple(local.shape)} is not the shard "
            f"{tuple(shape)} that the placements {tensor.placements} give for {tuple(tensor.shape)}"
        )
    return local, list(tensor.shape), list(start)
