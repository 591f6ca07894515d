"""Where each tensor of a fill reads the Philox stream (docs/spec.md §4, §4b): the one module that turns
an entry point's seed, generator and names into a key and a first block per tensor.

Every entry point (fill_, symmetric_power_law_, fill_many_, init_module_) asks with_streams for
the Streams of its tensors and hands them to the ops as they are:

- sequential (the default): one key, and each tensor's blocks follow the previous tensor's, as
  filling them one by one from one nspl_filler.Generator does. ``seed=s``: key s from block 0;
  ``generator=nspl_filler.Generator``: its key and offset, which then advances past them all;
  a torch.Generator or none: the op draws the position from that generator, or, when DTensors
  are among the tensors, a key agreed by every rank of their mesh, from block 0.
- by name: tensor k takes key key_for(seed, names[k]) from block 0, so its values depend on
  (seed, name, shape, parameters) alone: not on which other tensors exist, their order, or
  which process fills it.
"""
from __future__ import annotations

import itertools
import operator
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._extension import _C
from .generator import Generator, _check_seed, as_signed64
from .sharded import PLAIN_TYPES, comm_device, is_dtensor

GeneratorLike = Union[None, Generator, torch.Generator]

#: The streams init_module_ offers: "sequential" (parameter after parameter from one key) and
#: "name" (one key per parameter, from its canonical name).
STREAMS = ("sequential", "name")

#: Path segments that torch's wrappers insert between a model and its parameters:
#: torch.compile's OptimizedModule, FSDP1, activation checkpointing's CheckpointWrapper.
WRAPPER_SEGMENTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})


def check_stream(seed: object, generator: object, by_name: Optional[str] = None) -> Optional[int]:
    """The key of `seed` (None without one), after the checks every entry point makes of its
    seed and generator arguments before it looks at anything else: one seed rule
    (generator._check_seed), a generator of a known kind, not both. `by_name` names the
    argument that asks for streams by name (``"name"``, ``"names"``, ``"stream='name'"``):
    their keys come from the seed, so it needs seed= and no generator."""
    if seed is not None and generator is not None:
        raise ValueError("nspl_filler: pass seed or generator, not both")
    if generator is not None and not isinstance(generator, (Generator, torch.Generator)):
        raise TypeError(
            "nspl_filler: generator must be an nspl_filler.Generator or a torch.Generator, "
            f"got {type(generator).__name__}"
        )
    if by_name is not None and seed is None:
        instead = "" if generator is None else ", not generator="
        raise ValueError(
            f"nspl_filler: with {by_name} each key is derived from seed= and a name (docs/spec.md §4b); pass seed={instead}"
        )
    return None if seed is None else _check_seed(seed)


def check_stream_options(options: Mapping[str, object]) -> bool:
    """Whether the options of init_module_ or materialize_ ask for streams by name: True for
    stream="name", False for "sequential", TypeError / ValueError otherwise, after the checks
    check_stream makes of their seed and generator for that kind of stream."""
    stream = options["stream"]
    if not isinstance(stream, str):
        raise TypeError(f"nspl_filler: stream must be 'sequential' or 'name', got {type(stream).__name__} {stream!r}")
    if stream not in STREAMS:
        raise ValueError(f"nspl_filler: stream must be 'sequential' or 'name', got {stream!r}")
    by_name = stream == "name"
    check_stream(options["seed"], options["generator"], "stream='name'" if by_name else None)
    return by_name


def _under_ddp(model: nn.Module) -> bool:
    """Whether a DistributedDataParallel or an nn.DataParallel (both hold the model as
    ``module``) is the outermost module of `model` once the wrappers of WRAPPER_SEGMENTS
    (torch.compile's, say) are looked through."""
    from torch.nn.parallel import DistributedDataParallel

    module: Optional[nn.Module] = model
    while module is not None and not isinstance(module, (DistributedDataParallel, nn.DataParallel)):
        module = next((module._modules[s] for s in WRAPPER_SEGMENTS if module._modules.get(s) is not None), None)
    return module is not None


