"""Planning for init_module_ and init_plan: a Plan of a model, a row per parameter (its names,
role, rule, target std and the op arguments that give it), from the rule language of
rules.py. The plan is written by module.py; nothing here writes a parameter (but for the
stand-in tensor of a parametrization, see _through_parametrizations).

Its cost per parameter does not grow with the model (docs/benchmarks.md, planning at scale):
one pass over the module tree, rules compiled once per call (rules.py), what a parameter's
(owner type, own name, shape) decides worked out once and shared, a parameter a few list
slots in the Plan's columns, and the cyclic collector paused meanwhile (collector_paused)."""
from __future__ import annotations

import dataclasses
import gc
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._extension import _C
from .init import _mode_name, _real, compute_fans
from .layouts import Layout, is_norm, weight_layout
from .options import PlanOptions, Unpack, resolve, takes
from .rules import (
    DEFAULT_ACTIONS, FLAT, FROZEN, LABELS, NO_INVERSE, RANDOM_RULES, SCALES, WRITING_RULES,
    Action, CompiledRules, attribute_of, default_action, parse_rules,
)
from .sharded import PLAIN_TYPES, is_dtensor

@dataclass(frozen=True, slots=True)
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


def _set_record_state(self: ParamInit, state: Union[list, tuple, dict]) -> None:
    # The fields' values in order (the pickles of a slotted record), or, from a pickle made
    # while the records had a __dict__, that dict.
    names = [f.name for f in dataclasses.fields(self)]
    values = [state[name] for name in names] if isinstance(state, dict) else state
    for name, value in zip(names, values, strict=True):
        object.__setattr__(self, name, value)


# Set after the decorator: on Python 3.10, dataclass(frozen=True, slots=True) replaces a
# __setstate__ defined in the class body with its own, which reads only the list of values.
ParamInit.__setstate__ = _set_record_state


# ParamInit's fields, in order (Plan.report's common_of gives their values so); Plan.report
# sets their slots without the frozen dataclass's __init__.
_RECORD_FIELDS = tuple(ParamInit.__dataclass_fields__)
assert _RECORD_FIELDS == ("name", "shape", "rule", "fan", "std", "role", "aliases", "own_std")


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


#: nn.Embedding(buckets, heads) whose values are added to attention scores.
BIAS_TABLES = ("relative_attention_bias",)
# The names in the parent that decide a role (see layouts.is_experts, is_router).
_ATTRIBUTES = frozenset(BIAS_TABLES + ("experts", "router"))
# The modules whose running statistics init_module_ resets (BatchNorm*, SyncBatchNorm, InstanceNorm*).
_NORMS = (nn.modules.batchnorm._NormBase,)


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


def _invertible(plist: nn.Module) -> bool:
    return all(hasattr(p, "right_inverse") for p in plist)


def _parametrizations(plist: nn.Module) -> str:
    return ", ".join(type(p).__name__ for p in plist)


