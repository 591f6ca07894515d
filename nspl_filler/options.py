"""The keyword arguments the initialisers share, declared once.

fill_, fill_many_, init_module_, init_plan and materialize_ take the same options for the law
(alpha, ratio, nonlinearity, param), for planning a model (mode, gain, scale, rules, strict) and
for its stream (seed, generator, verbose, stream). Each function states the ones it takes as
``**options: Unpack[...]`` of the TypedDicts below, which type checkers and editors expand
into the keywords, and `takes` writes them with their defaults into the function's signature
for help() and inspect. `resolve` turns a call's keywords into the complete options object
the planner works from: a dict with every key of the TypedDict, the defaults of DEFAULTS
where the call gave none.
"""
from __future__ import annotations

import enum
import inspect
import sys
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, TypedDict, TypeVar, Union

from ._extension import _C
from .rules import Rules
from .stream import GeneratorLike

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # declared for Python 3.10 in pyproject.toml (and a dependency of torch)
    from typing_extensions import Unpack


class VarianceNorm(str, enum.Enum):
    """Caffe's variance_norm: which fan n sets the target variance gain² / n."""

    FAN_IN = "fan_in"
    FAN_OUT = "fan_out"
    AVERAGE = "average"


class LawOptions(TypedDict, total=False):
    """The power law and the gain's nonlinearity: every NSPL initialiser takes these."""

    alpha: float
    ratio: float
    nonlinearity: str
    param: Optional[float]


class PlanOptions(LawOptions, total=False):
    """What init_plan takes besides the module: the law, the fans' mode, the gain, the scale
    and the rules."""

    mode: Union[str, VarianceNorm]
    gain: Optional[float]
    scale: str
    rules: Optional[Rules]
    strict: bool


class InitOptions(PlanOptions, total=False):
    """What init_module_ (and materialize_) take besides the module: the plan's options and
    the stream's."""

    seed: Optional[int]
    generator: GeneratorLike
    verbose: bool
    stream: str


#: Every option's default, in the order signatures list them; alpha and ratio are the core's.
#: Read-only: the signatures and resolve are made from it once.
DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "mode": "fan_in",
    "alpha": _C.DEFAULT_ALPHA,
    "ratio": _C.DEFAULT_RATIO,
    "gain": None,
    "nonlinearity": "relu",
    "param": None,
    "scale": "fan",
    "seed": None,
    "generator": None,
    "rules": None,
    "strict": False,
    "verbose": False,
    "stream": "sequential",
})

Options = TypeVar("Options", LawOptions, PlanOptions, InitOptions)
Function = TypeVar("Function", bound=Callable[..., Any])


def _names(kind: type) -> list[str]:
    return [name for name in DEFAULTS if name in kind.__optional_keys__]


# Each kind's defaults, worked out once: resolve runs on every fill_.
_DEFAULTS_OF = {kind: {name: DEFAULTS[name] for name in _names(kind)} for kind in (LawOptions, PlanOptions, InitOptions)}


def resolve(where: str, given: dict[str, Any], kind: type[Options]) -> Options:
    """The options of a call to `where` that gave the keywords `given` of `kind`: every key of
    `kind`, the default where not given. A keyword `kind` does not have is the TypeError Python
    gives for an unexpected keyword argument."""
    defaults = _DEFAULTS_OF[kind]
    options = {**defaults, **given}
    if len(options) != len(defaults):  # a key of its own among `given`
        unknown = next(name for name in given if name not in defaults)
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown!r}")
    return options  # type: ignore[return-value]


def takes(kind: type) -> Callable[[Function], Function]:
    """Gives the decorated function, which ends in ``**options``, a signature with `kind`'s
    keywords and their defaults in its place, so that help(), inspect and editors that read
    the signature at run time show the keywords themselves."""

    def decorate(function: Function) -> Function:
        signature = inspect.signature(function)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        leading = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        # Keywords the function declares itself stand among the shared ones where DEFAULTS
        # orders them (fill_'s gain and seed), the rest after them.
        keywords = {p.name: p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY}
        for name in _names(kind):
            annotation = kind.__annotations__[name]
            keywords[name] = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=DEFAULTS[name],
                                               annotation=getattr(annotation, "__forward_arg__", annotation))
        order = {name: k for k, name in enumerate(DEFAULTS)}
        ordered = sorted(keywords.values(), key=lambda p: order.get(p.name, len(order)))
        function.__signature__ = signature.replace(parameters=leading + ordered)  # type: ignore[attr-defined]
        return function

    return decorate


__all__ = ["DEFAULTS", "InitOptions", "LawOptions", "PlanOptions", "Unpack", "VarianceNorm", "resolve", "takes"]
