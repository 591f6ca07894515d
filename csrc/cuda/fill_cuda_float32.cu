// The per-tensor kernels for float32 outputs: one translation unit per dtype (see units.h).
#include "fill_kernels.cuh"

NSPL_INSTANTIATE_FILL_DTYPE(float)
