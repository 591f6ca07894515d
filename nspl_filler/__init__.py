"""nspl_filler: Normalized Symmetric Power Law (NSPL) weight initialisation for PyTorch.

    import nspl_filler
    nspl_filler.fill_(layer.weight, mode="fan_in", seed=0)

    nspl_filler.init_module_(model, seed=0)          # every layer weight, in bulk
    nspl_filler.init_module_(model, seed=0, stream="name")   # each by its name

    with nspl_filler.empty_weights():                # a large model: weights on meta
        model = Model()
    nspl_filler.materialize_(model, "cuda", seed=0)

The law itself: nspl_filler.distributions.SymmetricPowerLaw (torch.distributions) and
nspl_filler.stats.symmetric_power_law (scipy.stats, needs scipy). See fill_, symmetric_power_law_, fill_many_, init_module_, Generator, key_for and the
Caffe-style get_filler. The same core is a C++ library for libtorch programs: see nspl_filler.cpp.
"""
from ._extension import STREAM_VERSION, cuda_built
from .bulk import fill_many_
from .caffe import Filler, FillerParameter, get_filler
from .distributions import SymmetricPowerLaw
from .cpp import cmake_prefix_path
from .fit import PowerLawFit, fit
from .plots import plot_fit, plot_fits
from .weights import load_weights
from .generator import Generator
from .init import (
    DEFAULT_ALPHA,
    DEFAULT_RATIO,
    VarianceNorm,
    compute_fans,
    fill_,
    nspl_,
    second_moment,
    symmetric_power_law_,
    trunc_normal_,
)
from .layouts import Layout, layout_of, register_layout
from .meta import empty_weights, materialize_
from .module import DEPARTURE, EMBEDDING_RULE, ParamInit, format_report, init_module_, init_plan
from .stream import canonical_name, key_for

__version__ = "0.1.0"


def __getattr__(name: str):
    # nspl_filler.stats needs scipy, an optional dependency: imported on first use only.
    if name == "stats":
        import importlib

        return importlib.import_module(".stats", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_RATIO", "DEPARTURE", "EMBEDDING_RULE", "Filler", "FillerParameter", "Generator", "Layout",
    "ParamInit", "PowerLawFit", "STREAM_VERSION", "SymmetricPowerLaw", "VarianceNorm", "canonical_name",
    "cmake_prefix_path", "compute_fans", "cuda_built",
    "empty_weights", "fill_", "fill_many_", "fit", "format_report", "get_filler", "init_module_", "init_plan",
    "key_for", "layout_of", "load_weights", "materialize_", "nspl_", "plot_fit", "plot_fits", "register_layout",
    "second_moment", "symmetric_power_law_", "trunc_normal_",
]
