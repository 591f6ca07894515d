"""The Caffe-style filler API, from the compiled core.

``get_filler(FillerParameter(type="nspl", variance_norm="fan_out", seed=0)).fill(blob)``.
Fans follow Caffe exactly (a 1-D blob of n has fan_in = 1, fan_out = n). Types:
'nspl' (variance gain² / n), 'symmetric_power_law' (|w| in [min, max]), 'xavier'
(uniform on ±sqrt(3 / n)) and 'msra' (gaussian with std sqrt(2 / n)), all on the same
Philox stream. A seeded filler advances through its stream with each fill.
"""
from ._extension import _C

FillerParameter = _C.FillerParameter
Filler = _C.Filler
get_filler = _C.get_filler

__all__ = ["FillerParameter", "Filler", "get_filler"]
