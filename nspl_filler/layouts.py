"""Which parameters are layer weights, and how each stores its inputs and outputs.

A layout says, for one module type, which of its parameters are weights and which dims of
such a weight count the layer's inputs and outputs; every other dim is receptive field.
Fans follow docs/spec.md §3 with those dims: ``fan_in = size[in_dim] · receptive``,
``fan_out = size[out_dim] · receptive``. torch's own convention (``torch.nn.init``) is the
layout ``in_dim=1, out_dim=0``; a layer that stores its weight the other way round (a
transposed convolution, transformers' GPT-2 ``Conv1D``) needs its own layout, or its fans
are swapped.

init_module_ gives NSPL by default to the weights that a layout names (role "layer"), and
to embedding tables (role "embedding", a default of their own); every other parameter
keeps its value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Optional, Union

from torch import nn

#: The roles a layout can give: "layer" (a linear map: Linear, convolutions, attention
#: projections, RNN weights) and "embedding" (a lookup table).
ROLES = ("layer", "embedding")


@dataclass(frozen=True)
class Layout:
    """The weights of one module type: `params` (globs on the parameter's own name in the
    module, e.g. ``"weight"`` or ``"weight_*"``), each with its inputs along dim `in_dim`
    and its outputs along dim `out_dim` (negative dims count from the end); `role` is
    "layer" or "embedding". `grouped_in`: the in dim counts the inputs of every group, and
    each output sees only its group's (a transposed convolution of ``groups`` > 1 stores
    ``(in, out / groups, *k)``), so fan_in is divided by the module's ``groups``."""

    in_dim: int = 1
    out_dim: int = 0
    params: tuple[str, ...] = ("weight",)
    role: str = "layer"
    grouped_in: bool = False

    def fans(self, shape: tuple[int, ...], groups: int = 1) -> tuple[int, int]:
        """(fan_in, fan_out) of a weight of `shape`: the sizes of its in and out dims, each
        times the product of the other dims (the receptive field); with `grouped_in`, fan_in
        over `groups`. ValueError if the shape lacks either dim, or both name the same dim."""
        rank = len(shape)
        dims = []
        for name, dim in (("in_dim", self.in_dim), ("out_dim", self.out_dim)):
            if not -rank <= dim < rank:
                raise ValueError(f"the layout's {name}={dim} is not a dim of a weight of shape {tuple(shape)}")
            dims.append(dim % rank)
        if dims[0] == dims[1]:
            raise ValueError(f"the layout's in_dim and out_dim are the same dim of shape {tuple(shape)}")
        receptive = math.prod(size for d, size in enumerate(shape) if d not in dims)
        inputs = shape[dims[0]] // groups if self.grouped_in and groups > 1 else shape[dims[0]]
        return inputs * receptive, shape[dims[1]] * receptive

    def groups_of(self, module: nn.Module) -> int:
        """The groups `fans` divides fan_in by for `module`'s weight (1 unless `grouped_in`)."""
        groups = getattr(module, "groups", 1) if self.grouped_in else 1
        return groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 1

    def names(self, local_name: str) -> bool:
        """Whether the layout covers the module's parameter `local_name`."""
        return any(fnmatchcase(local_name, pattern) for pattern in self.params)


# Module types and class names with their layouts. A class name stands for a type that
# nspl_filler cannot import (transformers' Conv1D): it matches any class of that name.
_LAYOUTS: dict[Union[type, str], Layout] = {}


