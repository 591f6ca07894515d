"""Where this install keeps nspl_filler's C++ library: its headers, the shared library and its
CMake package (``find_package(NsplFiller)``, target ``nspl_filler::nspl_filler``).

    cmake -DCMAKE_PREFIX_PATH="$(python -m nspl_filler --cmake-prefix-path)" ..
"""

from __future__ import annotations

import os

import torch

_ROOT = os.path.dirname(os.path.abspath(__file__))

#: The folder for CMAKE_PREFIX_PATH that holds NsplFillerConfig.cmake (torch's own is
#: torch.utils.cmake_prefix_path).
cmake_prefix_path: str = os.path.join(_ROOT, "share", "cmake")
#: The folder to put on the include path: ``#include <nspl_filler/filler.h>``.
include_path: str = os.path.join(_ROOT, "include")
#: The shared library itself; loading it registers the torch.ops.nspl_filler operators.
library_path: str = os.path.join(_ROOT, "lib", "libnspl_filler.so")


def cmake_prefix_paths() -> str:
    """CMAKE_PREFIX_PATH for a project that finds NsplFiller and the Torch it was built
    with: this package's prefix and torch's, separated by ';'."""
    return ";".join([cmake_prefix_path, torch.utils.cmake_prefix_path])
