// Plain data that host code hands to the kernels of every backend: where a fill's stream
// starts, and the constants of each distribution's sampler (computed in float64 on the
// host by sample_spec.cpp, then rounded to the kernels' arithmetic type acc_t: float for
// 16/32-bit outputs, double for float64). No functions here: this header is shared by
// translation units compiled for different instruction sets (see nspl_math.h).
#pragma once

#include <cstdint>

namespace nspl {

// Key and first block of a fill (SPEC §4).
struct StreamPosition {
  uint64_t key = 0;
  uint64_t offset = 0;
};

// Symmetric truncated power law, general alpha (see PowerLawSampler in nspl_math.h). With
// L = ln r, b = 1 - alpha, K = -|b|·L and u the element's variate:
//   s = u·s_sign + s_offset and s̄ = 1 - s = u·(-s_sign) + s_bar_offset
//       (s = u for alpha > 1, s = 1 - u for alpha < 1),
//   |w| = exp(ln(1 + s·expm1(K)) · inv_b + log_base),
// where ln(1 + s·expm1(K)) is evaluated as ln(s̄ + s·exp(K)) where that sum is below √½.
template <typename acc_t>
struct PowerLawConstants {
  acc_t s_sign;
  acc_t s_offset;
  acc_t s_bar_offset;
  acc_t expm1_k;   // expm1(K), in (-1, 0)
  acc_t exp_k;     // exp(K), or 0 where it is below the smallest normal acc_t
  acc_t inv_b;     // 1 / b
  acc_t log_base;  // ln c, plus L when alpha < 1
  // The output dtype's values nearest to c and c·r from inside [c, c·r]: clamping to them
  // keeps every value, after rounding to the dtype, in [c, c·r].
  acc_t low;
  acc_t high;
};

// The power law at alpha = 1 (|b·L| negligible): |w| = exp(u·L + ln c), log-uniform.
template <typename acc_t>
struct LogUniformConstants {
  acc_t log_ratio;  // L
  acc_t log_low;    // ln c
  acc_t low;        // as in PowerLawConstants
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

}  // namespace nspl
