"""The initialisers: fill_ (NSPL, alias nspl_), symmetric_power_law_ and trunc_normal_, in the manner of
torch.nn.init. Thin wrappers over torch.ops.nspl_filler; fans, scale and argument checks
live in the compiled core, so Python, C++ and every device agree on them."""
from __future__ import annotations

import numbers
from typing import Optional, Union

import torch
from torch import Tensor

from ._extension import _C, ops
from .generator import as_signed64
from .options import DEFAULTS, LawOptions, Unpack, VarianceNorm, resolve, takes
from .sharded import is_dtensor, local_shard
from .stream import GeneratorLike, Streams, check_name, explicit_key, with_streams

#: Default power-law exponent and truncation ratio (see docs/fitting.md), the core's.
DEFAULT_ALPHA: float = DEFAULTS["alpha"]
DEFAULT_RATIO: float = DEFAULTS["ratio"]


# Every name mode takes, lower case, to the norm's own name: the core's table.
_MODE_ALIASES: dict = _C.MODE_ALIASES


def _mode_name(mode: Union[str, VarianceNorm]) -> str:
    if isinstance(mode, VarianceNorm):
        return mode.value
    if not isinstance(mode, str):
        raise TypeError(f"nspl_filler: mode must be a str or VarianceNorm, got {type(mode).__name__} {mode!r}")
    # The table answers the common case; the core answers (or raises) for anything else.
    return _MODE_ALIASES.get(mode.lower()) or _C.canonical_mode(mode)


def _real(name: str, value: object) -> float:
    if type(value) is float:  # the common case, without the slower check of numbers.Real below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"nspl_filler: {name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except OverflowError:
        # An int beyond the float range is a real number, out of every argument's domain.
        digits = str(value)
        raise ValueError(
            f"nspl_filler: {name} must be finite, got an integer of {len(digits.lstrip('-'))} digits "
            f"({digits[:12]}...), beyond the float range"
        ) from None


def _optional_real(name: str, value: object) -> Optional[float]:
    return None if value is None else _real(name, value)


def _check_tensor(tensor: object, name: str = "tensor") -> Tensor:
    # Sparse, quantized and nested tensors have no kernel under their dispatch keys, so
    # they are turned away here, with the TypeError the compiled checks would give.
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nspl_filler: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested:
        kind = "quantized" if tensor.is_quantized else "nested" if tensor.is_nested else str(tensor.layout)
        raise TypeError(
            f"nspl_filler: tensor must have a strided layout (not sparse, quantized or nested), got {kind}"
        )
    return tensor


# The types whose fills may skip torch.ops' Python layer (see _direct).
_PLAIN_TENSOR_TYPES = (Tensor, torch.nn.Parameter)

# calculate_gain's results by (nonlinearity, param): the common call repeats one pair.
_GAINS: dict = {}


def _gain_of(nonlinearity: str, param: Optional[float]) -> float:
    # Keyed by the argument's type too: True == 1 and hash alike, but calculate_gain refuses
    # True and takes 1, and the cache must not tell them apart differently.
    key = (nonlinearity, type(param), param)
    try:
        return _GAINS[key]
    except (KeyError, TypeError):  # TypeError: an unhashable param, which calculate_gain refuses
        gain = float(torch.nn.init.calculate_gain(nonlinearity, param))
        _GAINS[key] = gain
        return gain


def _law(options: LawOptions, gain: object) -> tuple[float, float, float]:
    """(alpha, ratio, gain) of a call's law options, checked; the gain from the
    nonlinearity where `gain` is None."""
    return (_real("alpha", options["alpha"]), _real("ratio", options["ratio"]),
            _gain_of(options["nonlinearity"], options["param"]) if gain is None else _real("gain", gain))


def _direct(tensor: object, generator: GeneratorLike) -> bool:
    """Whether a fill may call the compiled op in one C++ call: a plain tensor or Parameter
    (no __torch_function__ of its own, no DTensor), no torch function mode, a seed or
    torch's default generator, and no tracing by torch.compile (which must see the op)."""
    return (type(tensor) in _PLAIN_TENSOR_TYPES and generator is None
            and not torch._C._is_torch_function_mode_enabled() and not torch.compiler.is_compiling())


