"""init_module_: initialise a whole model at once, NSPL for its layer weights, with per-name
and per-module-type rules, a report of what each parameter got, and bulk filling
(fill_many_'s op) for speed.

The data flows one way: a plan (one _Entry per parameter: its rule, role, target std and
the op arguments that give it), then the stream (_place_in_stream: each entry's key and
first block, the one place that chooses them), then the op calls, all checked before the
first runs. Works on nested models, tied and shared parameters, meta-built models (see
meta.py) and DTensor (FSDP2) parameters."""
from __future__ import annotations

import inspect
import math
import numbers
import re
import warnings
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._extension import _C, ops
from .bulk import _check_writable, _named, _nspl_many_calls, _OpCall, _run_all
from .generator import as_signed64
from .init import DEFAULT_ALPHA, DEFAULT_RATIO, GeneratorLike, VarianceNorm, _mode_name, _real, compute_fans
from .layouts import Layout, is_norm, weight_layout
from .sharded import is_dtensor, local_shard
from .stream import Streams, check_names, check_stream, check_stream_kind, preview_streams, with_streams

#: Rules that draw from the random stream, in the order of the parameters.
RANDOM_RULES = ("nspl", "normal", "uniform")
#: Every rule that has a name; "skip" is an alias of "keep".
NAMED_RULES = RANDOM_RULES + ("zeros", "ones", "keep")
#: How a random rule sets each tensor's std: "fan" (gain / sqrt(n), n from the fans by mode)
#: or "keep" (the std the tensor has now; a tensor of std 0 keeps its values).
SCALES = ("fan", "keep")
_COMMON_OPTIONS = {"mode", "gain", "nonlinearity", "param", "fan_in", "fan_out", "scale"}
# Options a dict rule may give, per rule: {"init": rule, option: value, ...}.
_RULE_OPTIONS = {
    "nspl": _COMMON_OPTIONS | {"alpha", "ratio"},
    "normal": _COMMON_OPTIONS | {"std"},
    "uniform": _COMMON_OPTIONS | {"bound"},
}

RuleKey = Union[str, "re.Pattern[str]", type, Callable[[str, Tensor, nn.Module], bool]]
RuleValue = Union[str, float, Mapping[str, Any], Callable[..., Any]]
Rules = Union[Mapping[RuleKey, RuleValue], Sequence[tuple[RuleKey, RuleValue]]]


@dataclass(frozen=True)
class ParamInit:
    """One row of the report: parameter `name`, of (global) `shape`, got `rule`.

    For the random rules `fan` is the n of the target variance gain² / n (fan_in, fan_out or
    their mean, by mode, from the layer's layout) and `std` = gain / sqrt(n), or the std an
    explicit std / bound gives (bound / sqrt(3) for uniform), or with scale "keep" the std
    the tensor had. Constants have fan None and std 0; "keep" and callables have both None.
    `role` is "layer", "embedding", "norm" or "other" (see init_module_); `aliases` are the
    other names of a tied or shared parameter (or, for the weight of a parametrization, the
    names of its originals). `own_std` (init_plan, and the report of ``verbose=True``): the
    std the parameter has now, as its model initialised it, where a random rule draws it
    (None on meta and for the other rules), to compare with `std`.
    """

    name: str
    shape: tuple[int, ...]
    rule: str
    fan: Optional[float]
    std: Optional[float]
    role: str = "other"
    aliases: tuple[str, ...] = ()
    own_std: Optional[float] = field(default=None, compare=False)  # a measurement, not the plan


@dataclass(frozen=True)
class _Action:
    rule: str                       # a NAMED_RULES entry, "constant", "custom" or "empty"
    options: dict = field(default_factory=dict)
    value: float = 0.0              # constant
    function: Optional[Callable[..., Any]] = None  # custom
    takes_generator: bool = False   # custom: whether it accepts generator=

    def label(self) -> str:
        if self.rule == "empty":
            return "keep (no elements)"
        if self.rule == "constant":
            return f"constant({self.value:g})"
        if self.rule == "custom":
            return getattr(self.function, "__qualname__", repr(self.function))
        if self.options:
            return f"{self.rule}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items())) + ")"
        return self.rule


# The default rules, shared by every parameter they apply to; "empty" stands in for a rule that
# would write a parameter without elements (its fans may be 0, and there is nothing to write),
# "flat" for a scale-"keep" rule on a tensor of std 0 (zeros stay zeros).
_DEFAULT = {rule: _Action(rule) for rule in ("nspl", "zeros", "ones", "keep", "empty")}
_FLAT = _Action("keep")
# Kept by default: a frozen parameter (requires_grad False: a fixed sinusoidal table, ...), the
# weight of a parametrization without right_inverse (its originals cannot be set from a weight).
_FROZEN = _Action("keep")
_NO_INVERSE = _Action("keep")
_LABELS = {id(_FLAT): "keep (std 0)", id(_FROZEN): "keep (frozen)",
           id(_NO_INVERSE): "keep (parametrization without right_inverse)"}
#: The default rule of embedding tables: NSPL with gain 1 (no nonlinearity follows a lookup,
#: and a table tied to an output layer is that layer's weight, of fan_in = embedding_dim).
EMBEDDING_RULE = {"init": "nspl", "gain": 1.0, "mode": "fan_in"}
_WRITING_RULES = RANDOM_RULES + ("zeros", "ones", "constant")


@dataclass(frozen=True)
class _Draw:
    """The settings of a random rule, resolved once per rule: the call's defaults with the
    rule's options on top."""
    mode: str
    alpha: float
    ratio: float
    gain: float
    scale: str
    std: Optional[float]            # normal: explicit std
    bound: Optional[float]          # uniform: explicit bound
    fan_in: Optional[float]         # explicit fans
    fan_out: Optional[float]


