// What a fill samples (SampleSpec) and the host-side math of each distribution: its
// parameters, the constants of its kernels' samplers, the check that its values fit a dtype;
// and the power law's second moment and the normalising scale. Constants are computed in
// float64.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <utility>
#include <variant>

#include "nspl_math.h"

namespace nspl {

// ---------------------------------------------------------------------------------
// A distribution is a struct of its parameters in float64, as the caller gave them, and two
// functions overloaded on it:
//   check_range(spec, dtype)              ValueError unless its values can be drawn into
//                                         `dtype`;
//   visit_sampler<acc_t>(spec, dtype, f)  calls f(sampler) with the sampler of nspl_math.h
//                                         that draws it in arithmetic acc_t (float for 16/32-bit
//                                         outputs, double for float64) into `dtype`.
// SampleSpec holds any of them, and its check_range and visit_sampler call the ones of the
// distribution it holds: a new distribution is its struct, its spec builder, these two
// functions and a place in SampleSpec, and no other host code switches over the distributions.
// Kernels never see a spec: visit_sampler is the one place where a distribution becomes a
// kernel's functor, every constant computed in float64 first. Backends pass a generic lambda,
// so each sampler type gets its own instantiation of their kernels.
// ---------------------------------------------------------------------------------

// ---- Symmetric truncated power law (docs/spec.md §2): |w| = c·y, y on [1, r] with density
// ∝ y^-alpha.
struct PowerLawSpec {
  double alpha = 1.0;  // exponent of the magnitude density
  double ratio = 2.0;  // r = high / low
  double scale = 1.0;  // c
  // |value| bounds, [c, c·r], which rounding must not step outside.
  double magnitude_low() const { return scale; }
  double magnitude_high() const { return scale * ratio; }
};

// The raw power law, |w| in [low, high]; ValueError naming the argument for an out-of-domain
// value.
PowerLawSpec power_law_spec(double alpha, double low, double high);

// The largest |value| must not overflow the dtype, c must be a normal number of it and
// [c, c·r] must hold at least one of its values.
void check_range(const PowerLawSpec& spec, c10::ScalarType dtype);

// Whether the power law is log-uniform (alpha = 1 up to a float64 rounding).
bool is_log_uniform(const PowerLawSpec& spec);

// The constants of the power-law samplers in arithmetic acc_t, with the bounds rounded inward
// to the output dtype.
template <typename acc_t>
LogUniformConstants<acc_t> log_uniform_constants(const PowerLawSpec& spec, c10::ScalarType dtype);
template <typename acc_t, PowerLawForm kForm>
PowerLawConstants<acc_t, kForm> power_law_constants(const PowerLawSpec& spec, c10::ScalarType dtype);
// The form of the general power law in arithmetic acc_t.
template <typename acc_t>
PowerLawForm power_law_form(const PowerLawSpec& spec);

// The log-uniform sampler at alpha = 1, else the general one in its form.
template <typename acc_t, typename F>
void visit_sampler(const PowerLawSpec& spec, c10::ScalarType dtype, F&& f) {
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

// ---- Uniform on (-bound, bound) (Caffe's XavierFiller).
struct UniformSpec {
  double bound = 1.0;
  // The largest |value|, which must not overflow the dtype.
  double magnitude_high() const { return bound; }
};

// ValueError unless bound is finite and > 0.
UniformSpec uniform_spec(double bound);

void check_range(const UniformSpec& spec, c10::ScalarType dtype);

template <typename acc_t, typename F>
void visit_sampler(const UniformSpec& spec, c10::ScalarType /*dtype*/, F&& f) {
  f(sampler_for(UniformConstants<acc_t>{static_cast<acc_t>(spec.bound)}));
}

// ---- Normal N(0, std²), by inversion (Caffe's MSRAFiller).
struct NormalSpec {
  double std = 1.0;
  // The largest |value|, which must not overflow the dtype: the largest |z| a 53-bit variate
  // can give is below 8.3 standard deviations.
  double magnitude_high() const { return std * 8.3; }
};

// ValueError unless std is finite and > 0.
NormalSpec normal_spec(double std);

void check_range(const NormalSpec& spec, c10::ScalarType dtype);

template <typename acc_t, typename F>
void visit_sampler(const NormalSpec& spec, c10::ScalarType /*dtype*/, F&& f) {
  f(sampler_for(NormalConstants<acc_t>{static_cast<acc_t>(spec.std * 1.4142135623730951)}));
}

// ---- Normal N(mean, std²) truncated to [lower, upper] (docs/spec.md §2b).
struct TruncNormalSpec {
  double mean = 0.0;   // the mean of the normal it truncates
  double std = 1.0;    // and its standard deviation
  double lower = 0.0;  // a (may be -inf)
  double upper = 0.0;  // b (may be +inf)
};

// Finite mean, finite std > 0, a < b (either may be infinite). The dtype-dependent rules
// are check_range's.
TruncNormalSpec trunc_normal_spec(double mean, double std, double a, double b);

// docs/spec.md §2b: the interval's mass, mean and std in the arithmetic, [a, b] in the dtype.
void check_range(const TruncNormalSpec& spec, c10::ScalarType dtype);

// The truncated normal's masses in float64 (docs/spec.md §2b), with α = (a - mean) / std and
// β = (b - mean) / std: Φ(α), Φ(-β) and D = Φ(β) - Φ(α), D from the two tails on one side
// of 0 where the interval lies there, so that it does not cancel.
struct TruncNormalMasses {
  double lower;
  double upper;
  double mass;
};
TruncNormalMasses trunc_normal_masses(const TruncNormalSpec& spec);

// The constants of the truncated normal's sampler in arithmetic acc_t, with [a, b] rounded
// inward to the output dtype (check_range has passed).
template <typename acc_t>
TruncNormalConstants<acc_t> trunc_normal_constants(const TruncNormalSpec& spec, c10::ScalarType dtype);

template <typename acc_t, typename F>
void visit_sampler(const TruncNormalSpec& spec, c10::ScalarType dtype, F&& f) {
  f(sampler_for(trunc_normal_constants<acc_t>(spec, dtype)));
}

// ---- Any of them.
using SampleSpec = std::variant<PowerLawSpec, UniformSpec, NormalSpec, TruncNormalSpec>;

void check_range(const SampleSpec& spec, c10::ScalarType dtype);

template <typename acc_t, typename F>
void visit_sampler(const SampleSpec& spec, c10::ScalarType dtype, F&& f) {
  std::visit([&](const auto& law) { visit_sampler<acc_t>(law, dtype, f); }, spec);
}

// The dtype's values nearest to [low, high] from inside (low <= high, both finite and within
// the dtype's range): the smallest value >= low and the largest <= high. They cross
// (first > second) where the dtype holds no value in [low, high].
std::pair<double, double> dtype_values_within(double low, double high, c10::ScalarType dtype);
// The smallest positive normal number of the dtype.
double dtype_min_normal(c10::ScalarType dtype);

}  // namespace nspl
