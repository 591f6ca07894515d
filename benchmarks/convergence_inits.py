"""The initialisers the convergence study compares, by name, all applied through
nspl_filler.init_module_ so that everything but the weights is treated alike:

- every parameter with >= 2 dims (linear and conv weights, the output layer's included)
  gets the named initialiser, drawn from a stream fixed by the run's seed;
- biases are 0; BatchNorm weights 1 and biases 0, running statistics reset.

Names:
- ``nspl``: nspl_filler's defaults (alpha = 1, ratio = 100), fan_in, gain sqrt(2);
- ``nspl_a<alpha>_r<ratio>``: the same with another alpha and ratio (``nspl_a2_r10``);
- ``he_normal``: kaiming_normal_(fan_in, relu): N(0, 2 / fan_in);
- ``he_uniform``: kaiming_uniform_(a=0, fan_in, relu): U(±sqrt(6 / fan_in)), the same variance
  (torch's default a = sqrt(5) would be a third of it, so a = 0 is passed);
- ``xavier_uniform``: xavier_uniform_ with gain 1 (Glorot's own): variance
  2 / (fan_in + fan_out), about half the He variance in a square ReLU layer;
- ``orthogonal``: orthogonal_ with gain sqrt(2) (the ReLU gain, so that its scale matches
  He's; Saxe et al.'s gain 1 would halve the signal's power at every ReLU layer).
"""
from __future__ import annotations

import math
import re
from typing import Callable, Optional

import torch
from torch import nn

import nspl_filler

REFERENCE = "he_normal"
BASELINES = ("he_normal", "he_uniform", "xavier_uniform", "orthogonal")
GRID_ALPHAS = (0.5, 1.0, 2.0, 3.0)
GRID_RATIOS = (10.0, 100.0, 1000.0)

_NSPL_NAME = re.compile(r"nspl_a([0-9.]+)_r([0-9.e+]+)")


def nspl_name(alpha: float, ratio: float) -> str:
    """The name of NSPL with `alpha` and `ratio`; the defaults are called plain 'nspl'."""
    if (alpha, ratio) == (nspl_filler.DEFAULT_ALPHA, nspl_filler.DEFAULT_RATIO):
        return "nspl"
    return f"nspl_a{alpha:g}_r{ratio:g}"


def nspl_parameters(name: str) -> Optional[tuple[float, float]]:
    """(alpha, ratio) of an NSPL name, None for any other name."""
    if name == "nspl":
        return nspl_filler.DEFAULT_ALPHA, nspl_filler.DEFAULT_RATIO
    match = _NSPL_NAME.fullmatch(name)
    return (float(match.group(1)), float(match.group(2))) if match else None


GRID = tuple(nspl_name(a, r) for a in GRID_ALPHAS for r in GRID_RATIOS)
GROUPS = {
    "baselines": BASELINES,
    "grid": GRID,
    "default": ("nspl",) + BASELINES,
    "all": BASELINES + GRID,
}


def expand(spec: str) -> list[str]:
    """The initialiser names of a comma-separated list of names and group names
    (GROUPS: baselines, grid, default, all), each once, in the order given."""
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        for name in GROUPS.get(item, (item,)):
            check(name)
            if name not in names:
                names.append(name)
    return names


def check(name: str) -> None:
    """Raises ValueError for a name that is not an initialiser of the study."""
    if name not in BASELINES and nspl_parameters(name) is None:
        raise ValueError(
            f"unknown initialiser {name!r}: use nspl, nspl_a<alpha>_r<ratio>, {', '.join(BASELINES)}, "
            f"or a group ({', '.join(GROUPS)})")


def _torch_rule(name: str, generator: torch.Generator) -> Callable[[torch.Tensor], object]:
    relu_gain = nn.init.calculate_gain("relu")
    return {
        "he_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=generator),
        "he_uniform": lambda w: nn.init.kaiming_uniform_(
            w, a=0.0, mode="fan_in", nonlinearity="relu", generator=generator),
        "xavier_uniform": lambda w: nn.init.xavier_uniform_(w, gain=1.0, generator=generator),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=relu_gain, generator=generator),
    }[name]


def _shared_rules(model: nn.Module) -> list:
    """What every initialiser shares: biases 0, BatchNorm weights 1 (init_module_ keeps the
    model's own values for them unless told); only the rules that match something."""
    rules = []
    if any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules()):
        rules.append((lambda n, p, m: isinstance(m, nn.modules.batchnorm._NormBase) and n.endswith("weight"), "ones"))
    if any(name.endswith("bias") for name, _ in model.named_parameters()):
        rules.append((lambda n, p, m: n.endswith("bias"), "zeros"))
    return rules



def initialise(model: nn.Module, name: str, seed: int) -> nn.Module:
    """Initialise `model` in place with initialiser `name` from the stream of `seed`: NSPL
    through init_module_(seed=seed), torch's initialisers from a torch.Generator seeded with
    `seed`, as a rule of init_module_ for every parameter of >= 2 dims; biases and norm
    layers alike in every case (_shared_rules). Returns the model."""
    check(name)
    parameters = nspl_parameters(name)
    if parameters is not None:
        alpha, ratio = parameters
        return nspl_filler.init_module_(model, alpha=alpha, ratio=ratio, seed=seed, rules=_shared_rules(model))
    generator = torch.Generator().manual_seed(seed)
    rule = _torch_rule(name, generator)
    return nspl_filler.init_module_(model, seed=seed, rules=[(lambda n, p, m: p.dim() >= 2, rule), *_shared_rules(model)])


def expected_std(name: str, fan_in: int, fan_out: int) -> float:
    """The standard deviation of a weight with these fans under initialiser `name`."""
    if name == "xavier_uniform":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if name == "orthogonal":
        # The rows (or columns, whichever are fewer) are orthonormal, scaled by the gain.
        return math.sqrt(2.0 / max(fan_in, fan_out))
    return math.sqrt(2.0 / fan_in)
