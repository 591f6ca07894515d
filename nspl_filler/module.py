"""init_module_: initialise every parameter of a model at once, NSPL for the weights, with
per-name and per-module-type rules, a report of what each parameter got, and bulk filling
(fill_many_'s op) for speed. Works on nested models, meta-built models materialised with
to_empty, and DTensor (FSDP2) parameters."""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._extension import _C, ops
from .bulk import _check_writable, _consecutive_offsets, _named, _nspl_many_calls, _OpCall, _run_all
from .generator import as_signed64
from .init import (
    DEFAULT_ALPHA, DEFAULT_RATIO, GeneratorLike, VarianceNorm, _check_stream, _mode_name, _real, _with_stream,
    compute_fans,
)
from .sharded import local_shard

#: Rules that draw from the random stream, in the order of the parameters.
RANDOM_RULES = ("nspl", "normal", "uniform")
#: Every rule that has a name; "keep" is an alias of "skip".
NAMED_RULES = RANDOM_RULES + ("zeros", "ones", "skip")
# Options a dict rule may give, per rule: {"init": rule, option: value, ...}.
_RULE_OPTIONS = {
    "nspl": {"mode", "alpha", "ratio", "gain", "nonlinearity", "param"},
    "normal": {"mode", "gain", "nonlinearity", "param", "std"},
    "uniform": {"mode", "gain", "nonlinearity", "param", "bound"},
}

_NORM_TYPES = tuple(
    t for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
        nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None),
    ) if t is not None
)

RuleKey = Union[str, "re.Pattern[str]", type, Callable[[str, Tensor, nn.Module], bool]]
RuleValue = Union[str, float, Mapping[str, Any], Callable[[Tensor], Any]]
Rules = Union[Mapping[RuleKey, RuleValue], Sequence[tuple[RuleKey, RuleValue]]]


@dataclass(frozen=True)
class ParamInit:
    """One row of the report: parameter `name`, of (global) `shape`, got `rule`.

    For the random rules `fan` is the n of the target variance gain² / n (fan_in, fan_out or
    their mean, by mode) and `std` = gain / sqrt(n), or the std an explicit std / bound gives
    (bound / sqrt(3) for uniform). Constants have fan None and std 0; 'skip' and callables
    have both None.
    """

    name: str
    shape: tuple[int, ...]
    rule: str
    fan: Optional[float]
    std: Optional[float]


@dataclass(frozen=True)
class _Action:
    rule: str                       # a NAMED_RULES entry, "constant" or "custom"
    options: dict = field(default_factory=dict)
    value: float = 0.0              # constant
    function: Optional[Callable[[Tensor], Any]] = None  # custom

    def label(self) -> str:
        if self.rule == "empty":
            return "skip (no elements)"
        if self.rule == "constant":
            return f"constant({self.value:g})"
        if self.rule == "custom":
            return getattr(self.function, "__qualname__", repr(self.function))
        if self.options:
            return f"{self.rule}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items())) + ")"
        return self.rule


# The default rules, shared by every parameter they apply to; "empty" stands in for a rule that
# would write a parameter without elements (its fans may be 0, and there is nothing to write).
_DEFAULT = {rule: _Action(rule) for rule in ("nspl", "zeros", "ones", "skip", "empty")}
_WRITING_RULES = RANDOM_RULES + ("zeros", "ones", "constant")


@dataclass(frozen=True)
class _Draw:
    """The settings of a random rule, resolved once per rule: the call's defaults with the
    rule's options on top."""
    mode: str
    alpha: float
    ratio: float
    gain: float
    std: Optional[float]            # normal: explicit std
    bound: Optional[float]          # uniform: explicit bound


