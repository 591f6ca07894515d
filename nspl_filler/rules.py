"""The rule language of init_module_ and init_plan: what a rule may say (a name, a constant, a
dict of options, a callable), what its key may be (a glob, a regex, a module type, a
predicate), the default rule of each role, and the compilation of a call's rules into one
matcher (docs/models.md).

Compiled once per call: the globs become one regular expression whose first matching
alternative is the first glob that matches, the module types a table by the owner's type, so
that finding a parameter's rule costs one regex match and one dict lookup however many rules
there are; regexes and predicates are tried in their order, only where they could still win."""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase, translate
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from torch import Tensor, nn

from .layouts import weight_layout

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

RuleKey = Union[str, re.Pattern[str], type, Callable[[str, Tensor, nn.Module], bool]]
RuleValue = Union[str, float, Mapping[str, Any], Callable[..., Any]]
Rules = Union[Mapping[RuleKey, RuleValue], Sequence[tuple[RuleKey, RuleValue]]]

@dataclass(frozen=True)
class Action:
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
DEFAULT_ACTIONS = {rule: Action(rule) for rule in ("nspl", "zeros", "ones", "keep", "empty")}
FLAT = Action("keep")
# Kept by default: a frozen parameter (requires_grad False: a fixed sinusoidal table, ...), the
# weight of a parametrization without right_inverse (its originals cannot be set from a weight).
FROZEN = Action("keep")
NO_INVERSE = Action("keep")
LABELS = {id(FLAT): "keep (std 0)", id(FROZEN): "keep (frozen)",
           id(NO_INVERSE): "keep (parametrization without right_inverse)"}
#: The default rule of embedding tables: NSPL with gain 1 (no nonlinearity follows a lookup,
#: and a table tied to an output layer is that layer's weight, of fan_in = embedding_dim).
EMBEDDING_RULE = {"init": "nspl", "gain": 1.0, "mode": "fan_in"}
WRITING_RULES = RANDOM_RULES + ("zeros", "ones", "constant")