def _canonical(name: object, argument: str, under_ddp: bool = False) -> str:
    """canonical_name of `name`, with errors that name `argument`."""
    if not isinstance(name, str):
        raise TypeError(f"nspl_filler: {argument} must be a str, got {type(name).__name__} {name!r}")
    # Every wrapper segment contains "_mod", so most names need no split (a model has
    # hundreds, and stream="name" is to cost no more than the sequential stream).
    canonical = ".".join(s for s in name.split(".") if s not in WRAPPER_SEGMENTS) if "_mod" in name else name
    if under_ddp:
        if not canonical.startswith("module."):
            raise ValueError(
                f"nspl_filler: {argument} {name!r} is not the name of a tensor under DistributedDataParallel's or DataParallel's 'module'"
            )
        canonical = canonical[len("module."):]
    if not canonical:
        raise ValueError(
            f"nspl_filler: {argument} must name a tensor: a non-empty str, more than torch's wrapper segments "
            f"{sorted(WRAPPER_SEGMENTS)}; got {name!r}"
        )
    if not canonical.isascii():
        try:
            canonical.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"nspl_filler: {argument} must be encodable as UTF-8, got {name!r} ({error.reason})"
            ) from None
    return canonical


def check_name(name: object, argument: str = "name") -> str:
    """canonical_name(name), with errors that name `argument`."""
    return _canonical(name, argument)


def canonical_name(name: str, model: Optional[nn.Module] = None) -> str:
    """The canonical name of a parameter or buffer (docs/spec.md §4b): its qualified name with the
    segments that torch's wrappers insert removed (``_orig_mod`` of torch.compile,
    ``_fsdp_wrapped_module`` of FSDP1, ``_checkpoint_wrapped_module`` of activation
    checkpointing, wherever they occur), and, when `model` (the module whose
    named_parameters() gave `name`) is a DistributedDataParallel or an nn.DataParallel,
    possibly under such wrappers, their leading ``module``. So ``"_orig_mod.module.encoder.0.weight"`` of
    ``torch.compile(DistributedDataParallel(net))`` is ``"encoder.0.weight"``, its name in
    ``net``.

    TypeError for a name that is not a str; ValueError for one that is empty, nothing but
    wrapper segments, not UTF-8 encodable (a lone surrogate), or, under DDP, not under
    ``module``."""
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"nspl_filler: model must be a torch.nn.Module or None, got {type(model).__name__}")
    return _canonical(name, "name", model is not None and _under_ddp(model))


# torch.compile cannot trace the C++ hash; the keys are a function of constants (the seed and the
# names), so the tracer may call it and keep its result.
@torch.compiler.assume_constant_result
def _keys(seed: int, names: Sequence[str]) -> list[int]:
    """docs/spec.md §4b for each name: BLAKE2b, 8-byte digest, keyed by the seed's 8 little-endian
    bytes, over the UTF-8 name; the digest read little-endian. Hashed in C++ (csrc/name_keys.h):
    a model of 10^5 parameters has 10^5 names."""
    return _C.name_keys(seed, names)


def key_for(seed: int, name: str) -> int:
    """The Philox key, in [0, 2**64), of the tensor named `name` under streams by name (docs/spec.md §4b):

        key = BLAKE2b with an 8-byte digest, keyed by (seed mod 2**64) as 8 little-endian
              bytes, over the UTF-8 bytes of canonical_name(name); the digest little-endian

    Filling from block 0 of it, ``fill_(t, seed=key_for(s, n))`` gives what
    ``fill_(t, seed=s, name=n)`` and ``init_module_(model, seed=s, stream="name")`` give the
    tensor named n. `seed` follows the seed rule of fill_ (an int in [-2**63, 2**64), kept
    modulo 2**64); `name` is canonicalised by canonical_name without a model (a DDP's leading
    ``module`` stays). TypeError for a non-int seed or a non-str name, ValueError for a seed
    out of range or a name canonical_name refuses."""
    return _keys(_check_seed(seed), [_canonical(name, "name")])[0]


