"""fill_many_: NSPL for a list of tensors in one call of the bulk op nspl_many_ per device
(on the CPU one C++ loop, on CUDA a few multi-tensor launches instead of one per tensor)."""
from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ._extension import _C, ops
from .init import VarianceNorm, _check_tensor, _mode_name, _real
from .options import LawOptions, Unpack, resolve, takes
from .sharded import any_dtensor, is_dtensor, local_shard
from .stream import GeneratorLike, Streams, check_names, check_stream, tensor_facts, with_streams

GainLike = Union[None, float, Sequence[float]]


def _gains(gain: GainLike, nonlinearity: str, param: Optional[float], count: int) -> list[float]:
    """One gain per tensor: `gain` itself, each entry of a sequence, or calculate_gain."""
    if gain is None:
        return [float(torch.nn.init.calculate_gain(nonlinearity, param))] * count
    if isinstance(gain, numbers.Real) and not isinstance(gain, bool):
        return [float(gain)] * count
    if isinstance(gain, (str, bytes)) or not isinstance(gain, Sequence):
        raise TypeError(f"nspl_filler: gain must be a real number or a sequence of them, got {type(gain).__name__}")
    if len(gain) != count:
        raise ValueError(f"nspl_filler: gain has {len(gain)} entries for {count} tensors")
    return [_real(f"gain[{k}]", g) for k, g in enumerate(gain)]


def _inference(tensors: Sequence[Tensor]) -> list[int]:
    """The indices of the inference tensors among `tensors` (those _check_writable asks about)."""
    facts = tensor_facts(tensors)
    return facts[1] if facts is not None else [k for k, t in enumerate(tensors) if t.is_inference()]


def _check_writable(tensor: Tensor) -> None:
    """torch's rule for in-place writes to inference tensors, as the ops apply it; called for
    every tensor of a bulk fill before its first write."""
    if tensor.is_inference():
        _C.check_inplace_allowed(tensor)


class _Labels:
    """The names of a bulk call's tensors for its error messages, formatted only when one is:
    "parameter 'name'" from `names` (a model's), else "tensors[k]"."""

    __slots__ = ("names",)

    def __init__(self, names: Optional[Sequence[str]]) -> None:
        self.names = names

    def __getitem__(self, k: int) -> str:
        return f"tensors[{k}]" if self.names is None else f"parameter {self.names[k]!r}"


class _OpCall:
    """One op call of a bulk fill. ``check()`` makes every check the call would make, writing
    nothing; ``run()`` makes the call. A fill of several calls checks them all before it runs
    the first (_run_all), so an error in any leaves every tensor unwritten (docs/spec.md §5)."""

    __slots__ = ("check", "run")

    def __init__(self, check: Callable[[], None], run: Callable[[], None]) -> None:
        self.check, self.run = check, run


def _run_all(calls: Sequence[_OpCall]) -> None:
    """Runs the calls; when there are several, checks them all first. One call needs no
    pre-check: the op checks everything it is given before it writes, and when it refuses,
    its check is made again to name the tensor at fault."""
    if len(calls) > 1:
        for call in calls:
            call.check()
    elif len(calls) == 1:
        try:
            calls[0].run()
        except (TypeError, ValueError, RuntimeError):
            calls[0].check()  # raises the same error with the tensor's name, if the checks refuse
            raise
        return
    for call in calls:
        call.run()


def _named(error: Exception, where: str) -> Exception:
    """`error` again, with the place it concerns appended."""
    return type(error)(f"{error} ({where})")


def _nspl_many_calls(tensors: Sequence[Tensor], mode: str, alpha: float, ratio: float, gains: Sequence[float],
                     streams: Streams, labels: Optional[Sequence[str]] = None, plain: bool = False
                     ) -> list[_OpCall]:
    """The calls of the bulk op for `tensors`: tensor k with gains[k] on its stream in
    `streams`, DTensors through their local shards, one call per device. `labels` name the
    tensors in error messages; `plain`: the caller knows that none is a DTensor."""
    # Without DTensors every tensor is its own target (a model of 10^5 small tensors need not
    # ask each whether it is one).
    sharded = not plain and any_dtensor(tensors)
    shards = [local_shard(t) for t in tensors] if sharded else None
    targets = [target for target, _, _ in shards] if sharded else list(tensors)
    by_device: dict[torch.device, list[int]] = {}
    facts = tensor_facts(targets)
    if targets and (facts[2] if facts is not None else len({t.device for t in targets}) == 1):
        by_device[targets[0].device] = list(range(len(targets)))
    else:
        for k, target in enumerate(targets):
            by_device.setdefault(target.device, []).append(k)
    if len(by_device) > 1 and streams.generator is not None:
        raise ValueError(
            f"nspl_filler: a torch.Generator serves one device; the tensors are on {sorted(map(str, by_device))}"
        )
    placed = sharded and any(shape is not None for _, shape, _ in shards)
    labels = _Labels(None) if labels is None else labels

    def shard(k: int) -> tuple[Tensor, Optional[list[int]], Optional[list[int]]]:
        return shards[k] if sharded else (targets[k], None, None)

    def call(device: torch.device, indices: list[int]) -> _OpCall:
        whole = len(indices) == len(targets)  # then indices are 0, 1, ... (one device)
        group = targets if whole else [targets[k] for k in indices]
        group_gains = list(gains) if whole else [gains[k] for k in indices]
        group_streams = streams.part(indices)
        keys, group_offsets, generator = group_streams.op_keys(), group_streams.offsets, group_streams.generator
        shapes = starts = None
        if placed:
            shapes, starts = [], []
            for k in indices:
                target, shape, start = shard(k)
                shapes += list(target.shape) if shape is None else shape
                starts += [0] * target.dim() if start is None else start

        def check() -> None:
            for j in _inference(group):
                try:
                    _check_writable(group[j])
                except RuntimeError as error:
                    raise _named(error, labels[indices[j]]) from None
            try:
                _C.check_nspl_many(group, mode, alpha, ratio, group_gains, False, group_offsets,
                                   generator is not None, shapes, starts, True, keys)
            except (TypeError, ValueError) as error:
                # Name the tensor at fault where one is; else (tensors that share memory) the group.
                for j, k in enumerate(indices):
                    target, shape, start = shard(k)
                    try:
                        _C.check_nspl(target, mode, alpha, ratio, group_gains[j], None, None,
                                      None if keys is None else keys[j], group_offsets[j], generator is not None,
                                      shape, start)
                    except (TypeError, ValueError) as culprit:
                        raise _named(culprit, labels[k]) from None
                shown = ", ".join(labels[k] for k in indices[:4]) + (", ..." if len(indices) > 4 else "")
                raise _named(error, f"in the bulk fill of {shown} on {device}") from None

        def run() -> None:
            ops.nspl_many_(group, mode, alpha, ratio, group_gains, None, group_offsets, generator, shapes, starts,
                           keys)

        return _OpCall(check, run)

    return [call(device, indices) for device, indices in by_device.items()]