def _takes_generator(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature take the tensor alone
        return False
    return any(p.name == "generator" or p.kind is p.VAR_KEYWORD for p in parameters)


def parse_rule(value: RuleValue, where: str) -> Action:
    if isinstance(value, str):
        rule = "keep" if value.lower() == "skip" else value.lower()
        if rule not in NAMED_RULES:
            raise ValueError(
                f"nspl_filler: rule {where}: unknown rule {value!r}; use one of {NAMED_RULES + ('skip',)}"
            )
        return Action(rule)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            constant = float(value)
        except OverflowError:
            constant = math.inf
        if not math.isfinite(constant):
            raise ValueError(f"nspl_filler: rule {where}: a constant must be finite, got {value!r}")
        return Action("constant", value=constant)
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
        return Action(rule, options=options)
    if callable(value):
        return Action("custom", function=value, takes_generator=_takes_generator(value))
    raise TypeError(
        f"nspl_filler: rule {where}: a rule is a name, a number, a dict of options or a callable, "
        f"got {type(value).__name__}"
    )


def parse_rules(rules: Optional[Rules]) -> list[tuple[RuleKey, Action]]:
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
        checked.append((key, parse_rule(value, repr(key))))
    return checked


def attribute_of(name: str) -> Optional[str]:
    """The name, in its parent, of the module that holds the parameter of qualified `name`."""
    parts = name.rsplit(".", 2)
    return parts[-2] if len(parts) >= 2 else None


def is_weight(owner: nn.Module, local_name: str, param: Tensor, name: str = "") -> bool:
    """A weight of its module: one its layout names, or, for a module without a layout, a
    parameter of >= 2 dims. A module-type key with a random rule reaches only these, so
    that a rule for nn.Linear does not try to take fans of its biases."""
    return weight_layout(owner, local_name, param.dim(), attribute_of(name)) is not None or (
        weight_layout(owner, "") is None and param.dim() >= 2
    )


def matches(key: RuleKey, action: Action, name: str, local_name: str, param: Tensor, owner: nn.Module) -> bool:
    if isinstance(key, str):
        return fnmatchcase(name, key)
    if isinstance(key, re.Pattern):
        return key.fullmatch(name) is not None
    if isinstance(key, type):
        return isinstance(owner, key) and (action.rule not in RANDOM_RULES or is_weight(owner, local_name, param, name))
    return bool(key(name, param, owner))


_EMBEDDING_ACTION = parse_rule(EMBEDDING_RULE, "for embeddings")


def default_action(role: str) -> Action:
    """NSPL for layer weights, the embedding rule for embedding tables; every other
    parameter (biases, norm layers' weights, position embeddings, layer scales, ...) keeps
    the value its model gave it."""
    if role == "layer":
        return DEFAULT_ACTIONS["nspl"]
    if role == "embedding":
        return _EMBEDDING_ACTION
    return DEFAULT_ACTIONS["keep"]



def _one_regex(indices: Iterable[tuple[int, str]]) -> tuple[Optional[re.Pattern], dict[int, int]]:
    """The globs (index, glob) as one regex of named alternatives, and for each alternative's
    group the index of its glob (not to be changed: a table called again gets the same one);
    (None, {}) for no glob."""
    return _regex_of(tuple(indices))


@functools.lru_cache(maxsize=128)
def _regex_of(indices: tuple[tuple[int, str], ...]) -> tuple[Optional[re.Pattern], dict[int, int]]:
    globs = [f"(?P<r{k}>{translate(key)})" for k, key in indices]
    if not globs:
        return None, {}
    regex = re.compile("|".join(globs))
    # The alternative's own group closes after any group inside it: it is the match's lastindex.
    return regex, {index: int(name[1:]) for name, index in regex.groupindex.items()}


class CompiledRules:
    """A call's rules, compiled once: first(...) gives the index of the first rule that a
    parameter matches, as trying matches() on each rule in order would, and records that the
    rule was used.

    The globs are one regex of named alternatives, ``(?P<r3>glob 3)|(?P<r7>glob 7)|...``:
    a regex tries its alternatives in order, so the one that matches is the first matching
    glob, the alternative's own group the last one closed. The module-type keys are resolved once per owner type into the
    (index, random) pairs of the types it is an instance of. Regexes and predicates are tried
    in order below the best index found so far, so a predicate is called exactly where the
    one-by-one search would call it."""

    __slots__ = ("actions", "keys", "used", "_globs", "_glob_rule", "_free", "_digits", "_patterns", "_types",
                 "_predicates", "_by_type", "per_row", "digit_free")

    def __init__(self, rule_list: Sequence[tuple[RuleKey, Action]]) -> None:
        self.keys = [key for key, _ in rule_list]
        self.actions = [action for _, action in rule_list]
        self.used = [False] * len(rule_list)
        self._globs, self._glob_rule = _one_regex((k, key) for k, key in enumerate(self.keys) if isinstance(key, str))
        self._patterns = [(k, key) for k, key in enumerate(self.keys) if isinstance(key, re.Pattern)]
        self._types = [(k, key, action.rule in RANDOM_RULES) for k, (key, action) in enumerate(rule_list)
                       if isinstance(key, type)]
        self._predicates = [(k, key) for k, key in enumerate(self.keys)
                            if not isinstance(key, (str, re.Pattern, type))]
        self._by_type: dict[type, list[tuple[int, bool]]] = {}
        # A predicate is called parameter by parameter, only where it could still win (first).
        self.per_row = bool(self._predicates)
        # Whether every name key is a glob of '*' and characters other than digits and '\x01'
        # (and no regex): then names that differ only in their runs of digits match the same keys,
        # and one name answers for all of them (plan.py's kinds share a digit-free name).
        free = [isinstance(key, str) and not any(c.isdigit() or c in "?[]\x01" for c in key) for key in self.keys]
        self.digit_free = not self._patterns and all(free[k] for k, key in enumerate(self.keys) if isinstance(key, str))
        # The globs in two regexes: those that digit-free names answer for, and the others.
        self._free = _one_regex((k, key) for k, key in enumerate(self.keys) if free[k])
        self._digits = _one_regex((k, key) for k, key in enumerate(self.keys) if isinstance(key, str) and not free[k])

    def first(self, name: str, local_name: str, param: Tensor, owner: nn.Module) -> int:
        """The index of the first rule that the parameter `name` (own name `local_name` in
        `owner`) matches, len(rules) if none does. Does not mark it used (see use)."""
        best = len(self.keys)
        if self._globs is not None:
            match = self._globs.fullmatch(name)
            if match is not None:
                best = self._glob_rule[match.lastindex]
        for k, pattern in self._patterns:
            if k >= best:
                break
            if pattern.fullmatch(name) is not None:
                best = k
                break
        if self._types:
            best = self.type_index(local_name, param, owner, name, best)
        for k, predicate in self._predicates:
            if k >= best:
                break
            if predicate(name, param, owner):
                best = k
                break
        return best

    def name_indices(self, names: Sequence[str], free: bool) -> list[int]:
        """For each of `names`, the index of the first of some glob and regex keys that it
        matches, len(rules) if none does (first() for those keys alone): with `free`, the
        digit-free globs (see digit_free); without, every other glob and the regexes."""
        none = len(self.keys)
        globs, rule = self._free if free else self._digits
        if globs is None:
            found = [none] * len(names)
        else:
            found = [none if m is None else rule[m.lastindex] for m in map(globs.fullmatch, names)]
        if free:
            return found
        for k, pattern in self._patterns:
            match = pattern.fullmatch
            found = [k if k < best and match(name) is not None else best for name, best in zip(names, found)]
        return found

    def type_index(self, local_name: str, param: Tensor, owner: nn.Module, name: str,
                   below: Optional[int] = None) -> int:
        """The index of the first module-type key below `below` (default: every key) that the
        parameter matches, `below` if none does (first() without names and predicates). The
        keys an owner's type is an instance of are found once per type."""
        best = len(self.keys) if below is None else below
        kinds = self._by_type.get(type(owner))
        if kinds is None:
            kinds = self._by_type[type(owner)] = [(k, random) for k, key, random in self._types
                                                  if isinstance(owner, key)]
        for k, random in kinds:
            if k >= best:
                break
            if not random or is_weight(owner, local_name, param, name):
                return k
        return best

    def match(self, name: str, local_name: str, param: Tensor, owner: nn.Module) -> Optional[Action]:
        """The action of the first rule that the parameter matches, marked used; None if none."""
        return self.use(self.first(name, local_name, param, owner))

    def use(self, index: int) -> Optional[Action]:
        """The action of rule `index`, marked used; None for len(rules) (no rule)."""
        if index == len(self.keys):
            return None
        self.used[index] = True
        return self.actions[index]

    def unmatched(self) -> list[RuleKey]:
        return [key for key, used in zip(self.keys, self.used) if not used]
