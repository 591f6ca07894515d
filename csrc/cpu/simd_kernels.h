// The entry points of fill_cpu_simd.h for one instruction set, defined once for all of
// them: a SIMD translation unit includes this after its lanes_*.h, with NSPL_SIMD_ISA
// naming the lane set (Avx2, Avx512) and NSPL_SIMD_NAMESPACE the namespace of its entry
// points (avx2, avx512).
#pragma once

#include "fill_simd.h"

namespace nspl {
namespace NSPL_SIMD_NAMESPACE {

template <typename scalar_t, typename Constants>
void fill_run(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Constants& constants,
              const StreamPosition& pos) {
  fill_run_vector<NSPL_SIMD_ISA>(out, stride, first, count, sampler_for(constants), pos);
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
NSPL_INSTANTIATE_FLOAT_OUTPUTS(PowerLawConstants<float, PowerLawForm::AlphaAboveOne>);
NSPL_INSTANTIATE_FLOAT_OUTPUTS(PowerLawConstants<float, PowerLawForm::AlphaAboveOneTinyExpK>);
NSPL_INSTANTIATE_FLOAT_OUTPUTS(PowerLawConstants<float, PowerLawForm::AlphaBelowOne>);
NSPL_INSTANTIATE_FLOAT_OUTPUTS(LogUniformConstants<float>);
NSPL_INSTANTIATE_FLOAT_OUTPUTS(UniformConstants<float>);
NSPL_INSTANTIATE_FLOAT_OUTPUTS(NormalConstants<float>);
NSPL_INSTANTIATE_FLOAT_OUTPUTS(TruncNormalConstants<float>);
NSPL_INSTANTIATE_RUN(double, PowerLawConstants<double, PowerLawForm::AlphaAboveOne>);
NSPL_INSTANTIATE_RUN(double, PowerLawConstants<double, PowerLawForm::AlphaAboveOneTinyExpK>);
NSPL_INSTANTIATE_RUN(double, PowerLawConstants<double, PowerLawForm::AlphaBelowOne>);
NSPL_INSTANTIATE_RUN(double, LogUniformConstants<double>);
NSPL_INSTANTIATE_RUN(double, UniformConstants<double>);
NSPL_INSTANTIATE_RUN(double, TruncNormalConstants<double>);
template void math<float>(MathFunction, const float*, float*, int64_t);
template void math<double>(MathFunction, const double*, double*, int64_t);
#undef NSPL_INSTANTIATE_FLOAT_OUTPUTS
#undef NSPL_INSTANTIATE_RUN

}  // namespace NSPL_SIMD_NAMESPACE
}  // namespace nspl