def evaluated(plist: nn.Module) -> Tensor:
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
    """The rows of _with_aliases as (aliases, tensor, through, frozen) for Planner.entry:
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
            like = plist.original if plist.is_tensor and not plist.unsafe else evaluated(plist)
            stand_in = torch.empty_like(like, requires_grad=False)
        effective = [(f"{parent_path}.{tensor_name}" if parent_path else tensor_name, tensor_name, parent)]
        yield (effective + [a for names, _ in group for a in names], stand_in, plist,
               not any(t.requires_grad for _, t in group))


class Scaled:
    """The numbers a random rule gives a parameter: `fan` (n) and `std` (the target); `scale`
    the op's std (normal) or bound (uniform); `gain` the gain that the op, taking fans from the
    shape by `draw.mode` (or the explicit `fans`), turns into `std`. One object serves every
    parameter of the same (rule, shape, layout, groups): a model repeats a few of them."""

    __slots__ = ("fan", "std", "draw", "scale", "gain", "fans")

    def __init__(self, fan: Optional[float], std: Optional[float], draw: Optional[_Draw] = None,
                 scale: Optional[float] = 0.0, gain: float = 0.0,
                 fans: Optional[tuple[Optional[float], Optional[float]]] = None) -> None:
        self.fan, self.std, self.draw, self.scale, self.gain, self.fans = fan, std, draw, scale, gain, fans


# What the rules that draw nothing give: constants have std 0, the others (keep, custom) none.
_UNSCALED = Scaled(None, None)
_CONSTANT = Scaled(None, 0.0)
_CONSTANT_RULES = frozenset(("zeros", "ones", "constant"))
_RANDOM = frozenset(RANDOM_RULES)
_WRITING = frozenset(WRITING_RULES)
# Parameters of these types take the planner's short path (a DTensor, FSDP's flat parameter (an
# nn.Parameter named _flat_param) or a lazy module's uninitialised one are checked in Planner.entry).
_PLAIN = frozenset(PLAIN_TYPES)
KEEP = DEFAULT_ACTIONS["keep"]


class Entry:
    """One parameter of the plan: its first name, its other names (`aliases`), the tensor, the
    module that owns it, its role, its rule (`action`) and what the rule gives it (`scaled`).
    `key` and `offset` place it in the stream once module.py has chosen them; `through` is the
    ParametrizationList whose right_inverse takes `tensor` (a stand-in for the effective
    weight) once it is written, None for a parameter written in place."""

    __slots__ = ("name", "aliases", "tensor", "owner", "role", "action", "scaled", "through", "key", "offset")

    def __init__(self, name: str, aliases: tuple[str, ...], tensor: Tensor, owner: nn.Module, role: str,
                 action: Action, scaled: Scaled, through: Optional[nn.Module] = None) -> None:
        self.name, self.aliases, self.tensor, self.owner, self.role = name, aliases, tensor, owner, role
        self.action, self.scaled, self.through = action, scaled, through

    def record(self, own_std: bool = False) -> ParamInit:
        """The report's row; `own_std`: measure the std the tensor has now (for init_plan)."""
        label = LABELS.get(id(self.action)) or self.action.label()
        draw = self.scaled.draw
        if draw is not None and draw.scale == "keep" and "scale" not in self.action.options:
            label = f"{label} (own std)"
        if self.through is not None and self.action.rule != "keep":
            label = f"{label} (through right_inverse)"
        own = None
        if own_std and self.action.rule in RANDOM_RULES:
            own = _measured_std(evaluated(self.through) if self.through is not None else self.tensor)
        return ParamInit(self.name, tuple(self.tensor.shape), label, self.scaled.fan, self.scaled.std, self.role,
                         self.aliases, own)