def check_names(names: object, count: int, argument: str = "names", model: Optional[nn.Module] = None) -> list[str]:
    """The canonical names of `names`, one per tensor of a fill of `count` tensors (of `model`
    when they come from its named_parameters()), after every check: an iterable (not a str)
    of `count` str that canonical_name takes, distinct once canonical (two tensors of one
    name would get the same values)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"nspl_filler: {argument} must be a sequence of str, got {type(names).__name__} {names!r}")
    names = list(names)
    if len(names) != count:
        raise ValueError(f"nspl_filler: {argument} has {len(names)} entries for {count} tensors")
    under_ddp = model is not None and _under_ddp(model)
    if not under_ddp and _plain_names(names):
        return names
    canonical: list[str] = []
    first_of: dict[str, int] = {}
    for k, name in enumerate(names):
        name = _canonical(name, f"{argument}[{k}]", under_ddp)
        if name in first_of:
            j = first_of[name]
            raise ValueError(
                f"nspl_filler: {argument}[{j}] ({names[j]!r}) and {argument}[{k}] ({names[k]!r}) are both "
                f"{name!r} once canonical, so both tensors would get the same values; give each its own name"
            )
        first_of[name] = k
        canonical.append(name)
    return canonical


def _plain_names(names: list) -> bool:
    """Whether `names` are their own canonical names and distinct, found by a few passes in C
    over them all (a model has up to 10^5): every one a non-empty str, ASCII (so UTF-8
    encodable), with no "_mod" (the mark of every wrapper segment), none twice. Where this does
    not hold, check_names looks at each name, for its canonical form or the error that names it."""
    try:
        joined = "\0".join(names)
    except TypeError:
        return False
    return (joined.isascii() and "_mod" not in joined and "" not in names
            and len(set(names)) == len(names))


def explicit_key(seed: object, generator: object, name: object = None) -> Optional[int]:
    """The key of a one-tensor fill from block 0: key_for(seed, name) with a name, the seed's
    key without one, None when the fill takes its stream from a generator; with check_stream's
    checks."""
    key = check_stream(seed, generator, None if name is None else "name")
    return key if name is None else _keys(key, [_canonical(name, "name")])[0]


# Elements per Philox block of every dtype torch has, by the core's rule (docs/spec.md §4).
_ELEMENTS_PER_BLOCK = {
    dtype: _C.elements_per_block(dtype) for dtype in vars(torch).values() if isinstance(dtype, torch.dtype)
}


def blocks(tensor: Tensor) -> int:
    """Philox blocks a fill of `tensor` consumes: ceil(numel / 4), float64 ceil(numel / 2), of
    the global tensor for a DTensor."""
    return block_counts((tensor,))[0]


def block_counts(tensors: Sequence[Tensor]) -> list[int]:
    """[blocks(t) for t in tensors]."""
    facts = tensor_facts(tensors)
    if facts is not None:
        return facts[0]
    per_block = _ELEMENTS_PER_BLOCK
    return [-(-t.numel() // per_block[t.dtype]) for t in tensors]


def tensor_facts(tensors: Sequence[Tensor]) -> Optional[tuple[list[int], list[int], bool]]:
    """(block counts, indices of the inference tensors, whether all lie on one device) of
    `tensors` in one pass in C++ (_C.tensor_facts: a model has 10^5 tensors); None where one
    is not a plain Tensor or Parameter, or while torch.compile traces: then the caller asks
    each tensor what it needs."""
    if torch.compiler.is_compiling():
        return None
    return _C.tensor_facts(tensors if isinstance(tensors, list) else list(tensors), PLAIN_TYPES)


class Streams:
    """The stream of every tensor of one fill: tensor k reads blocks offsets[k], offsets[k] + 1,
    ... of key keys[k]; with keys None each op call draws its position from `generator` (a
    torch.Generator, or None for the tensors' default one) and the offsets count from it.

    A fill may take several op calls (one per device, per bulk group, per rule); part() gives
    the Streams of the tensors of one call."""

    __slots__ = ("keys", "offsets", "generator", "_blocks")

    def __init__(self, keys: Optional[list[int]], offsets: list[int], generator: Optional[torch.Generator] = None,
                 block_counts: Optional[list[int]] = None) -> None:
        self.keys, self.offsets, self.generator, self._blocks = keys, offsets, generator, block_counts

    @classmethod
    def sequential(cls, key: int, start: int, tensors: Sequence[Tensor]) -> "Streams":
        """Key `key` for all; tensor k from block start + sum_{j<k} blocks_j."""
        offsets = _running_sums(block_counts(tensors), start)
        return cls([key] * len(offsets), offsets)

    @classmethod
    def drawn(cls, generator: Optional[torch.Generator], tensors: Sequence[Tensor]) -> "Streams":
        """Positions the ops draw from `generator`, one per op call."""
        counts = block_counts(tensors)
        return cls(None, _running_sums(counts), generator, counts)

    @classmethod
    def placed(cls, keys: Sequence[Optional[int]], offsets: Sequence[int], generator: Optional[torch.Generator],
               tensors: Sequence[Tensor]) -> "Streams":
        """The Streams of `tensors` from the keys and offsets that an earlier Streams gave
        them (keys None where the ops draw the position, from `generator`)."""
        if keys and keys[0] is None:
            return cls.drawn(generator, tensors)
        return cls(list(keys), list(offsets))

    def part(self, indices: Sequence[int]) -> "Streams":
        """The Streams of tensors `indices` filled by one op call. Drawn positions are per
        call, so the call's tensors follow one another from its own drawn block 0."""
        if len(indices) == len(self.offsets) and all(map(operator.eq, indices, range(len(indices)))):
            return self  # all of them, in order
        if self.keys is None:
            counts = [self._blocks[k] for k in indices]
            return Streams(None, _running_sums(counts), self.generator, counts)
        return Streams([self.keys[k] for k in indices], [self.offsets[k] for k in indices])

    def op_keys(self) -> Optional[list[int]]:
        """The keys as the ops take them (int64), or None where the op draws them."""
        if self.keys is None:
            return None
        signed = {key: as_signed64(key) for key in set(self.keys)}  # few distinct keys (one, sequentially)
        return list(map(signed.__getitem__, self.keys))


def _running_sums(counts: Sequence[int], start: int = 0) -> list[int]:
    """[start, start + counts[0], start + counts[0] + counts[1], ...] (as many as counts)."""
    sums = list(itertools.accumulate(counts, initial=start))
    sums.pop()
    return sums


def with_streams(tensors: Sequence[Tensor], fill: Callable[[Streams], None], *, seed: Optional[int],
                 generator: GeneratorLike, names: Optional[Sequence[str]] = None, argument: str = "names") -> None:
    """Calls fill(streams) once with the Streams of `tensors` (see the module's docstring):
    by name when `names` (canonical, checked by check_names) are given, else sequential.
    `argument`: the caller's argument that gave the names, for errors.
    An nspl_filler.Generator advances past the tensors only if fill returns; with a torch
    generator and DTensors among the tensors, agreeing on the key is a collective that every
    rank of their mesh must join."""
    key = check_stream(seed, generator, None if names is None else argument)
    if names is not None:
        fill(Streams(_keys(key, names), [0] * len(names)))
    elif key is not None:
        fill(Streams.sequential(key, 0, tensors))
    elif isinstance(generator, Generator):
        generator._consume(sum(block_counts(tensors)),
                           lambda key, start: fill(Streams.sequential(key, start, tensors)))
    else:
        mesh = common_mesh(tensors)
        if mesh is None:
            fill(Streams.drawn(generator, tensors))
        else:
            fill(Streams.sequential(agreed_key(mesh, generator), 0, tensors))


def preview_streams(tensors: Sequence[Tensor], *, seed: Optional[int], generator: GeneratorLike,
                    names: Optional[Sequence[str]] = None, argument: str = "names") -> Streams:
    """The Streams with_streams would give `tensors`, for a pass that checks and writes
    nothing: no generator is drawn from or advanced. The checks do not depend on the key, so
    where a torch generator would give it, key 0 stands in."""
    key = check_stream(seed, generator, None if names is None else argument)
    if names is not None:
        return Streams(_keys(key, names), [0] * len(names))
    if isinstance(generator, Generator):
        key, start = generator.get_state()
        return Streams.sequential(key, start, tensors)
    return Streams.sequential(0 if key is None else key, 0, tensors)


def common_mesh(tensors) -> Optional[object]:
    """The device mesh of the DTensors among `tensors` (None if there are none); ValueError
    if they lie on different meshes."""
    meshes = {id(t.device_mesh): t.device_mesh for t in tensors if is_dtensor(t)}
    if len(meshes) > 1:
        raise ValueError(
            "nspl_filler: the DTensors lie on different device meshes, so no single key is agreed "
            "by all their ranks; pass seed= or an nspl_filler.Generator"
        )
    return next(iter(meshes.values()), None)


def agreed_key(mesh, generator: Optional[torch.Generator]) -> int:
    """A 64-bit stream key that every rank of `mesh` agrees on.

    The rank at mesh coordinate (0, ..., 0) draws it from `generator` (or torch's default
    generator of the mesh's device type), so ``torch.manual_seed`` governs it as it governs
    torch.nn.init; it then travels along each mesh dimension in turn, from coordinate 0 of
    that dimension, which reaches every rank. Every rank draws too, so the generators of all
    ranks stay in step. This is a collective: every rank of the mesh must call it.
    """
    import torch.distributed as dist

    device = generator.device if generator is not None else torch.device(mesh.device_type)
    words = torch.randint(0, 1 << 32, (2,), dtype=torch.int64, device=device, generator=generator)
    words = words.to(comm_device(mesh))
    for dim in range(mesh.ndim):
        dist.broadcast(words, group=mesh.get_group(dim), group_src=0)
    low, high = (int(w) for w in words.tolist())
    return low | (high << 32)


__all__ = ["STREAMS", "WRAPPER_SEGMENTS", "Streams", "canonical_name", "key_for", "with_streams"]
