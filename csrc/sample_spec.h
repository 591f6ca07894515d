// What a fill samples (SampleSpec) and the host-side math of the distributions: constants
// for the kernels' samplers, the power law's second moment, the normalising scale and the
// check that a distribution's values fit a dtype. Constants are computed in float64.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <utility>

#include "nspl_math.h"

namespace nspl {

enum class Distribution : int32_t { PowerLaw, Uniform, Normal, TruncNormal };

// The distribution in float64, as the caller gave it. Kernels turn it into a sampler of
// their arithmetic type with make_*_sampler, so every constant is computed in float64.
struct SampleSpec {
  Distribution distribution = Distribution::PowerLaw;
  double alpha = 1.0;  // power law: exponent of the magnitude density
  double ratio = 2.0;  // power law: r = high / low
  double scale = 1.0;  // power law: c (|w| = c·y); uniform: bound; normal, truncated normal: std
  double mean = 0.0;   // truncated normal: the mean of the normal it truncates
  double lower = 0.0;  // truncated normal: a (may be -inf)
  double upper = 0.0;  // truncated normal: b (may be +inf)
  // |value| bounds, used to keep rounding from stepping outside [c, c·r].
  double magnitude_low() const;
  double magnitude_high() const;
};

// Whether the power law of `spec` is log-uniform (alpha = 1 up to a float64 rounding).
bool is_log_uniform(const SampleSpec& spec);

// The constants of the power-law samplers for `spec` in arithmetic acc_t, with the bounds
// rounded inward to the output dtype.
template <typename acc_t>
LogUniformConstants<acc_t> log_uniform_constants(const SampleSpec& spec, c10::ScalarType dtype);
template <typename acc_t, PowerLawForm kForm>
PowerLawConstants<acc_t, kForm> power_law_constants(const SampleSpec& spec, c10::ScalarType dtype);
// The form of the general power law for `spec` in arithmetic acc_t.
template <typename acc_t>
PowerLawForm power_law_form(const SampleSpec& spec);
// The constants of the truncated normal's sampler for `spec` in arithmetic acc_t, with [a, b]
// rounded inward to the output dtype (check_range has passed).
template <typename acc_t>
TruncNormalConstants<acc_t> trunc_normal_constants(const SampleSpec& spec, c10::ScalarType dtype);

// Calls `f(sampler)` with the sampler of nspl_math.h that draws `spec` in arithmetic
// acc_t (float for 16/32-bit outputs, double for float64) into a tensor of dtype
// `dtype`: the one place where a distribution becomes a kernel's functor. Backends pass a
// generic lambda, so each sampler type gets its own instantiation of their kernels.
template <typename acc_t, typename F>
void visit_sampler(const SampleSpec& spec, c10::ScalarType dtype, F&& f) {
  switch (spec.distribution) {
    case Distribution::PowerLaw:
      if (is_log_uniform(spec)) {
        f(sampler_for(log_uniform_constants<acc_t>(spec, dtype)));
        return;
      }
      switch (power_law_form<acc_t>(spec)) {
        case PowerLawForm::AlphaAboveOne:
          f(sampler_for(power_law_constants<acc_t, PowerLawForm::AlphaAboveOne>(spec, dtype)));
          return;
        case PowerLawForm::AlphaAboveOneTinyExpK:
          f(sampler_for(power_law_constants<acc_t, PowerLawForm::AlphaAboveOneTinyExpK>(spec, dtype)));
          return;
        case PowerLawForm::AlphaBelowOne:
          f(sampler_for(power_law_constants<acc_t, PowerLawForm::AlphaBelowOne>(spec, dtype)));
          return;
      }
      return;
    case Distribution::Uniform:
      f(sampler_for(UniformConstants<acc_t>{static_cast<acc_t>(spec.scale)}));
      return;
    case Distribution::Normal:
      f(sampler_for(NormalConstants<acc_t>{static_cast<acc_t>(spec.scale * 1.4142135623730951)}));
      return;
    case Distribution::TruncNormal:
      f(sampler_for(trunc_normal_constants<acc_t>(spec, dtype)));
      return;
  }
}

// E[y²] of the magnitude y on [1, r] with density ∝ y^-alpha:
// b(r^(b+2) - 1) / ((b+2)(r^b - 1)) with b = 1 - alpha, i.e. g((b+2)L) / g(bL) with
// g(x) = expm1(x) / x, finite at b = 0 and b = -2 too. The log form is accurate to about
// 1e-15 for every finite alpha and ratio; E[y²] itself raises ValueError where it
// overflows a double (ratios above about 1.3e154).
double power_law_log_second_moment(double alpha, double ratio);
double power_law_second_moment(double alpha, double ratio);

// c such that the variance of the filled values is gain² / n.
double normalised_scale(double alpha, double ratio, double gain, double n);

// ValueError unless the values of `spec` can be drawn into `dtype`: the largest |value|
// must not overflow it, and for the power law c must be a normal number of the dtype and
// [c, c·r] must hold at least one of its values; for the truncated normal, see
// docs/spec.md §2b (the interval's mass, mean and std in the arithmetic, [a, b] in the dtype).
void check_range(const SampleSpec& spec, c10::ScalarType dtype);

// The dtype's values nearest to [low, high] from inside (low <= high, both finite and within
// the dtype's range): the smallest value >= low and the largest <= high. They cross
// (first > second) where the dtype holds no value in [low, high].
std::pair<double, double> dtype_values_within(double low, double high, c10::ScalarType dtype);
// The smallest positive normal number of the dtype.
double dtype_min_normal(c10::ScalarType dtype);

// Specs of the raw power law (|w| in [low, high]), the symmetric uniform (on ±bound) and the
// normal (std); ValueError naming the argument for an out-of-domain value.
SampleSpec power_law_spec(double alpha, double low, double high);
SampleSpec uniform_spec(double bound);
SampleSpec normal_spec(double std);
// N(mean, std²) truncated to [a, b]: finite mean, finite std > 0, a < b (either may be
// infinite). The dtype-dependent rules are check_range's.
SampleSpec trunc_normal_spec(double mean, double std, double a, double b);

// The truncated normal's masses in float64 (docs/spec.md §2b), with α = (a - mean) / std and
// β = (b - mean) / std: Φ(α), Φ(-β) and D = Φ(β) - Φ(α), D from the two tails on one side
// of 0 where the interval lies there, so that it does not cancel.
struct TruncNormalMasses {
  double lower;
  double upper;
  double mass;
};
TruncNormalMasses trunc_normal_masses(const SampleSpec& spec);

}  // namespace nspl