class _Entry:
    """One parameter of the plan. A plain class with slots: a model has hundreds of
    parameters, and this is built for each on every call.

    For the random rules: `fan` (n) and `std` (the target); `scale` the op's std (normal) or
    bound (uniform); `gain` the gain that the op, taking fans from the shape by `draw.mode`
    (or the explicit `fans`), turns into `std`. `key` and `offset` place it in the stream."""

    __slots__ = ("name", "aliases", "tensor", "owner", "role", "action", "fan", "std", "draw", "scale", "gain",
                 "fans", "key", "offset", "through")

    def __init__(self, name: str, aliases: tuple[str, ...], tensor: Tensor, owner: nn.Module, role: str,
                 action: _Action) -> None:
        self.name, self.aliases, self.tensor, self.owner, self.role = name, aliases, tensor, owner, role
        self.action = action
        self.fan: Optional[float] = None
        self.std: Optional[float] = 0.0 if action.rule in ("zeros", "ones", "constant") else None
        self.draw: Optional[_Draw] = None
        self.scale = 0.0
        self.gain = 0.0
        self.fans: Optional[tuple[Optional[float], Optional[float]]] = None
        self.key: Optional[int] = None
        self.offset = 0
        # The ParametrizationList whose right_inverse takes `tensor` (a stand-in for the
        # effective weight) once it is written; None for a parameter written in place.
        self.through: Optional[nn.Module] = None

    def record(self, own_std: bool = False) -> ParamInit:
        """The report's row; `own_std`: measure the std the tensor has now (for init_plan)."""
        label = _LABELS.get(id(self.action)) or self.action.label()
        if self.draw is not None and self.draw.scale == "keep" and "scale" not in self.action.options:
            label = f"{label} (own std)"
        if self.through is not None and self.action.rule != "keep":
            label = f"{label} (through right_inverse)"
        own = None
        if own_std and self.action.rule in RANDOM_RULES:
            own = _measured_std(_evaluated(self.through) if self.through is not None else self.tensor)
        return ParamInit(self.name, tuple(self.tensor.shape), label, self.fan, self.std, self.role, self.aliases, own)


