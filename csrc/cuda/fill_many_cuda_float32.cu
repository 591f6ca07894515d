// The bulk op's table kernels for float32 outputs: one translation unit per dtype (see units.h).
#include "bulk_kernel.cuh"

NSPL_INSTANTIATE_BULK_DTYPE(float)