class Plan:
    """The plan of one call, one column per field: parameter k is names[k] (its first name),
    tensors[k], owners[k], with (role, action, scaled) = decisions[k], a tuple that
    parameters deciding alike share; `aliases` and `through` (see Entry) hold the few
    parameters that have them, by index; `statistics` the modules (by id) whose running
    statistics module.py resets. Columns keep a parameter to a few list slots: a model of 10^5
    parameters plans in one pass without an object per parameter."""

    __slots__ = ("names", "tensors", "owners", "decisions", "aliases", "through", "statistics", "plain", "meta",
                 "asked")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.tensors: list[Tensor] = []
        self.owners: list[nn.Module] = []
        self.decisions: list[tuple[str, Action, Scaled]] = []
        self.aliases: dict[int, tuple[str, ...]] = {}
        self.through: dict[int, nn.Module] = {}
        self.statistics: dict[int, nn.Module] = {}
        # Whether every tensor is a plain Parameter or Tensor (no DTensor: no shard to look up),
        # and whether, besides, the walk found every one on meta (no values to measure).
        self.plain = True
        self.meta = False
        # Whether the rules asked predicates about the parameters (whose answers may depend on
        # the tensors themselves, not only on their names, owners and shapes).
        self.asked = False

    def __len__(self) -> int:
        return len(self.names)

    def add(self, entry: Entry) -> None:
        k = len(self.names)
        self.names.append(entry.name)
        self.tensors.append(entry.tensor)
        self.plain = self.plain and type(entry.tensor) in _PLAIN
        self.owners.append(entry.owner)
        self.decisions.append((entry.role, entry.action, entry.scaled))
        if entry.aliases:
            self.aliases[k] = entry.aliases
        if entry.through is not None:
            self.through[k] = entry.through

    def entry(self, k: int) -> Entry:
        role, action, scaled = self.decisions[k]
        return Entry(self.names[k], self.aliases.get(k, ()), self.tensors[k], self.owners[k], role, action, scaled,
                     self.through.get(k))

    def entries(self) -> list[Entry]:
        return [self.entry(k) for k in range(len(self.names))]

    def records(self, own_std: bool = False) -> list[ParamInit]:
        """The report's rows (Entry.record); `own_std`: measure the std each drawn tensor has now."""
        return self.report(own_std)[0]

    def report(self, own_std: bool = False) -> tuple[list[ParamInit], list[int]]:
        """The report's rows (Entry.record) and the indices of those whose own std was measured
        (`own_std`: measure, for init_plan), made in C++ without an Entry or a ParamInit.__init__
        per parameter: what a row's decision gives (label, fan, std, role, and the shape, which
        the rows of one decision share) is worked out once per decision. A plan of meta tensors
        has no values to measure: then no tensor is read."""
        own_std = own_std and not self.meta

        def common_of(k: int) -> tuple[tuple, bool]:  # row k, the first of its decision: its fields' values
            role, action, scaled = self.decisions[k]
            record = Entry(self.names[k], (), self.tensors[k], None, role, action, scaled).record()
            return (record.name, record.shape, record.rule, record.fan, record.std, record.role, (), None), \
                own_std and action.rule in RANDOM_RULES

        return _C.plan_records(ParamInit, _RECORD_FIELDS, self.names, self.tensors, self.decisions, self.aliases,
                               self.through, common_of, lambda k: self.entry(k).record(own_std),
                               _measured_std if own_std else None, PLAIN_TYPES)


# One parameter as the walk finds it: (qualified name, own name, owning module, tensor, the
# owner's name in its parent or None at the root, its kind (see _Columns)).
_Row = tuple[str, str, nn.Module, Tensor, Optional[str], int]


class _Columns:
    """The parameters of a module tree as _C.walk_modules gives them (csrc/module_walk.h): row k
    is parameter tensors[k], under its first qualified name names[k] (own name locals[k]) in
    owners[k], whose name in its parent is parents[k]; kinds[k] the index in `examples` (the
    first row of each kind) of what decides its role, fans and default rule, -1 for a row
    planned on its own; `tied` the other names of tied rows; `types` the type of every module
    met, once each; `norms` every module met whose running statistics init_module_ resets
    (BatchNorm, InstanceNorm), which the walk collects so that no pass over the modules follows;
    `plain` whether every tensor is a plain Parameter or Tensor, `meta` whether every one is
    also on the meta device."""

    __slots__ = ("names", "locals", "tensors", "owners", "parents", "kinds", "examples", "tied", "types", "norms",
                 "plain", "meta")

    def __init__(self, module: nn.Module) -> None:
        (self.names, self.locals, self.tensors, self.owners, self.parents, self.kinds, self.examples, self.tied,
         self.types, self.norms, self.plain, self.meta) = _C.walk_modules(module, _ATTRIBUTES, PLAIN_TYPES, _NORMS)

    def parametrized(self) -> bool:
        """Whether any module is a ParametrizationList (torch.nn.utils.parametrize)."""
        from torch.nn.utils.parametrize import ParametrizationList

        return any(issubclass(kind, ParametrizationList) for kind in self.types)

    def statistics(self, into: dict[int, nn.Module]) -> None:
        """Adds to `into` (by id) every module whose running statistics init_module_ resets
        (BatchNorm, InstanceNorm)."""
        for m in self.norms:
            into.setdefault(id(m), m)

    def rows(self) -> list[_Row]:
        return list(zip(self.names, self.locals, self.owners, self.tensors, self.parents, self.kinds))


