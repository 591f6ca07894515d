"""Loads the compiled core, nspl_filler._C, and turns a missing or mismatched build into
an explicit ImportError. Importing it registers the torch.ops.nspl_filler operators."""
from __future__ import annotations

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