def _takes_generator(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature take the tensor alone
        return False
    return any(p.name == "generator" or p.kind is p.VAR_KEYWORD for p in parameters)


def _action(value: RuleValue, where: str) -> _Action:
    if isinstance(value, str):
        rule = "keep" if value.lower() == "skip" else value.lower()
        if rule not in NAMED_RULES:
            raise ValueError(
                f"nspl_filler: rule {where}: unknown rule {value!r}; use one of {NAMED_RULES + ('skip',)}"
            )
        return _Action(rule)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            constant = float(value)
        except OverflowError:
            constant = math.inf
        if not math.isfinite(constant):
            raise ValueError(f"nspl_filler: rule {where}: a constant must be finite, got {value!r}")
        return _Action("constant", value=constant)
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
        return _Action("custom", function=value, takes_generator=_takes_generator(value))
    raise TypeError(
        f"nspl_filler: rule {where}: a rule is a name, a number, a dict of options or a callable, "
        f"got {type(value).__name__}"
    )


def _rule_list(rules: Optional[Rules]) -> list[tuple[RuleKey, _Action]]:
    if rules is None:
        return []
    if isinstance(rules, (str, bytes)) or not isinstance(rules, (Mapping, Sequence)):
        raise TypeError(
            f"nspl_filler: rules must be a dict or a sequence of (key, rule) pairs, got {type(rules).__name__}"
        )
    pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    checked = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError(f"nspl_filler: rules as a sequence hold (key, rule) pairs, got {pair!r}")
        key, value = pair
        if not isinstance(key, (str, re.Pattern, type)) and not callable(key):
            raise TypeError(
                "nspl_filler: a rule's key is a glob (str), a compiled regex, a module type or a "
                f"predicate (name, param, module) -> bool, got {type(key).__name__}"
            )
        checked.append((key, _action(value, repr(key))))
    return checked


def _attribute(name: str) -> Optional[str]:
    """The name, in its parent, of the module that holds the parameter of qualified `name`."""
    parts = name.rsplit(".", 2)
    return parts[-2] if len(parts) >= 2 else None


def _is_weight(owner: nn.Module, local_name: str, param: Tensor, name: str = "") -> bool:
    """A weight of its module: one its layout names, or, for a module without a layout, a
    parameter of >= 2 dims. A module-type key with a random rule reaches only these, so
    that a rule for nn.Linear does not try to take fans of its biases."""
    return weight_layout(owner, local_name, param.dim(), _attribute(name)) is not None or (
        weight_layout(owner, "") is None and param.dim() >= 2
    )


def _matches(key: RuleKey, action: _Action, name: str, local_name: str, param: Tensor, owner: nn.Module) -> bool:
    if isinstance(key, str):
        return fnmatchcase(name, key)
    if isinstance(key, re.Pattern):
        return key.fullmatch(name) is not None
    if isinstance(key, type):
        return isinstance(owner, key) and (action.rule not in RANDOM_RULES or _is_weight(owner, local_name, param, name))
    return bool(key(name, param, owner))


#: Tables that hold biases, not embeddings: T5's (and its kin's) relative position bias, an
#: nn.Embedding(buckets, heads) whose values are added to attention scores.
BIAS_TABLES = ("relative_attention_bias",)
# The names in the parent that decide a role (see layouts.is_experts, is_router).
_ATTRIBUTES = frozenset(BIAS_TABLES + ("experts", "router"))


def _role(owner: nn.Module, local_name: str, dim: Optional[int] = None, attribute: Optional[str] = None
          ) -> tuple[str, Optional[Layout]]:
    if attribute in BIAS_TABLES:
        return "other", None
    if owner._forward_pre_hooks:  # old-style weight norm: the magnitude is a norm's gain
        if _weight_norm_magnitude(owner, local_name):
            return "norm", None
        layout = _weight_norm_direction(owner, local_name)
        if layout is not None:
            return layout.role, layout
    layout = weight_layout(owner, local_name, dim, attribute)
    if layout is not None:
        return layout.role, layout
    return ("norm" if is_norm(owner) else "other"), None


def _weight_norm_hooks(owner: nn.Module) -> list:
    """The old-style weight norms (torch.nn.utils.weight_norm) of `owner`: each keeps the
    weight `name` as a magnitude `name_g` and a direction `name_v`."""
    from torch.nn.utils.weight_norm import WeightNorm

    return [h for h in owner._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


def _weight_norm_magnitude(owner: nn.Module, local_name: str) -> bool:
    return local_name.endswith("_g") and any(h.name + "_g" == local_name for h in _weight_norm_hooks(owner))


def _weight_norm_direction(owner: nn.Module, local_name: str) -> Optional[Layout]:
    """The layout of the weight whose direction `local_name` (``name_v``) is, if it is one."""
    if local_name.endswith("_v"):
        for h in _weight_norm_hooks(owner):
            if h.name + "_v" == local_name:
                return weight_layout(owner, h.name)
    return None


_EMBEDDING_ACTION = _action(EMBEDDING_RULE, "for embeddings")


def _default_action(role: str) -> _Action:
    """NSPL for layer weights, the embedding rule for embedding tables; every other
    parameter (biases, norm layers' weights, position embeddings, layer scales, ...) keeps
    the value its model gave it."""
    if role == "layer":
        return _DEFAULT["nspl"]
    if role == "embedding":
        return _EMBEDDING_ACTION
    return _DEFAULT["keep"]


def _named_parameters(module: nn.Module, modules: Optional[list] = None
                      ) -> Iterator[tuple[list[tuple[str, str, nn.Module]], Tensor]]:
    """([(qualified name, own name, owning module), ...], parameter) per parameter, in
    module.named_parameters() order; a parameter that several modules hold (tied weights,
    shared modules) comes once, with every name it has, its first name first. Appends every
    submodule to `modules` on the way, so callers need not walk the tree again."""
    names: dict[int, list[tuple[str, str, nn.Module]]] = {}
    params: dict[int, Tensor] = {}
    seen_modules = set()
    for prefix, owner in module.named_modules(remove_duplicate=False):
        if modules is not None and id(owner) not in seen_modules:
            seen_modules.add(id(owner))
            modules.append(owner)
        for local_name, param in owner._parameters.items():
            if param is None:
                continue
            names.setdefault(id(param), []).append(
                ((f"{prefix}.{local_name}" if prefix else local_name), local_name, owner))
            params[id(param)] = param
    for ident, aliases in names.items():
        yield aliases, params[ident]


def _measured_std(tensor: Tensor) -> Optional[float]:
    """The std (population, over the whole, global tensor) of `tensor` now; None on meta."""
    if tensor.device.type == "meta":
        return None
    with torch.no_grad():
        if is_dtensor(tensor):
            # Sums over the DTensor reduce across its mesh: the std of the global tensor.
            values = tensor.detach().to(torch.float64)
            n = tensor.numel()
            mean = float(values.sum().full_tensor()) / n
            return math.sqrt(max(float(values.square().sum().full_tensor()) / n - mean * mean, 0.0))
        values = tensor.detach().reshape(-1)
        if values.numel() == 0:
            return 0.0
        if values.is_complex() or not values.is_floating_point():
            return float(torch.std(values.to(torch.complex128 if values.is_complex() else torch.float64),
                                   correction=0))
        # A constant keeps its values whatever float32 makes of its std (0.3 is not a float32,
        # and its std in float32 is 3e-8, not 0); tell it exactly. Otherwise two passes in
        # float64 over chunks: no overflow near the float32 range (1e37² is 1e74), no float64
        # copy of a whole large tensor.
        if bool((values == values[0]).all()):
            return 0.0 if math.isfinite(float(values[0])) else math.nan
        chunks = values.split(1 << 22)
        mean = sum(float(torch.sum(c, dtype=torch.float64)) for c in chunks) / values.numel()
        squares = sum(float(torch.sum((c.to(torch.float64) - mean).square())) for c in chunks)
        return math.sqrt(squares / values.numel())


class _Planner:
    """Turns (call arguments, rules) into one _Entry per parameter."""

    def __init__(self, mode, alpha, ratio, gain, nonlinearity, param, scale, rules) -> None:
        self.defaults = {"mode": mode, "alpha": alpha, "ratio": ratio, "gain": gain, "nonlinearity": nonlinearity,
                         "param": param, "scale": scale}
        self.draws: dict[int, _Draw] = {}
        self.draw_of(_DEFAULT["nspl"])  # checks the call's own arguments even where no rule is random
        self.rule_list = _rule_list(rules)
        self.used = [False] * len(self.rule_list)
        # Models repeat a few module types, names and shapes many times: each is worked out once.
        self.fans_of: dict[tuple, tuple[float, float]] = {}
        self.roles: dict[tuple[type, str], tuple[str, Optional[Layout]]] = {}

    def draw_of(self, action: _Action) -> _Draw:
        if id(action) not in self.draws:
            o = {**self.defaults, **action.options}
            gain = (torch.nn.init.calculate_gain(o["nonlinearity"], o["param"]) if o["gain"] is None
                    else _real("gain", o["gain"]))
            if o["scale"] not in SCALES:
                raise ValueError(f"nspl_filler: scale must be one of {SCALES}, got {o['scale']!r}")
            fan_in, fan_out = (_real(k, o[k]) if o.get(k) is not None else None for k in ("fan_in", "fan_out"))
            for k, v in (("fan_in", fan_in), ("fan_out", fan_out)):
                if v is not None and not (math.isfinite(v) and v > 0):
                    raise ValueError(f"nspl_filler: {k} must be finite and > 0, got {v!r}")
            self.draws[id(action)] = _Draw(
                _mode_name(o["mode"]), _real("alpha", o["alpha"]), _real("ratio", o["ratio"]), gain, o["scale"],
                _real("std", o["std"]) if "std" in o else None,
                _real("bound", o["bound"]) if "bound" in o else None,
                fan_in, fan_out,
            )
        return self.draws[id(action)]

    def action_of(self, aliases: list[tuple[str, str, nn.Module]], tensor: Tensor) -> _Action:
        for k, (key, action) in enumerate(self.rule_list):
            if any(_matches(key, action, name, local, tensor, owner) for name, local, owner in aliases):
                self.used[k] = True
                return action
        return None

    def shape_fans(self, shape: tuple[int, ...], layout: Optional[Layout] = None, groups: int = 1
                   ) -> tuple[float, float]:
        """(fan_in, fan_out) of `shape` by `layout` (None: torch's convention), for a module
        of `groups` groups."""
        key = (shape, layout, groups)
        if key not in self.fans_of:
            self.fans_of[key] = compute_fans(shape) if layout is None else layout.fans(shape, groups)
        return self.fans_of[key]

    def role_of(self, owner: nn.Module, local_name: str, dim: int, name: str) -> tuple[str, Optional[Layout]]:
        attribute = _attribute(name)
        if owner._forward_pre_hooks:  # an old-style weight norm is a hook of the instance
            return _role(owner, local_name, dim, attribute)
        # The name in the parent matters only for the few names _role looks at: keep it out of
        # the key otherwise (layers.0, layers.1, ... would each be a key of their own).
        key = (type(owner), local_name, dim, attribute if attribute in _ATTRIBUTES else None,
               dim == 3 and getattr(owner, "is_transposed", None) is True)
        if key not in self.roles:
            self.roles[key] = _role(owner, local_name, dim, attribute)
        return self.roles[key]

    def entry(self, aliases: list[tuple[str, str, nn.Module]], tensor: Tensor, through: Optional[nn.Module] = None,
              frozen: Optional[bool] = None) -> _Entry:
        """The entry of one parameter (or, with `through`, of the weight of that
        ParametrizationList: `tensor` stands in for it, `aliases` name it first, then its
        originals; `frozen`: whether the originals are)."""
        name = aliases[0][0]
        if type(tensor).__name__ == "FlatParameter" or aliases[0][1] == "_flat_param":
            raise ValueError(
                f"nspl_filler: parameter {name!r} is FSDP's flat parameter (FullyShardedDataParallel with "
                "use_orig_params=False): it holds many parameters flattened together, so none of them can be "
                "given its rule or fans. Initialise the model before wrapping it, wrap it with "
                "use_orig_params=True, or use FSDP2 (fully_shard)"
            )
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            raise ValueError(
                f"nspl_filler: parameter {name!r} is uninitialised (a lazy module such as nn.LazyLinear): its "
                "shape is not known until the module's first forward pass; run one (e.g. on a dummy batch) "
                "before initialising the model"
            )
        # A tied weight is a layer's weight if any of its names makes it one (a raw Parameter
        # that a layer also holds), and an embedding table if any makes it one (a table that
        # an output Linear shares with an Embedding, whichever of the two comes first).
        roles = [self.role_of(owner, local, tensor.dim(), qualified) for qualified, local, owner in aliases]
        chosen = next((k for k, (role, _) in enumerate(roles) if role == "embedding"),
                      next((k for k, (_, layout) in enumerate(roles) if layout is not None), 0))
        (role, layout), owner = roles[chosen], aliases[chosen][2]
        action = self.action_of(aliases, tensor) if self.rule_list else None
        if action is None:
            action = _default_action(role)
            if action.rule != "keep":
                if (not tensor.requires_grad) if frozen is None else frozen:
                    action = _FROZEN
                elif through is not None and not _invertible(through):
                    action = _NO_INVERSE
        elif through is not None and action.rule != "keep" and not _invertible(through):
            raise ValueError(
                f"nspl_filler: parameter {name!r} (rule {action.label()!r}) is the weight of a parametrization "
                f"without right_inverse ({_parametrizations(through)}), so its originals cannot be set from a "
                "value; give it the rule 'keep', or initialise its originals by their own names"
            )
        if action.rule in _WRITING_RULES and tensor.numel() == 0:
            action = _DEFAULT["empty"]
        entry = _Entry(name, tuple(n for n, _, _ in aliases[1:]), tensor, owner, role, action)
        entry.through = through
        if through is not None and action.rule in RANDOM_RULES and self.draw_of(action).scale == "keep":
            with torch.no_grad():
                tensor.copy_(_evaluated(through))  # scale "keep" measures the weight the model uses
        if action.rule in RANDOM_RULES:
            try:
                self.random(entry, layout)
            except ValueError as error:
                reason = str(error).removeprefix("nspl_filler: ")
                raise ValueError(f"nspl_filler: parameter {name!r} (rule {action.label()!r}): {reason}") from None
        return entry

    def random(self, e: _Entry, layout: Optional[Layout]) -> None:
        """Fans, target std and op arguments of a parameter with a random rule."""
        draw = e.draw = self.draw_of(e.action)
        shape = tuple(e.tensor.shape)
        fan_in, fan_out = draw.fan_in, draw.fan_out
        if fan_in is None or fan_out is None:
            groups = 1 if layout is None else layout.groups_of(e.owner)
            own = self.shape_fans(shape, layout, groups) if layout is not None or len(shape) >= 2 else None
            if own is not None:
                fan_in = own[0] if fan_in is None else fan_in
                fan_out = own[1] if fan_out is None else fan_out
        needed = {"fan_in": ("fan_in",), "fan_out": ("fan_out",), "average": ("fan_in", "fan_out")}[draw.mode]
        missing = [k for k in needed if {"fan_in": fan_in, "fan_out": fan_out}[k] is None]
        # An explicit std (normal) or bound (uniform) is the whole scale: no fan is needed.
        explicit_scale = ((e.action.rule == "normal" and draw.std is not None)
                          or (e.action.rule == "uniform" and draw.bound is not None))
        if missing and not explicit_scale:
            raise ValueError(
                f"a tensor of shape {shape} has no fans: give the rule {' and '.join(missing)} "
                f"(e.g. {{'{missing[0]}': ...}})"
            )
        n = None if missing else {"fan_in": fan_in, "fan_out": fan_out, "average": None}[draw.mode]
        if n is None and not missing:
            n = (fan_in + fan_out) / 2
        e.fan = n
        if draw.scale == "keep":
            std = _measured_std(e.tensor)
            if std is not None and not math.isfinite(std):
                raise ValueError("scale 'keep' needs its values, and the tensor holds NaN or infinity")
            if std == 0.0:
                e.action, e.fan, e.draw = _FLAT, None, None
                return
        else:
            std = None if n is None else draw.gain / math.sqrt(n)
        if e.action.rule == "normal":
            std = e.scale = std if draw.std is None else draw.std
        elif e.action.rule == "uniform":
            e.scale = (None if std is None else math.sqrt(3.0) * std) if draw.bound is None else draw.bound
            std = None if e.scale is None else e.scale / math.sqrt(3.0)
        e.std = std
        if e.action.rule == "nspl":
            explicit = draw.fan_in is not None or draw.fan_out is not None
            if explicit:
                e.fans = (fan_in, fan_out)
            own_n = n if explicit else self.mode_fan(shape, draw.mode)
            # The op takes n from the shape (torch's layout) or the explicit fans; the gain
            # that gives the std is draw.gain itself wherever those n agree (bit for bit
            # fill_'s values), else std·sqrt(op's n).
            if draw.scale == "fan" and own_n == n:
                e.gain = draw.gain
            elif std is not None:
                e.gain = std * math.sqrt(own_n)

    def mode_fan(self, shape: tuple[int, ...], mode: str) -> float:
        fan_in, fan_out = self.shape_fans(shape)
        return {"fan_in": fan_in, "fan_out": fan_out, "average": (fan_in + fan_out) / 2}[mode]

    def unmatched(self) -> list[RuleKey]:
        return [key for (key, _), used in zip(self.rule_list, self.used) if not used]


def _invertible(plist: nn.Module) -> bool:
    return all(hasattr(p, "right_inverse") for p in plist)


def _parametrizations(plist: nn.Module) -> str:
    return ", ".join(type(p).__name__ for p in plist)


def _evaluated(plist: nn.Module) -> Tensor:
    """The weight a ParametrizationList gives now, without the side effects of training mode
    (spectral_norm's power iteration updates its vectors in training mode)."""
    training = [m.training for m in plist.modules()]
    plist.eval()
    try:
        with torch.no_grad():
            return plist().detach()
    finally:
        for m, was in zip(plist.modules(), training):
            m.training = was


def _through_parametrizations(module: nn.Module, rows: Iterator[tuple[list, Tensor]]) -> Iterator[tuple]:
    """The rows of _named_parameters as (aliases, tensor, through, frozen) for _Planner.entry:
    the originals of a parametrized tensor (torch.nn.utils.parametrize: weight_norm, orthogonal,
    spectral_norm, ...) become one row for the tensor the module uses, named as the module's
    own (``lin.weight``, its originals as aliases), with a stand-in tensor of its shape that
    the plan fills and the ParametrizationList's right_inverse then takes; every other
    parameter is itself."""
    from torch.nn.utils.parametrize import ParametrizationList

    seen: set[int] = set()
    rows = list(rows)
    originals: dict[int, list] = {}
    for aliases, tensor in rows:
        owner = aliases[0][2]
        if isinstance(owner, ParametrizationList):
            originals.setdefault(id(owner), []).append((aliases, tensor))
    for aliases, tensor in rows:
        plist = aliases[0][2]
        if not isinstance(plist, ParametrizationList):
            yield aliases, tensor, None, None
            continue
        if id(plist) in seen:
            continue
        seen.add(id(plist))
        path = aliases[0][0].rsplit(".", 1)[0]             # prefix.parametrizations.weight
        prefix, _, tensor_name = path.rpartition(".")
        parent_path = prefix.rpartition(".")[0] if prefix.endswith("parametrizations") else None
        if parent_path is None:  # not where torch.nn.utils.parametrize puts it: each original as itself
            yield aliases, tensor, None, None
            continue
        parent = module.get_submodule(parent_path) if parent_path else module
        group = originals[id(plist)]
        with torch.no_grad():
            like = plist.original if plist.is_tensor and not plist.unsafe else _evaluated(plist)
            stand_in = torch.empty_like(like, requires_grad=False)
        effective = [(f"{parent_path}.{tensor_name}" if parent_path else tensor_name, tensor_name, parent)]
        yield (effective + [a for names, _ in group for a in names], stand_in, plist,
               not any(t.requires_grad for _, t in group))


def _plan(module: nn.Module, mode="fan_in", alpha=DEFAULT_ALPHA, ratio=DEFAULT_RATIO, gain=None, nonlinearity="relu",
          param=None, scale="fan", rules=None, strict: bool = False, modules: Optional[list] = None) -> list[_Entry]:
    if not isinstance(module, nn.Module):
        raise TypeError(f"nspl_filler: module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"nspl_filler: strict must be a bool, got {type(strict).__name__} {strict!r}")
    planner = _Planner(mode, alpha, ratio, gain, nonlinearity, param, scale, rules)
    entries = [planner.entry(*row) for row in _through_parametrizations(module, _named_parameters(module, modules))]
    if not any(e.action.rule in _WRITING_RULES for e in entries) and any(e.action is _FROZEN for e in entries):
        warnings.warn(
            f"nspl_filler: every parameter of the {type(module).__name__} that init_module_ would fill is frozen "
            "(requires_grad False), and frozen parameters are kept: nothing is written. Unfreeze them first "
            "(module.requires_grad_(True)), or give them rules", UserWarning, stacklevel=3)
    uninvertible = [f"{e.name} ({_parametrizations(e.through)})" for e in entries if e.action is _NO_INVERSE]
    if uninvertible:
        warnings.warn(
            f"nspl_filler: {uninvertible} are weights of parametrizations without right_inverse, so they cannot "
            "be set from a value: they are kept as they are (rule 'keep' in the report); initialise their "
            "originals by their own names if they need it", UserWarning, stacklevel=3)
    unmatched = planner.unmatched()
    if unmatched:
        message = (f"nspl_filler: rules {unmatched!r} match no parameter of the {type(module).__name__} "
                   "that an earlier rule does not take (the first rule that matches a parameter wins; "
                   "a tied parameter answers to each of its names; a module-type key with a random rule "
                   "reaches only that module's weights)")
        if strict:
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
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
    scale: str = "fan",
    rules: Optional[Rules] = None,
    strict: bool = False,
) -> list[ParamInit]:
    """The report of what init_module_ with these arguments would do, one ParamInit per
    parameter in named_parameters order, without touching the module.

    Each parameter that a random rule draws also gets `own_std`, the std its model gave it;
    where the planned std and it differ by more than DEPARTURE (3x) either way, a UserWarning
    lists those parameters: the model's own recipe departs from fan scaling there (T5 folds
    1/sqrt(d_kv) into its queries' init, GPT-2 scales its residual projections, zero-initialised
    layers), and scale="keep" or a rule keeps it. Kept parameters and meta tensors are not
    measured."""
    entries = _plan(module, mode, alpha, ratio, gain, nonlinearity, param, scale, rules, strict)
    records = [e.record(own_std=True) for e in entries]
    departures = [r for r in records if _departs(r)]
    if departures:
        shown = "; ".join(f"{r.name}: own {r.own_std:.3g}, planned {r.std:.3g}" for r in departures[:8])
        more = f"; and {len(departures) - 8} more" if len(departures) > 8 else ""
        warnings.warn(
            f"nspl_filler: {len(departures)} of {sum(r.own_std is not None for r in records)} drawn parameters "
            f"of the {type(module).__name__} have an own std more than {DEPARTURE:g}x away from the planned "
            f"one, so the model's own init departs from fan scaling there ({shown}{more}); if that recipe "
            "matters, pass scale='keep' or give those parameters rules",
            UserWarning, stacklevel=2,
        )
    return records


#: init_plan warns where a parameter's own std and its planned std differ by more than this factor.
DEPARTURE = 3.0


def _departs(record: ParamInit) -> bool:
    own, planned = record.own_std, record.std
    if own is None or planned is None or not math.isfinite(own):
        return False
    if own == 0.0 or planned == 0.0:
        return own != planned
    return max(own / planned, planned / own) > DEPARTURE


def format_report(records: Sequence[ParamInit]) -> str:
    """The records as an aligned text table: name (and the names it is tied to), shape,
    role, rule, fan, std, and the own std where measured (see init_plan)."""
    rows = [("name", "shape", "role", "rule", "fan", "std", "own std")]
    for r in records:
        rows.append((
            r.name + "".join(f" = {alias}" for alias in r.aliases), "x".join(map(str, r.shape)) or "scalar",
            r.role, r.rule, "" if r.fan is None else f"{r.fan:g}", "" if r.std is None else f"{r.std:.6g}",
            "" if r.own_std is None else f"{r.own_std:.6g}",
        ))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _place_in_stream(entries: list[_Entry], streams: Streams) -> None:
    """The stream of every entry that draws (random rules, and callables, which get a
    generator of their own from their place), as stream.py chose it (key None: the op draws
    the position from the torch generator, once per call)."""
    for k, e in enumerate(entries):
        e.key = None if streams.keys is None else streams.keys[k]
        e.offset = streams.offsets[k]


def _callable_generator(entry: _Entry, torch_generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
    """The generator a callable rule gets for its parameter: with a key, a torch.Generator
    seeded from the parameter's place in the stream (Philox of its first block, in a
    counter domain of its own), so every parameter gets other values and the same ones on
    every call; without one, the torch generator of the call (None: torch's default)."""
    if entry.key is None:
        return torch_generator
    words = _C.philox4x32_10([entry.offset & 0xFFFFFFFF, entry.offset >> 32, 1, 0],
                             [entry.key & 0xFFFFFFFF, entry.key >> 32])
    device = entry.tensor.device if entry.tensor.device.type in ("cpu", "cuda") else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(words[0] | (words[1] << 32))


def _random_calls(entries: list[_Entry], generator: Optional[torch.Generator]) -> list[_OpCall]:
    """The op calls of the random rules: NSPL parameters in one bulk call per
    (alpha, ratio, mode) and device, the others (normal, uniform, NSPL with explicit fans)
    one op call each."""
    groups: dict[tuple, list[_Entry]] = {}
    calls: list[_OpCall] = []
    for e in entries:
        if e.std is None:  # scale "keep" on the meta device: no values, and a fill would write none
            continue
        if e.action.rule == "nspl" and e.fans is None:
            groups.setdefault((e.draw.mode, e.draw.alpha, e.draw.ratio), []).append(e)
        elif e.action.rule in RANDOM_RULES:
            calls.append(_one_call(e, generator))
    bulk: list[_OpCall] = []
    for (mode, alpha, ratio), group in groups.items():
        tensors = [e.tensor for e in group]
        bulk += _nspl_many_calls(
            tensors, mode, alpha, ratio, [e.gain for e in group],
            Streams.placed([e.key for e in group], [e.offset for e in group], generator, tensors),
            labels=[f"parameter {e.name!r}" for e in group],
        )
    return bulk + calls


def _one_call(entry: _Entry, generator: Optional[torch.Generator]) -> _OpCall:
    """The op call of one 'normal', 'uniform' or explicit-fan 'nspl' parameter."""
    target, global_shape, global_start = local_shard(entry.tensor)
    seed = None if entry.key is None else as_signed64(entry.key)
    offset = 0 if entry.key is None else entry.offset
    stream = dict(seed=seed, offset=offset, generator=generator, global_shape=global_shape,
                  global_start=global_start)
    if entry.action.rule == "nspl":
        draw = entry.draw
        args = (draw.mode, draw.alpha, draw.ratio, entry.gain, *entry.fans)
        op, check = ops.nspl_, _C.check_nspl
    else:
        args = (entry.scale,)
        op, check = ((ops.normal_, _C.check_normal) if entry.action.rule == "normal"
                     else (ops.symmetric_uniform_, _C.check_symmetric_uniform))

    def check_call() -> None:
        try:
            _check_writable(target)
            check(target, *args, seed, offset, generator is not None, global_shape, global_start)
        except (RuntimeError, ValueError) as error:
            raise _named(error, f"parameter {entry.name!r}, rule {entry.action.label()!r}") from None

    def run() -> None:
        op(target, *args, **stream)

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


def _constants(entries: list[_Entry]) -> dict[float, list[Tensor]]:
    by_value: dict[float, list[Tensor]] = {}
    for e in entries:
        if e.action.rule in ("zeros", "ones", "constant"):
            value = {"zeros": 0.0, "ones": 1.0}.get(e.action.rule, e.action.value)
            by_value.setdefault(value, []).append(local_shard(e.tensor)[0])
    return by_value


def _check_constants_fit(entries: list[_Entry]) -> None:
    """A constant rule's value must be a value of its parameter's dtype (docs/spec.md §5: no silent
    infinities): ValueError naming the parameter otherwise."""
    for e in entries:
        if e.action.rule == "constant" and e.tensor.dtype.is_floating_point:
            largest = torch.finfo(e.tensor.dtype).max
            if abs(e.action.value) > largest:
                raise ValueError(
                    f"nspl_filler: parameter {e.name!r} (rule {e.action.label()!r}): the constant "
                    f"{e.action.value:g} overflows {e.tensor.dtype} (max {largest:g})"
                )


def _initialise(entries: list[_Entry], modules: list[nn.Module], seed: Optional[int], generator: GeneratorLike,
                check_only: bool = False, named_in: Optional[nn.Module] = None) -> None:
    """Writes the plan: the stream, then every op call and constant checked, then written.
    `check_only`: make every check, write nothing (and advance no Generator). `named_in`: the
    model whose parameter names give the streams (stream="name"), None for one stream."""
    drawing = [e for e in entries if e.action.rule in RANDOM_RULES or e.action.rule == "custom"]
    random = [e for e in drawing if e.action.rule in RANDOM_RULES]
    names = (None if named_in is None else
             check_names([e.name for e in drawing], len(drawing), "the parameters' names", named_in))
    with torch.no_grad():
        by_value = _constants(entries)
        # The constants are written after the random rules: check now what could refuse them.
        for targets in by_value.values():
            for target in targets:
                _check_writable(target)
        _check_constants_fit(entries)
        if check_only:
            _place_in_stream(drawing, preview_streams([e.tensor for e in drawing], seed=seed, generator=generator,
                                                      names=names, argument="stream='name'"))
            for call in _random_calls(random, None):
                call.check()
            return
        torch_generator: list[Optional[torch.Generator]] = [None]

        def fill(streams: Streams) -> None:
            _place_in_stream(drawing, streams)
            torch_generator[0] = streams.generator
            _run_all(_random_calls(random, streams.generator))

        if drawing:
            with_streams([e.tensor for e in drawing], fill, seed=seed, generator=generator, names=names,
                         argument="stream='name'")
        for value, targets in by_value.items():
            # zero_ first: add_ alone would keep the garbage that to_empty leaves (NaN + c).
            torch._foreach_zero_(targets)
            if value != 0.0:
                torch._foreach_add_(targets, value)
        for e in drawing:
            if e.action.rule == "custom":
                if e.action.takes_generator:
                    e.action.function(e.tensor, generator=_callable_generator(e, torch_generator[0]))
                else:
                    e.action.function(e.tensor)
        _zero_padding_rows(entries)
        for e in entries:
            if e.through is not None and e.action.rule in _WRITING_RULES + ("custom",):
                e.through.right_inverse(e.tensor)  # sets the originals so that the weight is e.tensor
        for m in modules:
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
                m.reset_running_stats()


def init_module_(
    module: nn.Module,
    *,
    mode: Union[str, VarianceNorm] = "fan_in",
    alpha: float = DEFAULT_ALPHA,
    ratio: float = DEFAULT_RATIO,
    gain: Optional[float] = None,
    nonlinearity: str = "relu",
    param: Optional[float] = None,
    scale: str = "fan",
    seed: Optional[int] = None,
    generator: GeneratorLike = None,
    rules: Optional[Rules] = None,
    strict: bool = False,
    verbose: bool = False,
    stream: str = "sequential",
) -> nn.Module:
    """Initialise the parameters of `module` (nested modules included) in place; return it.

    Default rules, by the role of each parameter, in ``module.named_parameters()`` order (a
    tied or shared parameter once, under its first name, and answering rules by every name):

    - "layer": the weights of layer modules (Linear, Bilinear, Conv*d, ConvTranspose*d,
      MultiheadAttention's own projections, RNN / LSTM / GRU weights, transformers' Conv1D,
      and any type given to register_layout): NSPL with Var[w] = gain² / n, n from the fans
      of the layer's layout by `mode` (so a weight stored (in, out) gets its true fans),
      gain = `gain` or calculate_gain(nonlinearity, param) (sqrt(2) for the default 'relu');
    - "embedding": nn.Embedding / nn.EmbeddingBag tables: the rule EMBEDDING_RULE, NSPL
      with gain 1 and n = embedding_dim (the fan_in of a table tied to an output layer);
    - everything else ("norm": the parameters of norm layers, the magnitudes ``name_g`` of
      an old-style weight norm; "other": biases, position embeddings stored as raw
      parameters, class tokens, layer scales, T5's ``relative_attention_bias`` table, ...):
      kept as the model made them ("keep");
    - whatever its role, a frozen parameter (requires_grad False: a fixed sinusoidal table)
      is kept; a rule still writes it.

    Layer weights include the 3-D weights of experts containers and routers' weights
    (layouts.weight_layout: fans per expert) and the direction ``name_v`` of an old-style
    weight norm. A tensor under torch.nn.utils.parametrize (weight_norm, orthogonal,
    spectral_norm, ...) has one entry under the module's own name (``lin.weight``), filled
    as that module's weight and handed to the parametrization's right_inverse, which sets
    its originals; without right_inverse it is kept, with a UserWarning. FSDP1's flat
    parameter (use_orig_params=False) and lazy modules not yet run are ValueErrors.

    `scale`: "fan" (the default, above) or "keep": each random rule fills its tensor with
    NSPL (or its rule's law) at the std the tensor has now, over the whole tensor, so that
    the model's own variance recipe (small heads, residual scaling, ...) is kept and NSPL
    gives the shape; a tensor of std 0 (zeros, a constant) keeps its values. Needs values:
    NaN or infinity, as uninitialised memory holds, is a ValueError.

    Also, as the modules' own reset_parameters do: BatchNorm / InstanceNorm running statistics
    are reset, and the padding_idx row of an nn.Embedding / nn.EmbeddingBag weight that gets
    a random rule is zeroed.

    `rules` (a dict, or a sequence of (key, rule) pairs; the first key that matches wins,
    then the defaults) change the rule of parameters by

    - key: a glob on the qualified name (``"*.embed.weight"``; ``*`` also matches dots), a
      compiled regex (``re.compile(r"layers\\.\\d+\\.attn\\..*")``, full match), a module type
      (``nn.LayerNorm``: the parameters that modules of that type own; with a random rule,
      only their weights), or a predicate ``(name, param, module) -> bool``;
    - rule: ``"nspl"``, ``"normal"`` (Gaussian, same variance gain² / n), ``"uniform"``
      (symmetric uniform, bound sqrt(3)·gain / sqrt(n)), ``"zeros"``, ``"ones"``, ``"keep"``
      (alias ``"skip"``), a number (constant), a dict with "init" (one of the random rules,
      default "nspl") and options: mode, gain, nonlinearity, param, scale, fan_in, fan_out
      (explicit fans win over the layout's; a 1-D tensor needs the ones its mode uses), plus
      alpha / ratio (nspl), std (normal) or bound (uniform); or a callable ``f(param)`` that
      initialises the parameter itself under no_grad. A callable that takes a ``generator``
      keyword gets the parameter's own torch.Generator: with ``seed`` or an
      nspl_filler.Generator one seeded from the parameter's place in the stream, so
      ``lambda p, generator: fill_(p.T, generator=generator)`` gives each parameter its own
      values, the same on every call; with a torch generator or none, that one (or None).

    A rule whose key matches no parameter warns (``strict=True``: ValueError).

    Randomness: the random rules and callables take, in parameter order, consecutive blocks
    of one stream: with ``seed=s`` or an nspl_filler.Generator exactly as filling the
    parameters one by one from one nspl_filler.Generator; with a torch.Generator or none,
    from that generator (or the default one), with DTensor parameters through a key agreed
    across their mesh (see fill_). DTensor / FSDP2 parameters get on each rank the values of
    their slices of the unsharded parameters; constants and callables act on the local
    shards and the DTensors.

    ``stream="name"`` (with ``seed=s``) gives each parameter a stream of its own instead: key
    key_for(s, canonical name) from block 0 (docs/spec.md §4b), so its values depend on (seed, name,
    shape, rule) alone (a callable's generator too). Adding, removing or reordering other
    layers, wrapping the model (torch.compile, activation checkpointing,
    DistributedDataParallel: see canonical_name) or building only one pipeline stage of it
    leaves them as they are. A tied parameter takes its first name.

    A parameter without elements (e.g. of ``nn.Linear(0, 5)``) is skipped whatever its rule,
    except a callable: the report says "keep (no elements)".

    All or nothing: every rule, every parameter and every bulk call (one per (mode, alpha,
    ratio) and device) is checked, with the checks the ops make, before anything is written;
    an error names the parameter. `verbose=True` prints the report (see init_plan and
    format_report: name, shape, role, rule, fan, std).
    """
    by_name = check_stream_kind(stream)
    check_stream(seed, generator, "stream='name'" if by_name else None)
    modules: list[nn.Module] = []
    entries = _plan(module, mode, alpha, ratio, gain, nonlinearity, param, scale, rules, strict, modules)
    records = [e.record(own_std=True) for e in entries] if verbose else None
    _initialise(entries, modules, seed, generator, named_in=module if by_name else None)
    if verbose:
        print(format_report(records))
    return module


__all__ = ["DEPARTURE", "EMBEDDING_RULE", "ParamInit", "SCALES", "format_report", "init_module_", "init_plan"]