def _walk(module: nn.Module, statistics: Optional[dict[int, nn.Module]] = None
          ) -> tuple[list[_Row], dict[int, list[tuple[str, str, nn.Module]]], bool]:
    """One pass over the module tree, in module.named_modules(remove_duplicate=False) order:
    (rows, tied, parametrized). A row per parameter, under its first name (as
    module.named_parameters() gives it); `tied` maps a row's index to the other (qualified
    name, own name, owner) of a parameter that several modules hold (tied weights, shared
    modules); `parametrized`: whether any module is a ParametrizationList. Adds to
    `statistics` (by id) every module whose running statistics init_module_ resets."""
    columns = _Columns(module)
    if statistics is not None:
        columns.statistics(statistics)
    return columns.rows(), columns.tied, columns.parametrized()


def _with_aliases(rows: list[_Row], tied: dict[int, list[tuple[str, str, nn.Module]]]
                  ) -> Iterator[tuple[list[tuple[str, str, nn.Module]], Tensor]]:
    """([(qualified name, own name, owning module), ...], parameter) per parameter, its first
    name first."""
    for k, (name, local_name, owner, param, _, _) in enumerate(rows):
        yield [(name, local_name, owner)] + tied.get(k, []), param


class _Template:
    """What the parameters of one kind (_Columns) share: role, layout, groups,
    shape, the default rule of the role, and the decisions of the rules met so far (by id)."""

    __slots__ = ("role", "layout", "groups", "shape", "action", "decided")


