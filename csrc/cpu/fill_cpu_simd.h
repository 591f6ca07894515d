// The SIMD kernels of the CPU backend as the rest of the library sees them: one set per
// instruction set, each compiled in its own translation unit (fill_cpu_avx2.cpp,
// fill_cpu_avx512.cpp) through target pragmas rather than build flags, so the library
// loads on any x86-64 and cpu_capability.h decides at run time which set runs. They give
// the portable kernel's values bit for bit.
//
// Only plain data crosses this interface (kernel_args.h): each SIMD translation unit has
// its own copy of the element math, in a namespace of its own (see nspl_math.h).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

#include "../kernel_args.h"

// GCC and clang on x86-64 compile the SIMD kernels; elsewhere only the portable path exists.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define NSPL_HAVE_SIMD_KERNELS 1
#else
#define NSPL_HAVE_SIMD_KERNELS 0
#endif

namespace nspl {

// Fills `count` elements whose global indices are first, first + 1, ... at out,
// out + stride, ... with the sampler of `constants` (nspl_math.h), as fill_run_scalar does.
// A MathFunction of nspl_math.h over n values (for the tests).
#define NSPL_DECLARE_SIMD_KERNELS                                                                      \
  template <typename scalar_t, typename Constants>                                                   \
  void fill_run(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Constants& constants, \
                const StreamPosition& pos);                                                          \
  template <typename T>                                                                              \
  void math(MathFunction function, const T* in, T* out, int64_t n);

namespace avx2 {
NSPL_DECLARE_SIMD_KERNELS
}
namespace avx512 {
NSPL_DECLARE_SIMD_KERNELS
}
#undef NSPL_DECLARE_SIMD_KERNELS

// Whether the SIMD kernels run for this output type and sampler constants: every sampler
// into float32, float16 and bfloat16, and all but the normal into float64 (its refinement
// uses libm's erf and stays on the portable path).
template <typename Constants>
struct SimdSampler : std::true_type {};
template <>
struct SimdSampler<NormalConstants<double>> : std::false_type {};

template <typename scalar_t, typename Constants>
constexpr bool kHasSimdKernel = NSPL_HAVE_SIMD_KERNELS && SimdSampler<Constants>::value;

}  // namespace nspl