@takes(LawOptions)
def fill_many_(
    tensors: Sequence[Tensor],
    mode: Union[str, VarianceNorm] = "fan_in",
    *,
    gain: GainLike = None,
    seed: Optional[int] = None,
    generator: GeneratorLike = None,
    names: Optional[Sequence[str]] = None,
    **law: Unpack[LawOptions],
) -> list[Tensor]:
    """Fill every tensor of `tensors` in place with the Normalized Symmetric Power Law, each
    with its own fans and gain; return them as a list.

    Tensor k gets exactly what fill_(tensor_k, mode, alpha=alpha, ratio=ratio, gain=gain_k)
    gives it: Var[w] = gain_k² / n_k, with n_k = fan_in, fan_out or (fan_in + fan_out) / 2 of
    tensor k's shape (the global shape of a DTensor). `gain` is one number for all, a sequence
    with one per tensor, or None for torch.nn.init.calculate_gain(nonlinearity, param).

    Randomness: with ``seed=s`` or ``generator=nspl_filler.Generator`` the values equal those of
    filling the tensors one by one, in order, from one nspl_filler.Generator (``seed=s`` acts as
    a fresh ``Generator(s)``): tensor k uses blocks start + sum_{j<k} blocks_j onwards, where
    blocks_j = ceil(numel_j / 4) (float64: ceil(numel_j / 2)), and a Generator ends
    sum_k blocks_k further on. With a torch.Generator or none, each device's tensors take one
    stream position from that generator (or the device's default one) per call: on the CPU one
    key, so a single tensor gets what fill_ gives it. DTensors fill their local shards with the
    values of their slices of the global tensors; with a torch generator their key is agreed
    across their mesh (a collective, see fill_). ``seed=s, names=[...]``: tensor k fills from
    block 0 of key key_for(s, names[k]) (docs/spec.md §4b), as fill_(tensor_k, seed=s, name=names[k])
    does, whatever the other tensors; the names are canonicalised (see canonical_name) and
    must be distinct.

    The work is one bulk op call per device: on the CPU one C++ loop that spreads small tensors
    across threads, on CUDA one launch per dtype for many tensors at a time.

    Errors, raised before any tensor is written (tensors on several devices included): what
    fill_ raises for any tensor, ValueError if two tensors may share memory (they are written
    concurrently), TypeError if `tensors` is itself a Tensor or holds anything that is not a
    strided tensor; with `names`: TypeError if they are not an iterable of str, ValueError for
    a count other than one per tensor, an empty name, two equal canonical names, or a
    missing seed= (or a generator= in its place).
    """
    if isinstance(tensors, Tensor):
        raise TypeError(
            "nspl_filler: tensors must be a sequence of tensors, got a Tensor (iterating it would fill "
            "its slices with the fans of a slice); pass [tensor], or use fill_"
        )
    options = resolve("fill_many_", law, LawOptions)
    tensors = list(tensors)
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"nspl_filler: tensors[{k}] must be a torch.Tensor, got {type(t).__name__}")
    overridable = [t for t in tensors if not is_dtensor(t)]
    if torch.overrides.has_torch_function(overridable):
        return torch.overrides.handle_torch_function(
            fill_many_, overridable, tensors, mode, gain=gain, seed=seed, generator=generator, names=names, **options,
        )
    for k, t in enumerate(tensors):
        _check_tensor(t, f"tensors[{k}]")
    check_stream(seed, generator, None if names is None else "names")
    if names is not None:
        names = check_names(names, len(tensors))
    mode_name = _mode_name(mode)
    alpha, ratio = _real("alpha", options["alpha"]), _real("ratio", options["ratio"])
    gains = _gains(gain, options["nonlinearity"], options["param"], len(tensors))
    if not tensors:
        return tensors
    with torch.no_grad():
        with_streams(
            tensors, lambda streams: _run_all(_nspl_many_calls(tensors, mode_name, alpha, ratio, gains, streams)),
            seed=seed, generator=generator, names=names,
        )
    return tensors


__all__ = ["fill_many_"]
