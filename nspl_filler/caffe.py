"""The Caffe-style filler API, from the compiled core (the same classes as the C++ library's
nspl_filler/filler.h).

``get_filler(FillerParameter(type="gaussian", std=0.01, sparse=15, seed=0)).fill(blob)``.
Fans follow Caffe exactly (a 1-D blob of n has fan_in = 1, fan_out = n). Types, with Caffe's
laws: 'constant' (value), 'uniform' (on [min, max]), 'gaussian' (mean, std; sparse = k keeps
each value with probability k / shape(0)), 'positive_unitball' (uniform, each shape(0) row
divided by its sum), 'xavier' (uniform on ±sqrt(3 / n)), 'msra' (gaussian with std
sqrt(2 / n)), 'bilinear' (the (K, K) kernel of bilinear upsampling); and nspl_filler's 'nspl'
(variance gain² / n), 'symmetric_power_law' (|w| in [min, max]) and 'trunc_normal' (normal
(mean, std²) truncated to [min, max]). The random ones share
the Philox stream of the ops: a seeded filler advances through it with each fill by
``blocks_for(tensor)`` blocks (0 for 'constant' and 'bilinear').
"""
from ._extension import _C

FillerParameter = _C.FillerParameter
Filler = _C.Filler
get_filler = _C.get_filler

__all__ = ["FillerParameter", "Filler", "get_filler"]