class _Entry:
    """One parameter of the plan. A plain class with slots: a model has hundreds of
    parameters, and this is built for each on every call."""

    __slots__ = ("name", "tensor", "owner", "action", "fan", "std", "draw", "scale")

    def __init__(self, name: str, tensor: Tensor, owner: nn.Module, action: _Action, fan: Optional[float],
                 std: Optional[float], draw: Optional[_Draw] = None, scale: float = 0.0) -> None:
        self.name, self.tensor, self.owner, self.action = name, tensor, owner, action
        self.fan, self.std = fan, std
        self.draw = draw      # random rules
        self.scale = scale    # normal: std; uniform: bound

    def record(self) -> ParamInit:
        return ParamInit(self.name, tuple(self.tensor.shape), self.action.label(), self.fan, self.std)


def _action(value: RuleValue, where: str) -> _Action:
    if isinstance(value, str):
        rule = "skip" if value.lower() == "keep" else value.lower()
        if rule not in NAMED_RULES:
            raise ValueError(
                f"nspl_filler: rule {where}: unknown rule {value!r}; use one of {NAMED_RULES + ('keep',)}"
            )
        return _Action(rule)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return _Action("constant", value=float(value))
    if isinstance(value, Mapping):
        options = dict(value)
        rule = str(options.pop("init", "nspl")).lower()
        if rule not in _RULE_OPTIONS:
            raise ValueError(
                f"nspl_filler: rule {where}: 'init' of a dict rule must be one of {tuple(_RULE_OPTIONS)}, got {rule!r}"
            )
        unknown = set(options) - _RULE_OPTIONS[rule]
        if unknown:
            raise ValueError(
                f"nspl_filler: rule {where}: {sorted(unknown)} are not options of {rule!r}; "
                f"it takes {sorted(_RULE_OPTIONS[rule])}"
            )
        return _Action(rule, options=options)
    if callable(value):
        return _Action("custom", function=value)
    raise TypeError(
        f"nspl_filler: rule {where}: a rule is a name, a number, a dict of options or a callable, "
        f"got {type(value).__name__}"
    )


def _rule_list(rules: Optional[Rules]) -> list[tuple[RuleKey, _Action]]:
    if rules is None:
        return []
    pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    checked = []
    for key, value in pairs:
        if not isinstance(key, (str, re.Pattern, type)) and not callable(key):
            raise TypeError(
                "nspl_filler: a rule's key is a glob (str), a compiled regex, a module type or a "
                f"predicate (name, param, module) -> bool, got {type(key).__name__}"
            )
        checked.append((key, _action(value, repr(key))))
    return checked


def _matches(key: RuleKey, name: str, param: Tensor, owner: nn.Module) -> bool:
    if isinstance(key, str):
        return fnmatchcase(name, key)
    if isinstance(key, re.Pattern):
        return key.fullmatch(name) is not None
    if isinstance(key, type):
        return isinstance(owner, key)
    return bool(key(name, param, owner))


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


def _default_action(name: str, param: Tensor, owner: nn.Module) -> _Action:
    """NSPL for weights of >= 2 dims; norm layers' 1-D parameters weight 1, bias 0; other
    biases 0; anything else (1-D or scalar parameters such as PReLU slopes or layer scales,
    whose constructor chose their value) is left as it is."""
    if param.dim() >= 2:
        return _DEFAULT["nspl"]
    is_bias = name.endswith("bias")
    if _is_norm(owner):
        return _DEFAULT["zeros" if is_bias else "ones"]
    return _DEFAULT["zeros" if is_bias else "skip"]


def _named_parameters(module: nn.Module, modules: Optional[list] = None) -> Iterator[tuple[str, Tensor, nn.Module]]:
    """(qualified name, parameter, module that owns it), in module.named_parameters() order;
    a parameter shared by several modules (tied weights) comes once, under its first name.
    Appends every submodule to `modules` on the way, so callers need not walk the tree again."""
    seen = set()
    for prefix, owner in module.named_modules():
        if modules is not None:
            modules.append(owner)
        for local_name, param in owner._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            yield (f"{prefix}.{local_name}" if prefix else local_name), param, owner


