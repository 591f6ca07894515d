// The AVX2 kernels of the CPU backend (fill_cpu_avx2.cpp) as fill_cpu.cpp sees them.
// They are compiled for AVX2 through function attributes, not build flags, and are only
// called after cpu_capability.h has found a CPU that runs them.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

#include "../fill.h"
#include "../nspl_math.h"

// GCC and clang on x86-64 take __attribute__((target)); elsewhere only the scalar path exists.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define NSPL_HAVE_AVX2_KERNELS 1
#else
#define NSPL_HAVE_AVX2_KERNELS 0
#endif

namespace nspl {
namespace avx2 {

// Whether an AVX2 kernel exists for this output type and sampler: the three float32-
// arithmetic samplers into float32, float16 and bfloat16 outputs, and the power law and
// uniform samplers into float64 (the float64 normal sampler needs erf and stays scalar).
template <typename scalar_t, typename Sampler>
constexpr bool kHasKernel =
    NSPL_HAVE_AVX2_KERNELS &&
    (((std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::Half> ||
       std::is_same_v<scalar_t, c10::BFloat16>) &&
      (std::is_same_v<Sampler, PowerLawSampler<float>> || std::is_same_v<Sampler, UniformSampler<float>> ||
       std::is_same_v<Sampler, NormalSampler<float>>)) ||
     (std::is_same_v<scalar_t, double> &&
      (std::is_same_v<Sampler, PowerLawSampler<double>> || std::is_same_v<Sampler, UniformSampler<double>>)));

// Fills `count` elements whose global indices are first, first+1, ... at out, out+stride, ...
// with exactly the values of the scalar path (fill_cpu.cpp), bit for bit.
template <typename scalar_t, typename Sampler>
void fill_run(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Sampler& sampler,
              const StreamPosition& pos);

// The vector exp / log / log1p of nspl_math.h over n values, for the tests.
enum class MathFunction { Exp, Log, Log1p };
void math_f32(MathFunction fn, const float* in, float* out, int64_t n);
void math_f64(MathFunction fn, const double* in, double* out, int64_t n);

}  // namespace avx2
}  // namespace nspl