def _run(tensor: Tensor, seed: Optional[int], generator: GeneratorLike, name: Optional[str], op, *args) -> Tensor:
    """Calls `op(target, *args, seed, offset, torch_generator, global_shape, global_start)` with
    the stream that seed / generator / name select (stream.with_streams), under no_grad, and
    returns the tensor. A DTensor is filled through its local shard, placed in the global
    tensor (see sharded.py)."""
    names = None if name is None else [check_name(name)]
    with torch.no_grad():
        target, global_shape, global_start = local_shard(tensor)

        def fill(streams: Streams) -> None:
            keys = streams.op_keys()
            op(target, *args, seed=None if keys is None else keys[0], offset=streams.offsets[0],
               generator=streams.generator, global_shape=global_shape, global_start=global_start)

        with_streams([tensor], fill, seed=seed, generator=generator, names=names, argument="name")
    return tensor


def compute_fans(
    tensor_or_shape: Union[Tensor, torch.Size, tuple, list],
    fan_in: Optional[float] = None,
    fan_out: Optional[float] = None,
    mode: Union[str, VarianceNorm] = "fan_in",
) -> tuple[float, float]:
    """(fan_in, fan_out) of a weight of shape (d0, d1, *rest).

    receptive = prod(rest), fan_in = d1 · receptive, fan_out = d0 · receptive: Caffe's
    count / num and count / channels, and torch.nn.init's fans. A shape with fewer than two
    dims raises ValueError unless the fan(s) that `mode` needs are passed explicitly;
    explicit fans always win.
    """
    shape = tensor_or_shape.shape if isinstance(tensor_or_shape, Tensor) else tensor_or_shape
    fans = _C.compute_fans(
        [int(s) for s in shape], _optional_real("fan_in", fan_in), _optional_real("fan_out", fan_out),
        _mode_name(mode), False,
    )
    return tuple(int(f) if float(f).is_integer() else f for f in fans)


def second_moment(alpha: float = DEFAULT_ALPHA, ratio: float = DEFAULT_RATIO, *, log: bool = False) -> float:
    """E[y²] of the magnitude y on [1, r] with density ∝ y^-alpha (b = 1 - alpha):
    b(r^(b+2) - 1) / ((b+2)(r^b - 1)); (r² - 1) / (2 ln r) at b = 0, 2 ln r / (1 - r^-2) at b = -2.

    Evaluated in log space, accurate to about 1e-15 relative for every finite alpha and
    ratio. ``log=True`` returns ln E[y²], which stays finite where E[y²] overflows a float64
    (ratios above about 1.3e154: ValueError without ``log``)."""
    alpha, ratio = _real("alpha", alpha), _real("ratio", ratio)
    return (_C.power_law_log_second_moment if log else _C.power_law_second_moment)(alpha, ratio)


@takes(LawOptions)
def fill_(
    tensor: Tensor,
    mode: Union[str, VarianceNorm] = "fan_in",
    *,
    gain: Optional[float] = None,
    fan_in: Optional[float] = None,
    fan_out: Optional[float] = None,
    seed: Optional[int] = None,
    generator: GeneratorLike = None,
    name: Optional[str] = None,
    **law: Unpack[LawOptions],
) -> Tensor:
    """Fill `tensor` in place with the Normalized Symmetric Power Law and return it.

    w = s · c · y with s a fair sign, y on [1, r] with density ∝ y^-alpha, and
    c = sigma / sqrt(E[y²]) so that Var[w] = sigma² = gain² / n exactly, where n is
    fan_in, fan_out or (fan_in + fan_out) / 2 for mode 'fan_in', 'fan_out', 'average'.
    |w| therefore lies in [c, c·r]. gain defaults to torch.nn.init.calculate_gain(
    nonlinearity, param), sqrt(2) for the default 'relu' (He et al.).

    Randomness: ``seed=int`` (key = seed, offset 0) or ``generator=nspl_filler.Generator``
    give the same values on every device, thread count, layout and sharding; a
    ``torch.Generator`` or nothing draws the stream from torch's (default) generator, so
    ``torch.manual_seed`` governs it as with torch.nn.init. ``seed=s, name=n`` fills from
    block 0 of key key_for(s, n) (docs/spec.md §4b): the values init_module_(model, seed=s,
    stream="name") gives the parameter named n, whatever else the model holds.

    A DTensor (FSDP2, tensor parallel) fills its local shard with exactly the values of its
    slice of the unsharded tensor, fans from the global shape. With a torch generator the key
    is drawn on the mesh's first rank and broadcast, a collective that every rank must join.

    Errors (before anything is written): TypeError for a non-float dtype or a non-strided
    layout; ValueError for non-finite or out-of-domain arguments, unknown mode or
    nonlinearity, fans <= 0, overlapping memory, or a range c·r that overflows the dtype.
    """
    options = resolve("fill_", law, LawOptions)
    if _direct(tensor, generator):
        _check_tensor(tensor)
        key = explicit_key(seed, generator, name)
        key = None if key is None else as_signed64(key)
        _C.nspl_fill_(
            tensor, _mode_name(mode), *_law(options, gain),
            _optional_real("fan_in", fan_in), _optional_real("fan_out", fan_out), key,
        )
        return tensor
    # A DTensor is handled here, through its local shard, not by an override.
    if not is_dtensor(tensor) and torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            fill_, (tensor,), tensor, mode, gain=gain, fan_in=fan_in, fan_out=fan_out,
            seed=seed, generator=generator, name=name, **options,
        )
    _check_tensor(tensor)
    mode_name = _mode_name(mode)
    return _run(
        tensor, seed, generator, name, ops.nspl_, mode_name, *_law(options, gain),
        _optional_real("fan_in", fan_in), _optional_real("fan_out", fan_out),
    )