def _plan(module: nn.Module, mode, alpha, ratio, gain, nonlinearity, param, rules,
          modules: Optional[list] = None) -> list[_Entry]:
    if not isinstance(module, nn.Module):
        raise TypeError(f"nspl_filler: module must be a torch.nn.Module, got {type(module).__name__}")
    defaults = {"mode": mode, "alpha": alpha, "ratio": ratio, "gain": gain, "nonlinearity": nonlinearity,
                "param": param}
    draws: dict[int, _Draw] = {}

    def draw_of(action: _Action) -> _Draw:
        if id(action) not in draws:
            o = {**defaults, **action.options}
            gain_of_rule = (torch.nn.init.calculate_gain(o["nonlinearity"], o["param"]) if o["gain"] is None
                            else _real("gain", o["gain"]))
            draws[id(action)] = _Draw(
                _mode_name(o["mode"]), _real("alpha", o["alpha"]), _real("ratio", o["ratio"]), gain_of_rule,
                _real("std", o["std"]) if "std" in o else None,
                _real("bound", o["bound"]) if "bound" in o else None,
            )
        return draws[id(action)]

    draw_of(_DEFAULT["nspl"])  # checks the call's own arguments even where no rule is random
    rule_list = _rule_list(rules)
    fans_of: dict[tuple[int, ...], tuple[float, float]] = {}  # models repeat a few shapes many times
    entries = []
    for name, tensor, owner in _named_parameters(module, modules):
        action = next((a for key, a in rule_list if _matches(key, name, tensor, owner)), None) if rule_list else None
        action = action or _default_action(name, tensor, owner)
        if action.rule in _WRITING_RULES and tensor.numel() == 0:
            action = _DEFAULT["empty"]
        if action.rule in RANDOM_RULES:
            draw = draw_of(action)
            shape = tuple(tensor.shape)
            if shape not in fans_of:
                try:
                    fans_of[shape] = compute_fans(shape)
                except ValueError as error:
                    raise ValueError(
                        f"nspl_filler: parameter {name!r} (rule {action.label()!r}): {error}"
                    ) from None
            fan_in, fan_out = fans_of[shape]
            n = {"fan_in": fan_in, "fan_out": fan_out, "average": (fan_in + fan_out) / 2}[draw.mode]
            std = draw.gain / math.sqrt(n)
            scale = 0.0
            if action.rule == "normal":
                std = scale = std if draw.std is None else draw.std
            elif action.rule == "uniform":
                scale = math.sqrt(3.0) * std if draw.bound is None else draw.bound
                std = scale / math.sqrt(3.0)
            entries.append(_Entry(name, tensor, owner, action, n, std, draw, scale))
        else:
            std = 0.0 if action.rule in ("zeros", "ones", "constant") else None
            entries.append(_Entry(name, tensor, owner, action, None, std))
    return entries


def init_plan(
    module: nn.Module,
    *,
    mode: Union[str, VarianceNorm] = "fan_in",
    alpha: float = DEFAULT_ALPHA,
    ratio: float = DEFAULT_RATIO,
    gain: Optional[float] = None,
    nonlinearity: str = "relu",
    param: Optional[float] = None,
    rules: Optional[Rules] = None,
) -> list[ParamInit]:
    """The report of what init_module_ with these arguments would do, one ParamInit per
    parameter in named_parameters order, without touching the module."""
    return [e.record() for e in _plan(module, mode, alpha, ratio, gain, nonlinearity, param, rules)]