class Planner:
    """Turns (call arguments, rules) into a Plan."""

    def __init__(self, options: PlanOptions) -> None:
        # What a rule's own options (a dict rule's) take precedence over.
        self.defaults = {k: options[k] for k in ("mode", "alpha", "ratio", "gain", "nonlinearity", "param", "scale")}
        self.draws: dict[int, _Draw] = {}
        self.draw_of(DEFAULT_ACTIONS["nspl"])  # checks the call's own arguments even where no rule is random
        self.rules = CompiledRules(parse_rules(options["rules"]))
        # A scale "keep" decision reads the tensor's values: then every row is decided on its own.
        self.per_row = options["scale"] == "keep" or any(action.options.get("scale") == "keep" for action in self.rules.actions)
        # Models repeat a few module types, names and shapes many times: each is worked out once.
        self.fans_of: dict[tuple, tuple[float, float]] = {}
        self.roles: dict[tuple, tuple[str, Optional[Layout]]] = {}
        self.scaled_of: dict[tuple, Scaled] = {}
        self.by_role = {role: default_action(role) for role in ("layer", "embedding", "norm", "other")}

    def draw_of(self, action: Action) -> _Draw:
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

    def action_of(self, aliases: list[tuple[str, str, nn.Module]], tensor: Tensor) -> Optional[Action]:
        """The rule of the first key that any of the parameter's names matches, None if none."""
        best = len(self.rules.keys)
        for name, local, owner in aliases:
            best = min(best, self.rules.first(name, local, tensor, owner))
        return self.rules.use(best)

    def shape_fans(self, shape: tuple[int, ...], layout: Optional[Layout] = None, groups: int = 1
                   ) -> tuple[float, float]:
        """(fan_in, fan_out) of `shape` by `layout` (None: torch's convention), for a module
        of `groups` groups."""
        key = (shape, layout, groups)
        if key not in self.fans_of:
            self.fans_of[key] = compute_fans(shape) if layout is None else layout.fans(shape, groups)
        return self.fans_of[key]

    def role_of(self, owner: nn.Module, local_name: str, dim: int, attribute: Optional[str]
                ) -> tuple[str, Optional[Layout]]:
        """The role and layout of parameter `local_name` (of `dim` dims) of `owner`, whose name
        in its parent is `attribute`."""
        if owner._forward_pre_hooks:  # an old-style weight norm is a hook of the instance
            return _role(owner, local_name, dim, attribute)
        # The name in the parent matters only for the few names _role looks at: keep it out of
        # the key otherwise (layers.0, layers.1, ... would each be a key of their own).
        key = (type(owner), local_name, dim, attribute if attribute in _ATTRIBUTES else None,
               dim == 3 and getattr(owner, "is_transposed", None) is True)
        found = self.roles.get(key)
        if found is None:
            found = self.roles[key] = _role(owner, local_name, dim, attribute)
        return found

    def plan(self, columns: _Columns, into: Plan) -> Plan:
        """The plan of the walk's `columns` (no parametrizations among them). The decision of a
        row is worked out once per (kind, rule): its kind (_Columns) decides its role, layout
        and default rule (_Template), the names decide its rule; a row the walk could not give
        a kind (tied, hooks, DTensor, ...), and every row where a rule's scale is "keep" or a
        predicate is among the rules, is planned on its own, in order, so that an error names
        the first parameter that fails as the one-by-one plan would."""
        names, kinds, examples = columns.names, columns.kinds, columns.examples
        rules = self.rules
        width = len(rules.keys) + 1  # a row's key: kind·width + the index of its rule (len(keys): none)
        templates = [self._template(columns.owners[e], columns.locals[e], columns.tensors[e].shape,
                                    columns.parents[e]) for e in examples]
        if self.per_row or rules.per_row:
            keys = [-1 - k for k in range(len(names))]
        elif rules.keys:
            by_type = [rules.type_index(columns.locals[e], columns.tensors[e], columns.owners[e], names[e])
                       for e in examples]
            # The rows of a kind share their names but for the digits, and so what the digit-free
            # globs (rules.digit_free) make of them: those are matched once per kind.
            by_kind = [min(n, t) for n, t in zip(rules.name_indices([names[e] for e in examples], free=True), by_type)]
            if rules.digit_free and -1 not in kinds:  # the same as below, a pass in C
                keys = list(map([kind * width + index for kind, index in enumerate(by_kind)].__getitem__, kinds))
            elif rules.digit_free:
                keys = [kind * width + by_kind[kind] if kind >= 0 else -1 - k for k, kind in enumerate(kinds)]
            else:  # the other globs and the regexes, name by name
                by_name = rules.name_indices(names, free=False)
                keys = [kind * width + min(n, by_kind[kind]) if kind >= 0 else -1 - k
                        for k, (kind, n) in enumerate(zip(kinds, by_name))]
        else:
            keys = ([kind * width + width - 1 if kind >= 0 else -1 - k for k, kind in enumerate(kinds)] if -1 in kinds
                    else list(map((width - 1).__add__, map(width.__mul__, kinds))))  # the same, a pass in C
        into.names, into.tensors, into.owners = names, columns.tensors, columns.owners
        decided: dict[int, object] = dict.fromkeys(keys)
        for key in decided:
            if key < 0:
                decided[key] = self._row(columns, -1 - key, templates, into)
                continue
            kind, index = divmod(key, width)
            template = templates[kind]
            action = rules.use(index)
            if action is None:
                action = template.action
                if action is not KEEP and not columns.tensors[examples[kind]].requires_grad:
                    action = FROZEN
            decision = template.decided.get(id(action))
            if decision is None:
                example = examples[kind]
                try:
                    decision = self._decide(names[example], template, action, columns.tensors[example])
                except ValueError:
                    first = keys.index(key)  # the error names the first parameter of this key
                    self._decide(names[first], template, action, columns.tensors[first])
                    raise
            decided[key] = decision
        into.decisions = list(map(decided.__getitem__, keys))
        into.plain, into.meta = columns.plain, columns.meta
        return into

    def _row(self, columns: _Columns, k: int, templates: list, into: Plan) -> tuple[str, Action, Scaled]:
        """The decision of row k planned on its own; records its aliases and owner in `into`."""
        name, local_name, owner, tensor = columns.names[k], columns.locals[k], columns.owners[k], columns.tensors[k]
        kind = columns.kinds[k]
        if kind < 0:
            entry = self.entry([(name, local_name, owner)] + columns.tied.get(k, []), tensor,
                               attribute=columns.parents[k])
            if entry.aliases:
                into.aliases[k] = entry.aliases
            into.owners[k] = entry.owner
            return entry.role, entry.action, entry.scaled
        template = templates[kind]
        action = self.rules.match(name, local_name, tensor, owner) if self.rules.keys else None
        if action is None:
            action = template.action
            if action is not KEEP and not tensor.requires_grad:
                action = FROZEN
        decision = template.decided.get(id(action))
        return decision if decision is not None else self._decide(name, template, action, tensor)

    def _template(self, owner: nn.Module, local_name: str, shape: torch.Size, attribute: Optional[str]
                  ) -> _Template:
        template = _Template()
        template.role, template.layout = self.role_of(owner, local_name, len(shape), attribute)
        template.groups = 1 if template.layout is None else template.layout.groups_of(owner)
        template.shape = tuple(shape)
        template.action = self.by_role[template.role]
        template.decided = {}
        return template

    def _decide(self, name: str, template: _Template, action: Action, tensor: Tensor) -> tuple[str, Action, Scaled]:
        """The (role, action, scaled) of parameter `name` of `template` under rule `action`;
        kept for the template's other parameters unless it depends on the tensor's values
        (scale "keep")."""
        rule = action.rule
        if rule in _WRITING and math.prod(template.shape) == 0:
            decision = (template.role, DEFAULT_ACTIONS["empty"], _UNSCALED)
        elif rule not in _RANDOM:
            decision = (template.role, action, _CONSTANT if rule in _CONSTANT_RULES else _UNSCALED)
        else:
            decision = (template.role, *self.scaled(name, action, template.shape, tensor, template.layout,
                                                    template.groups))
            if self.draw_of(action).scale == "keep":
                return decision
        template.decided[id(action)] = decision
        return decision

    def entry(self, aliases: list[tuple[str, str, nn.Module]], tensor: Tensor, through: Optional[nn.Module] = None,
              frozen: Optional[bool] = None, attribute: Union[str, None, bool] = False) -> Entry:
        """The entry of one parameter (or, with `through`, of the weight of that
        ParametrizationList: `tensor` stands in for it, `aliases` name it first, then its
        originals; `frozen`: whether the originals are). `attribute`: the first owner's name
        in its parent where the caller knows it (False: from the qualified names)."""
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
        roles = [self.role_of(owner, local, tensor.dim(),
                              attribute if k == 0 and attribute is not False else attribute_of(qualified))
                 for k, (qualified, local, owner) in enumerate(aliases)]
        chosen = next((k for k, (role, _) in enumerate(roles) if role == "embedding"),
                      next((k for k, (_, layout) in enumerate(roles) if layout is not None), 0))
        (role, layout), owner = roles[chosen], aliases[chosen][2]
        action = self.action_of(aliases, tensor) if self.rules.keys else None
        if action is None:
            action = self.by_role[role]
            if action.rule != "keep":
                if (not tensor.requires_grad) if frozen is None else frozen:
                    action = FROZEN
                elif through is not None and not _invertible(through):
                    action = NO_INVERSE
        elif through is not None and action.rule != "keep" and not _invertible(through):
            raise ValueError(
                f"nspl_filler: parameter {name!r} (rule {action.label()!r}) is the weight of a parametrization "
                f"without right_inverse ({_parametrizations(through)}), so its originals cannot be set from a "
                "value; give it the rule 'keep', or initialise its originals by their own names"
            )
        if action.rule in _WRITING and tensor.numel() == 0:
            action = DEFAULT_ACTIONS["empty"]
        if through is not None and action.rule in _RANDOM and self.draw_of(action).scale == "keep":
            with torch.no_grad():
                tensor.copy_(evaluated(through))  # scale "keep" measures the weight the model uses
        if action.rule in _RANDOM:
            groups = 1 if layout is None else layout.groups_of(owner)
            action, scaled = self.scaled(name, action, tuple(tensor.shape), tensor, layout, groups)
        else:
            scaled = _CONSTANT if action.rule in _CONSTANT_RULES else _UNSCALED
        return Entry(name, tuple(n for n, _, _ in aliases[1:]), tensor, owner, role, action, scaled, through)

    def scaled(self, name: str, action: Action, shape: tuple[int, ...], tensor: Tensor, layout: Optional[Layout],
               groups: int) -> tuple[Action, Scaled]:
        """The rule (FLAT for scale "keep" on a tensor of std 0) and the numbers of parameter
        `name` (of `shape`) under random rule `action`; ValueError naming the parameter."""
        draw = self.draw_of(action)
        key = (id(action), shape, layout, groups)
        found = self.scaled_of.get(key) if draw.scale == "fan" else None
        if found is not None:
            return action, found
        try:
            action, found = self._scaled(action, draw, shape, layout, groups, tensor)
        except ValueError as error:
            reason = str(error).removeprefix("nspl_filler: ")
            raise ValueError(f"nspl_filler: parameter {name!r} (rule {action.label()!r}): {reason}") from None
        if draw.scale == "fan":
            self.scaled_of[key] = found
        return action, found

    def _scaled(self, action: Action, draw: _Draw, shape: tuple[int, ...], layout: Optional[Layout], groups: int,
                tensor: Tensor) -> tuple[Action, Scaled]:
        """Fans, target std and op arguments of a parameter of `shape` with random rule `action`."""
        fan_in, fan_out = draw.fan_in, draw.fan_out
        if fan_in is None or fan_out is None:
            own = self.shape_fans(shape, layout, groups) if layout is not None or len(shape) >= 2 else None
            if own is not None:
                fan_in = own[0] if fan_in is None else fan_in
                fan_out = own[1] if fan_out is None else fan_out
        needed = {"fan_in": ("fan_in",), "fan_out": ("fan_out",), "average": ("fan_in", "fan_out")}[draw.mode]
        missing = [k for k in needed if {"fan_in": fan_in, "fan_out": fan_out}[k] is None]
        # An explicit std (normal) or bound (uniform) is the whole scale: no fan is needed.
        explicit_scale = ((action.rule == "normal" and draw.std is not None)
                          or (action.rule == "uniform" and draw.bound is not None))
        if missing and not explicit_scale:
            raise ValueError(
                f"a tensor of shape {shape} has no fans: give the rule {' and '.join(missing)} "
                f"(e.g. {{'{missing[0]}': ...}})"
            )
        n = None if missing else {"fan_in": fan_in, "fan_out": fan_out, "average": None}[draw.mode]
        if n is None and not missing:
            n = (fan_in + fan_out) / 2
        if draw.scale == "keep":
            std = _measured_std(tensor)
            if std is not None and not math.isfinite(std):
                raise ValueError("scale 'keep' needs its values, and the tensor holds NaN or infinity")
            if std == 0.0:
                return FLAT, _UNSCALED
        else:
            std = None if n is None else draw.gain / math.sqrt(n)
        scale: Optional[float] = 0.0
        gain = 0.0
        fans = None
        if action.rule == "normal":
            std = scale = std if draw.std is None else draw.std
        elif action.rule == "uniform":
            scale = (None if std is None else math.sqrt(3.0) * std) if draw.bound is None else draw.bound
            std = None if scale is None else scale / math.sqrt(3.0)
        else:
            explicit = draw.fan_in is not None or draw.fan_out is not None
            if explicit:
                fans = (fan_in, fan_out)
            own_n = n if explicit else self.mode_fan(shape, draw.mode)
            # The op takes n from the shape (torch's layout) or the explicit fans; the gain
            # that gives the std is draw.gain itself wherever those n agree (bit for bit
            # fill_'s values), else std·sqrt(op's n).
            if draw.scale == "fan" and own_n == n:
                gain = draw.gain
            elif std is not None:
                gain = std * math.sqrt(own_n)
        return action, Scaled(n, std, draw, scale, gain, fans)

    def mode_fan(self, shape: tuple[int, ...], mode: str) -> float:
        fan_in, fan_out = self.shape_fans(shape)
        return {"fan_in": fan_in, "fan_out": fan_out, "average": (fan_in + fan_out) / 2}[mode]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (and back on after, if it was on).
    Planning allocates a few objects per parameter, none in a cycle; with the collector on,
    they trigger collections that scan every object of the model, so that a model of 10^5
    parameters paid for each parameter in proportion to the model's size."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan(module: nn.Module, options: PlanOptions) -> Plan:
    """The Plan of `module` by the complete `options` (options.resolve): a parameter per row,
    in named_parameters() order (a tied parameter once, under its first name), with the
    warnings and errors of init_module_'s rules."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"nspl_filler: module must be a torch.nn.Module, got {type(module).__name__}")
    strict = options["strict"]
    if not isinstance(strict, bool):
        raise TypeError(f"nspl_filler: strict must be a bool, got {type(strict).__name__} {strict!r}")
    planner = Planner(options)
    result = Plan()
    columns = _Columns(module)
    columns.statistics(result.statistics)
    if columns.parametrized():
        for row in _through_parametrizations(module, _with_aliases(columns.rows(), columns.tied)):
            result.add(planner.entry(*row))
    else:
        planner.plan(columns, result)
    result.asked = planner.rules.per_row
    # The distinct decisions (rows deciding alike share one tuple), found by a pass in C.
    actions = {id(action): action for _, action, _ in dict(zip(map(id, result.decisions), result.decisions)).values()}
    if id(FROZEN) in actions and not any(action.rule in _WRITING for action in actions.values()):
        warnings.warn(
            f"nspl_filler: every parameter of the {type(module).__name__} that init_module_ would fill is frozen "
            "(requires_grad False), and frozen parameters are kept: nothing is written. Unfreeze them first "
            "(module.requires_grad_(True)), or give them rules", UserWarning, stacklevel=3)
    uninvertible = [f"{result.names[k]} ({_parametrizations(through)})" for k, through in result.through.items()
                    if result.decisions[k][1] is NO_INVERSE]
    if uninvertible:
        warnings.warn(
            f"nspl_filler: {uninvertible} are weights of parametrizations without right_inverse, so they cannot "
            "be set from a value: they are kept as they are (rule 'keep' in the report); initialise their "
            "originals by their own names if they need it", UserWarning, stacklevel=3)
    unmatched = planner.rules.unmatched()
    if unmatched:
        message = (f"nspl_filler: rules {unmatched!r} match no parameter of the {type(module).__name__} "
                   "that an earlier rule does not take (the first rule that matches a parameter wins; "
                   "a tied parameter answers to each of its names; a module-type key with a random rule "
                   "reaches only that module's weights)")
        if strict:
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return result


@takes(PlanOptions)
def init_plan(module: nn.Module, **options: Unpack[PlanOptions]) -> list[ParamInit]:
    """The report of what init_module_ with these arguments would do, one ParamInit per
    parameter in named_parameters order, without touching the module.

    Each parameter that a random rule draws also gets `own_std`, the std its model gave it;
    where the planned std and it differ by more than DEPARTURE (3x) either way, a UserWarning
    lists those parameters: the model's own recipe departs from fan scaling there (T5 folds
    1/sqrt(d_kv) into its queries' init, GPT-2 scales its residual projections, zero-initialised
    layers), and scale="keep" or a rule keeps it. Kept parameters and meta tensors are not
    measured."""
    the_options = resolve("init_plan", options, PlanOptions)
    with collector_paused():
        records, measured = plan(module, the_options).report(own_std=True)
        # The plan goes before the collector is back: its columns hold every parameter, which
        # its first pass (at the next allocation) would otherwise scan.
    departures = [records[k] for k in measured if _departs(records[k])]
    if departures:
        shown = "; ".join(f"{r.name}: own {r.own_std:.3g}, planned {r.std:.3g}" for r in departures[:8])
        more = f"; and {len(departures) - 8} more" if len(departures) > 8 else ""
        warnings.warn(
            f"nspl_filler: {len(departures)} of {len(measured)} drawn parameters "
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


