"""Loads the compiled core, nspl_filler._C, and turns a missing or mismatched build into
an explicit ImportError. Importing it registers the torch.ops.nspl_filler operators."""
from __future__ import annotations

import inspect

import torch

_REBUILD = "rebuild it with: pip install --no-build-isolation -e ."

try:
    from . import _C  # noqa: F401  (registers torch.ops.nspl_filler.*)
except ImportError as error:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        f"nspl_filler: the compiled extension nspl_filler._C could not be loaded ({error}). "
        f"It may be missing or built for another torch than the installed {torch.__version__}; "
        + _REBUILD
    ) from error


def _same_release(built: str, running: str) -> bool:
    # Local tags (+cpu, +cu130) differ between builds of one release and keep the ABI.
    return built.split("+")[0] == running.split("+")[0]


if not _same_release(_C.torch_version, torch.__version__):  # pragma: no cover
    raise ImportError(
        f"nspl_filler: the compiled extension was built for torch {_C.torch_version}, "
        f"but torch {torch.__version__} is installed; " + _REBUILD
    )

ops = torch.ops.nspl_filler
cuda_built: bool = _C.cuda_built()
#: The version of the random stream: which values a (seed, offset, shape, dtype, parameters)
#: gives (docs/sampling.md). Version 2 draws the power law's uniform from 31 bits of each
#: word (63 for float64), exact on its small side, so the tails are followed to 2^-32.
STREAM_VERSION: int = _C.STREAM_VERSION


# Fake (meta) kernels: the ops write in place and return nothing, so a fake kernel has no
# output to describe. It calls the op's check function in the compiled core, the one its
# eager kernels call (csrc/checks.h), so meta tensors and traced programs reject what eager
# would: every check when sizes are concrete, those that do not need sizes when they are symbols.
# The single-tensor ops come from the core's op table (_C.OPS, csrc/op_table.h): each fake
# binds its arguments by the op's schema and hands them to the op's check, _C.check_<name less '_'>.
def _register_fake(name: str) -> None:
    schema = getattr(ops, name).default._schema
    signature = inspect.Signature([
        inspect.Parameter(argument.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=argument.default_value if argument.has_default_value() else inspect.Parameter.empty)
        for argument in schema.arguments
    ])
    check = getattr(_C, "check_" + name[:-1])

    def fake(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        arguments["generator"] = arguments["generator"] is not None  # the check takes has_generator
        check(*arguments.values())

    fake.__name__ = fake.__qualname__ = f"_{name[:-1]}_fake"
    torch.library.register_fake(f"nspl_filler::{name}")(fake)


for _name in _C.OPS:
    _register_fake(_name)


@torch.library.register_fake("nspl_filler::nspl_many_")
def _nspl_many_fake(tensors, variance_norm, alpha, ratio, gains, seed, offsets, generator=None,
                    global_shapes=None, global_starts=None, keys=None):
    # Fake and meta tensors have no memory, so the check that tensors do not share it is
    # left to the eager kernel.
    _C.check_nspl_many(list(tensors), variance_norm, alpha, ratio, list(gains), seed is not None, list(offsets),
                       generator is not None, global_shapes, global_starts, False,
                       None if keys is None else list(keys))
