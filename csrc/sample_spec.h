// What a fill samples (SampleSpec) and the host-side math of the distributions: constants
// for the kernels' samplers, the power law's second moment, the normalising scale and the
// check that a distribution's values fit a dtype. Constants are computed in float64.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>

#include "nspl_math.h"

namespace nspl {

enum class Distribution : int32_t { PowerLaw, Uniform, Normal };

// The distribution in float64, as the caller gave it. Kernels turn it into a sampler of
// their arithmetic type with make_*_sampler, so every constant is computed in float64.
struct SampleSpec {
  Distribution distribution = Distribution::PowerLaw;
  double alpha = 1.0;  // power law: exponent of the magnitude density
  double ratio = 2.0;  // power law: r = high / low
  double scale = 1.0;  // power law: c (|w| = c·y); uniform: bound; normal: std
  // |value| bounds, used to keep rounding from stepping outside [c, c·r].
  double magnitude_low() const;
  double magnitude_high() const;
};

template <typename acc_t>
PowerLawSampler<acc_t> make_power_law_sampler(const SampleSpec& spec);

// Calls `f(sampler)` with the sampler of nspl_math.h that draws `spec` in arithmetic
// acc_t (float for 16/32-bit outputs, double for float64) into a tensor of dtype
// `dtype`: the one place where a distribution becomes a kernel's functor. Backends pass a
// generic lambda, so each sampler type gets its own instantiation of their kernels.
template <typename acc_t, typename F>
void visit_sampler(const SampleSpec& spec, c10::ScalarType dtype, F&& f) {
  (void)dtype;
  switch (spec.distribution) {
    case Distribution::PowerLaw:
      f(make_power_law_sampler<acc_t>(spec));
      return;
    case Distribution::Uniform:
      f(UniformSampler<acc_t>{static_cast<acc_t>(spec.scale)});
      return;
    case Distribution::Normal:
      f(NormalSampler<acc_t>{static_cast<acc_t>(spec.scale * 1.4142135623730951)});
      return;
  }
}

// E[y²] of the magnitude y on [1, r] with density ∝ y^-alpha:
// b(r^(b+2) - 1) / ((b+2)(r^b - 1)) with b = 1 - alpha, written as g((b+2)L) / g(bL),
// g(x) = expm1(x) / x, which is finite and exact at b = 0 and b = -2 too.
double power_law_second_moment(double alpha, double ratio);

// c such that the variance of the filled values is gain² / n.
double normalised_scale(double alpha, double ratio, double gain, double n);

// ValueError if the largest |value| does not fit the dtype.
void check_range(const SampleSpec& spec, c10::ScalarType dtype);

// Specs of the raw power law (|w| in [low, high]), the symmetric uniform (on ±bound) and the
// normal (std); ValueError naming the argument for an out-of-domain value.
SampleSpec power_law_spec(double alpha, double low, double high);
SampleSpec uniform_spec(double bound);
SampleSpec normal_spec(double std);

}  // namespace nspl