def format_report(records: Sequence[ParamInit]) -> str:
    """The records as an aligned text table: name, shape, rule, fan, std."""
    rows = [("name", "shape", "rule", "fan", "std")]
    for r in records:
        rows.append((
            r.name, "x".join(map(str, r.shape)) or "scalar", r.rule,
            "" if r.fan is None else f"{r.fan:g}", "" if r.std is None else f"{r.std:.6g}",
        ))
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _fill_random(entries: list[_Entry], key: Optional[int], start: int, generator: Optional[torch.Generator]) -> None:
    """The random rules, in parameter order from block `start` of `key` (key None: from the
    torch generator): NSPL parameters in one bulk call per (mode, alpha, ratio) and device,
    the others one op call each; every call checked before the first writes."""
    offsets = _consecutive_offsets([e.tensor for e in entries], start)
    groups: dict[tuple, list[int]] = {}
    for k, e in enumerate(entries):
        if e.action.rule == "nspl":
            groups.setdefault((e.draw.mode, e.draw.alpha, e.draw.ratio), []).append(k)
    calls: list[_OpCall] = []
    for (mode, alpha, ratio), indices in groups.items():
        calls += _nspl_many_calls(
            [entries[k].tensor for k in indices], mode, alpha, ratio, [entries[k].draw.gain for k in indices], key,
            [offsets[k] for k in indices], generator, names=[f"parameter {entries[k].name!r}" for k in indices],
        )
    for k, e in enumerate(entries):
        if e.action.rule != "nspl":
            calls.append(_one_call(e, None if key is None else as_signed64(key), 0 if key is None else offsets[k],
                                   generator))
    _run_all(calls)


def _one_call(entry: _Entry, seed: Optional[int], offset: int, generator: Optional[torch.Generator]) -> _OpCall:
    """The op call of a 'normal' or 'uniform' parameter."""
    op, check = ((ops.normal_, _C.check_normal) if entry.action.rule == "normal"
                 else (ops.symmetric_uniform_, _C.check_symmetric_uniform))
    target, global_shape, global_start = local_shard(entry.tensor)

    def check_call() -> None:
        try:
            _check_writable(target)
            check(target, entry.scale, seed, offset, generator is not None, global_shape, global_start)
        except (RuntimeError, ValueError) as error:
            raise _named(error, f"parameter {entry.name!r}, rule {entry.action.label()!r}") from None

    def run() -> None:
        op(target, entry.scale, seed=seed, offset=offset, generator=generator, global_shape=global_shape,
           global_start=global_start)

    return _OpCall(check_call, run)


def _zero_padding_rows(entries: list[_Entry]) -> None:
    """nn.Embedding / nn.EmbeddingBag keep the row padding_idx at zero (their reset_parameters
    does the same); for a sharded weight, on the rank whose shard holds that row."""
    for e in entries:
        if (not isinstance(e.owner, (nn.Embedding, nn.EmbeddingBag)) or e.owner.padding_idx is None
                or e.tensor is not e.owner.weight or e.action.rule not in RANDOM_RULES):
            continue
        target, _, global_start = local_shard(e.tensor)
        row = e.owner.padding_idx - (global_start[0] if global_start else 0)
        if 0 <= row < target.shape[0]:
            target[row].zero_()


