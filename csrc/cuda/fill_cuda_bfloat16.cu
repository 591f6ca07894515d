// The per-tensor kernels for bfloat16 outputs: one translation unit per dtype (see units.h).
#include "fill_kernels.cuh"

NSPL_INSTANTIATE_FILL_DTYPE(c10::BFloat16)
