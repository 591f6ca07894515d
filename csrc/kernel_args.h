// Plain data that host code hands to the kernels of every backend: where a fill's stream
// starts, and the constants of each distribution's sampler (computed in float64 on the
// host by sample_spec.cpp, then rounded to the kernels' arithmetic type acc_t: float for
// 16/32-bit outputs, double for float64). No functions here: this header is shared by
// translation units compiled for different instruction sets (see nspl_math.h).
#pragma once

#include <cstdint>

namespace nspl {

// The element functions of nspl_math.h that the tests evaluate on given arguments, by each
// code path: exp2_to_normal, log_normal and normal_quantile_lower.
enum class MathFunction : int32_t { Exp2, Log, NormalQuantile };

// Key and first block of a fill (docs/spec.md §4).
struct StreamPosition {
  uint64_t key = 0;
  uint64_t offset = 0;
};

// Symmetric truncated power law, general alpha (see PowerLawSampler in nspl_math.h). With
// L = ln r, b = 1 - alpha, K = -|b|·L, u the element's variate and s = u (alpha > 1) or
// s = 1 - u (alpha < 1):
//   log2 |w| = ln(1 + s·expm1(K)) · log2(e) / b + log2_base,
// where ln(1 + s·expm1(K)) is evaluated as ln(s̄ + s·exp(K)), s̄ = 1 - s, where that sum
// is below √½. The form is part of the type, so each kernel is compiled for one form.
enum class PowerLawForm : int32_t {
  AlphaAboveOne,          // s = u
  AlphaAboveOneTinyExpK,  // s = u, and exp(K) is below the smallest normal acc_t (stored as 0)
  AlphaBelowOne,          // s = 1 - u
};

template <typename acc_t, PowerLawForm kForm>
struct PowerLawConstants {
  acc_t expm1_k;       // expm1(K), in (-1, 0)
  acc_t exp_k;         // exp(K); 0 in the TinyExpK form
  acc_t log2e_over_b;  // log2(e) / b
  acc_t inv_b;         // 1 / b
  acc_t log2_base;     // log2 c, plus log2 r when alpha < 1
  // The output dtype's values nearest to c and c·r from inside [c, c·r]: clamping to them
  // keeps every value, after rounding to the dtype, in [c, c·r].
  acc_t low;
  acc_t high;
};

// The power law at alpha = 1 (|b·L| negligible): |w| = 2^(log2 c + u·log2 r) =
// 2^(log2(c·r) - q·log2 r), log-uniform, with t = min(u, q) = n·2^-32 (2^-64 for double).
template <typename acc_t>
struct LogUniformConstants {
  acc_t log2_ratio_cell;  // log2 r · 2^-32 (double: 2^-64), the slope in n
  acc_t log2_low;         // log2 c
  acc_t log2_high;        // log2(c·r)
  acc_t low;              // as in PowerLawConstants
  acc_t high;
};

// Uniform on (-bound, bound) (Caffe's XavierFiller).
template <typename acc_t>
struct UniformConstants {
  acc_t bound;
};

// Gaussian with standard deviation std, by inversion (Caffe's MSRAFiller).
template <typename acc_t>
struct NormalConstants {
  acc_t std_sqrt2;  // std · sqrt(2)
};

// Normal N(mean, std²) truncated to [a, b], by inversion (docs/spec.md §2b): with
// α = (a - mean) / std and β = (b - mean) / std, an element's p = Φ(α) + u·D and
// q = Φ(-β) + (1 - u)·D, D = Φ(β) - Φ(α), and z = Φ⁻¹(p) = -Φ⁻¹(q) from whichever is smaller.
template <typename acc_t>
struct TruncNormalConstants {
  acc_t lower_mass;  // Φ(α); 0 where it is below the smallest normal acc_t
  acc_t upper_mass;  // Φ(-β) = 1 - Φ(β); likewise
  acc_t mass;        // D, the interval's mass, a normal number
  acc_t mean;
  acc_t std;
  // The output dtype's values nearest to a and b from inside [a, b] (the dtype's largest
  // finite values for an infinite bound): clamping to them keeps every value in [a, b].
  acc_t low;
  acc_t high;
};

// X(constants type) for the constants of every sampler in arithmetic acc_t: the list that
// code instantiating a kernel per sampler expands (the SIMD translation units,
// cpu/simd_kernels.h). X takes `...`: a type may hold a comma.
#define NSPL_FOR_EACH_SAMPLER_CONSTANTS(X, acc_t)                  \
  X(PowerLawConstants<acc_t, PowerLawForm::AlphaAboveOne>)         \
  X(PowerLawConstants<acc_t, PowerLawForm::AlphaAboveOneTinyExpK>) \
  X(PowerLawConstants<acc_t, PowerLawForm::AlphaBelowOne>)         \
  X(LogUniformConstants<acc_t>)                                    \
  X(UniformConstants<acc_t>)                                       \
  X(NormalConstants<acc_t>)                                        \
  X(TruncNormalConstants<acc_t>)

}  // namespace nspl