def init_module_(
    module: nn.Module,
    *,
    mode: Union[str, VarianceNorm] = "fan_in",
    alpha: float = DEFAULT_ALPHA,
    ratio: float = DEFAULT_RATIO,
    gain: Optional[float] = None,
    nonlinearity: str = "relu",
    param: Optional[float] = None,
    seed: Optional[int] = None,
    generator: GeneratorLike = None,
    rules: Optional[Rules] = None,
    verbose: bool = False,
) -> nn.Module:
    """Initialise every parameter of `module` (nested modules included) in place; return it.

    Default rules, per parameter, in ``module.named_parameters()`` order (a tied parameter
    once, under its first name):

    - 1-D (or scalar) parameters of norm layers (BatchNorm, InstanceNorm, LayerNorm, GroupNorm,
      RMSNorm, and any module whose class name ends in "Norm"): weight 1, bias 0;
    - parameters with >= 2 dims (linear, conv, embedding, attention projections): NSPL with
      Var[w] = gain² / n, n from the tensor's fans by `mode`, gain = `gain` or
      calculate_gain(nonlinearity, param) (sqrt(2) for the default 'relu');
    - other parameters whose name ends in "bias": 0;
    - other 1-D or scalar parameters: left as they are ("skip"). After ``to_empty`` such
      parameters hold garbage: give them a rule.

    Also, as the modules' own reset_parameters do: BatchNorm / InstanceNorm running statistics
    are reset, and the padding_idx row of an nn.Embedding / nn.EmbeddingBag weight that gets
    a random rule is zeroed.

    `rules` (a dict, or a sequence of (key, rule) pairs; the first key that matches wins,
    then the defaults) change the rule of parameters by

    - key: a glob on the qualified name (``"*.embed.weight"``; ``*`` also matches dots), a
      compiled regex (``re.compile(r"layers\\.\\d+\\.attn\\..*")``, full match), a module type
      (``nn.LayerNorm``: the parameters that modules of that type own), or a predicate
      ``(name, param, module) -> bool``;
    - rule: ``"nspl"``, ``"normal"`` (Gaussian, same variance gain² / n), ``"uniform"``
      (symmetric uniform, bound sqrt(3)·gain / sqrt(n)), ``"zeros"``, ``"ones"``, ``"skip"``
      (alias ``"keep"``), a number (constant), a dict with "init" (one of the random rules,
      default "nspl") and options: mode, gain, nonlinearity, param, plus alpha / ratio (nspl),
      std (normal) or bound (uniform); or a callable ``f(param)`` that initialises the
      parameter itself (with its own randomness) under no_grad.

    Randomness: the random rules draw, in parameter order, from one stream: with ``seed=s``
    or an nspl_filler.Generator exactly as filling the parameters one by one from one
    nspl_filler.Generator (so a model built on meta and materialised with to_empty gets the
    values a model built directly gets); with a torch.Generator or none, from that generator
    (or the default one), with DTensor parameters through a key agreed across their mesh
    (see fill_). DTensor / FSDP2 parameters get on each rank the values of their slices of the
    unsharded parameters; constants and callables act on the local shards and the DTensors.

    A parameter without elements (e.g. of ``nn.Linear(0, 5)``) is skipped whatever its rule,
    except a callable: the report says "skip (no elements)".

    All or nothing: every rule, every parameter and every bulk call (one per (mode, alpha,
    ratio) and device) is checked, with the checks the ops make, before anything is written;
    an error names the parameter. `verbose=True` prints the report (see init_plan and
    format_report: name, shape, rule, fan, std).
    """
    _check_stream(seed, generator)
    modules: list[nn.Module] = []
    entries = _plan(module, mode, alpha, ratio, gain, nonlinearity, param, rules, modules)
    random = [e for e in entries if e.action.rule in RANDOM_RULES]
    with torch.no_grad():
        by_value: dict[float, list[Tensor]] = {}
        for e in entries:
            if e.action.rule in ("zeros", "ones", "constant"):
                value = {"zeros": 0.0, "ones": 1.0}.get(e.action.rule, e.action.value)
                by_value.setdefault(value, []).append(local_shard(e.tensor)[0])
        # The constants are written after the random rules: check now what could refuse them.
        for targets in by_value.values():
            for target in targets:
                _check_writable(target)
        if random:
            _with_stream([e.tensor for e in random], seed, generator,
                         lambda key, start, torch_generator: _fill_random(random, key, start, torch_generator))
        for value, targets in by_value.items():
            # zero_ first: add_ alone would keep the garbage that to_empty leaves (NaN + c).
            torch._foreach_zero_(targets)
            if value != 0.0:
                torch._foreach_add_(targets, value)
        for e in entries:
            if e.action.rule == "custom":
                e.action.function(e.tensor)
        _zero_padding_rows(entries)
        for m in modules:
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
                m.reset_running_stats()
    if verbose:
        print(format_report([e.record() for e in entries]))
    return module


__all__ = ["ParamInit", "format_report", "init_module_", "init_plan"]