def register_layout(
    module_type: Union[type, str],
    *,
    in_dim: int = 1,
    out_dim: int = 0,
    params: Union[str, tuple[str, ...], list[str]] = ("weight",),
    role: str = "layer",
    grouped_in: bool = False,
) -> Layout:
    """Declare the weights of `module_type` (a subclass of nn.Module, or a class name, matched
    against the classes of a module's MRO without importing anything; a type registered for a
    class of the MRO wins over a name) and return their layout.

    `params`: globs on the parameter names that are weights (default ``"weight"``);
    `in_dim`, `out_dim`: the dims that count inputs and outputs (default torch's: 1 and 0);
    `role`: "layer" (NSPL from its fans by default) or "embedding" (the embedding default);
    `grouped_in`: fan_in is the in dim's size over the module's ``groups`` attribute (each
    output sees one group's inputs; transposed convolutions).
    A later registration of the same type replaces the earlier one; subclasses inherit a
    layout unless they have their own.
    """
    if isinstance(module_type, str):
        if not module_type:
            raise ValueError("nspl_filler: module_type must be a non-empty class name")
    elif not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(
            f"nspl_filler: module_type must be a subclass of torch.nn.Module or a class name, got {module_type!r}"
        )
    for name, dim in (("in_dim", in_dim), ("out_dim", out_dim)):
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"nspl_filler: {name} must be an int, got {type(dim).__name__} {dim!r}")
    if in_dim == out_dim:
        raise ValueError(f"nspl_filler: in_dim and out_dim must differ, got {in_dim} for both")
    if not isinstance(params, (str, tuple, list)):
        raise TypeError(f"nspl_filler: params must be a name, glob or list of them, got {type(params).__name__} {params!r}")
    patterns = (params,) if isinstance(params, str) else tuple(params)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"nspl_filler: params must be one or more non-empty names or globs, got {params!r}")
    if role not in ROLES:
        raise ValueError(f"nspl_filler: role must be one of {ROLES}, got {role!r}")
    if not isinstance(grouped_in, bool):
        raise TypeError(f"nspl_filler: grouped_in must be a bool, got {type(grouped_in).__name__} {grouped_in!r}")
    layout = Layout(in_dim, out_dim, patterns, role, grouped_in)
    _LAYOUTS[module_type] = layout
    return layout


def layout_of(module: nn.Module) -> Optional[Layout]:
    """The layout of `module`: that of the first class in its MRO registered by type, else
    of the first registered by name; None for a module without weights of its own
    (containers, norms, activations). Types come first so that a subclass of nn.Conv1d that
    happens to be called "Conv1D" keeps the convolution's layout."""
    mro = type(module).__mro__
    for cls in mro:
        if cls in _LAYOUTS:
            return _LAYOUTS[cls]
    for cls in mro:
        if cls.__name__ in _LAYOUTS:
            return _LAYOUTS[cls.__name__]
    return None


def weight_layout(module: nn.Module, local_name: str) -> Optional[Layout]:
    """The layout of the module's parameter `local_name` if it is one of its weights, else None."""
    layout = layout_of(module)
    return layout if layout is not None and layout.names(local_name) else None


_NORM_TYPES = tuple(
    t for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
        nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, getattr(nn, "RMSNorm", None),
    ) if t is not None
)


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's, or any class whose name ends in "Norm" (LlamaRMSNorm,
    timm's LayerNorm2d and the like are recognised without importing them)."""
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith(("Norm", "Norm1d", "Norm2d", "Norm3d"))


for _linear in (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd):
    register_layout(_linear)
# A transposed convolution stores (in_channels, out_channels / groups, *kernel); each output
# sees in_channels / groups of the inputs.
register_layout(nn.modules.conv._ConvTransposeNd, in_dim=0, out_dim=1, grouped_in=True)
# transformers' Conv1D (GPT-2, GPT, ...): a linear layer whose weight is stored (in, out).
register_layout("Conv1D", in_dim=0, out_dim=1)
# The projections a MultiheadAttention owns itself; out_proj is an nn.Linear.
register_layout(nn.MultiheadAttention, params=("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"))
# RNN, LSTM, GRU: weight_ih_l{k}[_reverse], weight_hh_..., weight_hr_... (projections).
register_layout(nn.RNNBase, params=("weight_*",))
register_layout(nn.RNNCellBase, params=("weight_ih", "weight_hh"))
# A table of num_embeddings rows of embedding_dim: shape (num, dim), fans as torch's.
register_layout(nn.Embedding, role="embedding")
register_layout(nn.EmbeddingBag, role="embedding")

__all__ = ["Layout", "ROLES", "is_norm", "layout_of", "register_layout", "weight_layout"]
