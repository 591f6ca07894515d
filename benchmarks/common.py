"""Helpers the benchmarks share: a description of the machine a result was measured on,
and the load on it, without which a time measured on a shared machine means little."""
from __future__ import annotations

import os
import platform
from typing import Optional

import torch

import nspl_filler


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> Optional[list[float]]:
    """The 1, 5 and 15 minute load averages: other work on the machine slows a run down."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine() -> dict:
    """The machine and software a result comes from, with the load when it is called."""
    info = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "nspl_filler": nspl_filler.__version__,
        "load_average": load_average(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info