nspl_ = fill_


def symmetric_power_law_(
    tensor: Tensor,
    alpha: float = DEFAULT_ALPHA,
    low: float = 0.01,
    high: float = 1.0,
    *,
    seed: Optional[int] = None,
    generator: GeneratorLike = None,
    name: Optional[str] = None,
) -> Tensor:
    """Fill `tensor` in place with s · |w|, |w| on [low, high] with density ∝ |w|^-alpha
    (the raw, unnormalised law: c = low, r = high / low) and a fair sign s; return it.

    Inverse CDF of y = |w| / low with L = ln r, b = 1 - alpha, u in (0, 1):
    y = exp(u·L) at b = 0, else y = (1 + u·(r^b - 1))^(1/b), evaluated without overflow
    or cancellation for every finite alpha. Every |value| lies in [low, high].
    Seeding (name= included) and errors as for fill_.
    """
    if not is_dtensor(tensor) and torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            symmetric_power_law_, (tensor,), tensor, alpha, low, high, seed=seed, generator=generator, name=name
        )
    _check_tensor(tensor)
    return _run(
        tensor, seed, generator, name, ops.symmetric_power_law_,
        _real("alpha", alpha), _real("low", low), _real("high", high),
    )


# trunc_normal_'s defaults, torch.nn.init.trunc_normal_'s, as the op's schema states them (from
# TruncNormalOptions in the core).
_TRUNC_NORMAL_DEFAULTS = {
    argument.name: argument.default_value
    for argument in ops.trunc_normal_.default._schema.arguments if argument.name in ("mean", "std", "a", "b")
}


def trunc_normal_(
    tensor: Tensor,
    mean: float = _TRUNC_NORMAL_DEFAULTS["mean"],
    std: float = _TRUNC_NORMAL_DEFAULTS["std"],
    a: float = _TRUNC_NORMAL_DEFAULTS["a"],
    b: float = _TRUNC_NORMAL_DEFAULTS["b"],
    *,
    seed: Optional[int] = None,
    generator: GeneratorLike = None,
    name: Optional[str] = None,
) -> Tensor:
    """Fill `tensor` in place with N(mean, std²) truncated to [a, b] and return it:
    torch.nn.init.trunc_normal_'s law and arguments (a and b are absolute bounds, not in
    units of std; either may be infinite).

    Exact inverse CDF, no rejection: with α = (a - mean) / std, β = (b - mean) / std and the
    element's uniform u (docs/spec.md §4), x = mean + std·Φ⁻¹(Φ(α) + u·(Φ(β) - Φ(α))),
    evaluated from whichever tail mass is smaller so that far-tail intervals (a = 3σ,
    b = 8σ) keep their precision. Each value is a function of its element's place in the
    stream, so it is the same on every device, layout, thread count and shard, and every
    value lies in [a, b] after rounding to the dtype. Domain (docs/spec.md §2b): the
    interval's mass at least 2^-70 for 16/32-bit dtypes (2^-905 for float64), std and a
    nonzero mean between 2^-60 (float64: 2^-900) and the arithmetic's largest value.
    Seeding (name= included) and errors as for fill_.
    """
    if not is_dtensor(tensor) and torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            trunc_normal_, (tensor,), tensor, mean, std, a, b, seed=seed, generator=generator, name=name
        )
    _check_tensor(tensor)
    return _run(
        tensor, seed, generator, name, ops.trunc_normal_,
        _real("mean", mean), _real("std", std), _real("a", a), _real("b", b),
    )


__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_RATIO", "VarianceNorm", "compute_fans", "second_moment",
    "fill_", "nspl_", "symmetric_power_law_", "trunc_normal_",
]
