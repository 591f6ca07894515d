// The entry points of fill_cpu_simd.h for one instruction set, defined once for all of
// them: a SIMD translation unit includes this after its lanes_*.h, with NSPL_SIMD_ISA
// naming the lane set (Avx2, Avx512) and NSPL_SIMD_NAMESPACE the namespace of its entry
// points (avx2, avx512).
#pragma once

#include "fill_cpu_simd.h"  // SimdSampler (included first, for the default target, by each unit)
#include "fill_simd.h"

namespace nspl {
namespace NSPL_SIMD_NAMESPACE {

// Instantiated for every sampler (NSPL_FOR_EACH_SAMPLER_CONSTANTS); where SimdSampler says
// the SIMD kernels do not run (the callers then take the portable path), it is the portable
// kernel.
template <typename scalar_t, typename Constants>
void fill_run(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Constants& constants,
              const StreamPosition& pos) {
  if constexpr (SimdSampler<Constants>::value) {
    fill_run_vector<NSPL_SIMD_ISA>(out, stride, first, count, sampler_for(constants), pos);
  } else {
    fill_run_scalar(out, stride, first, count, sampler_for(constants), pos);
  }
}

template <typename T>
void math(MathFunction function, const T* in, T* out, int64_t n) {
  math_vector<NSPL_SIMD_ISA>(function, in, out, n);
}

// Variadic: a constants type may hold a comma (PowerLawConstants<float, form>).
#define NSPL_INSTANTIATE_RUN(scalar_t, ...)                                                              \
  template void fill_run<scalar_t, __VA_ARGS__>(scalar_t*, int64_t, uint64_t, int64_t, const __VA_ARGS__&, \
                                                const StreamPosition&)
#define NSPL_INSTANTIATE_FLOAT_OUTPUTS(...)          \
  NSPL_INSTANTIATE_RUN(float, __VA_ARGS__);         \
  NSPL_INSTANTIATE_RUN(c10::Half, __VA_ARGS__);     \
  NSPL_INSTANTIATE_RUN(c10::BFloat16, __VA_ARGS__)
#define NSPL_INSTANTIATE_FLOAT(...) NSPL_INSTANTIATE_FLOAT_OUTPUTS(__VA_ARGS__);
#define NSPL_INSTANTIATE_DOUBLE(...) NSPL_INSTANTIATE_RUN(double, __VA_ARGS__);
NSPL_FOR_EACH_SAMPLER_CONSTANTS(NSPL_INSTANTIATE_FLOAT, float)
NSPL_FOR_EACH_SAMPLER_CONSTANTS(NSPL_INSTANTIATE_DOUBLE, double)
template void math<float>(MathFunction, const float*, float*, int64_t);
template void math<double>(MathFunction, const double*, double*, int64_t);
#undef NSPL_INSTANTIATE_DOUBLE
#undef NSPL_INSTANTIATE_FLOAT
#undef NSPL_INSTANTIATE_FLOAT_OUTPUTS
#undef NSPL_INSTANTIATE_RUN

}  // namespace NSPL_SIMD_NAMESPACE
}  // namespace nspl
