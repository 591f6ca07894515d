"""nspl_filler: Normalized Symmetric Power Law (NSPL) weight initialisation for PyTorch.

    import nspl_filler
    nspl_filler.fill_(layer.weight, mode="fan_in", seed=0)

See fill_, symmetric_power_law_, Generator and the Caffe-style get_filler.
"""
from ._extension import cuda_built
from .caffe import Filler, FillerParameter, get_filler
from .fit import PowerLawFit, fit, load_weights, plot_fit, plot_fits
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
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_RATIO", "Filler", "FillerParameter", "Generator", "VarianceNorm",
    "PowerLawFit", "compute_fans", "cuda_built", "fill_", "fit", "get_filler", "load_weights", "nspl_", "plot_fit", "plot_fits", "second_moment",
    "symmetric_power_law_",
]
