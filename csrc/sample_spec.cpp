// What a fill samples: the SampleSpec of each distribution, its constants for the kernels
// (computed in float64), the power law's second moment and the normalising scale, and
// whether the values fit the tensor's dtype.
#include "sample_spec.h"

#include <c10/util/Exception.h>

#include <cfloat>
#include <cmath>
#include <limits>

#include "fill.h"

namespace nspl {

double SampleSpec::magnitude_low() const {
  switch (distribution) {
    case Distribution::PowerLaw:
      return scale;
    default:
      return 0.0;
  }
}

double SampleSpec::magnitude_high() const {
  switch (distribution) {
    case Distribution::PowerLaw:
      return scale * ratio;
    case Distribution::Uniform:
      return scale;
    case Distribution::Normal:
      // The largest |z| a 53-bit u can give is below 8.3 standard deviations.
      return scale * 8.3;
  }
  return scale;
}

namespace {

// The acc_t value nearest to x that is not outside [x, ...] (inward = up) or [..., x].
template <typename acc_t>
acc_t round_inward(double x, bool up) {
  acc_t r = static_cast<acc_t>(x);
  if (up && static_cast<double>(r) < x) r = std::nextafter(r, std::numeric_limits<acc_t>::infinity());
  if (!up && static_cast<double>(r) > x) r = std::nextafter(r, acc_t(0));
  return r;
}

}  // namespace

template <typename acc_t>
PowerLawSampler<acc_t> make_power_law_sampler(const SampleSpec& spec) {
  const double log_ratio = std::log(spec.ratio);
  const double b = 1.0 - spec.alpha;
  const double b_log_ratio = b * log_ratio;
  PowerLawSampler<acc_t> s{};
  s.scale = static_cast<acc_t>(spec.scale);
  s.log_ratio = static_cast<acc_t>(log_ratio);
  s.low = round_inward<acc_t>(spec.magnitude_low(), /*up=*/true);
  s.high = round_inward<acc_t>(spec.magnitude_high(), /*up=*/false);
  // Below this |bL| the log-uniform form differs from the exact one by less than a
  // float64 rounding, while expm1(K) still has full precision in float32.
  if (std::fabs(b_log_ratio) < 1e-20) {
    s.form = PowerLawForm::LogUniform;
    s.base = 0;
    s.inv_b = 0;
    s.expm1_k = 0;
    s.exp_k = 1;
    return s;
  }
  const double k = -std::fabs(b_log_ratio);
  s.form = b < 0 ? PowerLawForm::SmallU : PowerLawForm::SmallOneMinusU;
  s.base = static_cast<acc_t>(b > 0 ? log_ratio : 0.0);
  s.inv_b = static_cast<acc_t>(1.0 / b);
  s.expm1_k = static_cast<acc_t>(std::expm1(k));
  s.exp_k = static_cast<acc_t>(std::exp(k));
  return s;
}

template PowerLawSampler<float> make_power_law_sampler<float>(const SampleSpec&);
template PowerLawSampler<double> make_power_law_sampler<double>(const SampleSpec&);

void check_range(const SampleSpec& spec, c10::ScalarType dtype) {
  double max_value = DBL_MAX;
  switch (dtype) {
    case c10::kHalf:
      max_value = 65504.0;
      break;
    case c10::kBFloat16:
      max_value = 3.3895313892515355e38;
      break;
    case c10::kFloat:
      max_value = FLT_MAX;
      break;
    default:
      break;
  }
  const double high = spec.magnitude_high();
  TORCH_CHECK_VALUE(std::isfinite(high) && high <= max_value, "nspl_filler: the largest |value| ", high,
                    " (scale ", spec.scale, ") overflows ", dtype, " (max ", max_value, ")");
}

namespace {
// log(expm1(x) / x), finite for every finite x (the x > 0 branch never forms e^x).
double log_expm1_ratio(double x) {
  if (x == 0.0) return 0.0;
  if (x > 0.0) return x + std::log(-std::expm1(-x) / x);
  return std::log(std::expm1(x) / x);
}
}  // namespace

double power_law_second_moment(double alpha, double ratio) {
  check_power_law(alpha, ratio);
  const double log_ratio = std::log(ratio);
  const double b = 1.0 - alpha;
  return std::exp(log_expm1_ratio((b + 2.0) * log_ratio) - log_expm1_ratio(b * log_ratio));
}

double normalised_scale(double alpha, double ratio, double gain, double n) {
  check_positive("gain", gain);
  check_positive("fan", n);
  const double sigma = gain / std::sqrt(n);
  return sigma / std::sqrt(power_law_second_moment(alpha, ratio));
}

SampleSpec power_law_spec(double alpha, double low, double high) {
  check_finite("alpha", alpha);
  check_positive("low", low);
  TORCH_CHECK_VALUE(std::isfinite(high) && high > low, "nspl_filler: high must be finite and > low (",
                    low, "), got ", high);
  SampleSpec spec;
  spec.distribution = Distribution::PowerLaw;
  spec.alpha = alpha;
  spec.ratio = high / low;
  TORCH_CHECK_VALUE(spec.ratio > 1 && std::isfinite(spec.ratio),
                    "nspl_filler: high / low must be finite and > 1, got ", spec.ratio);
  spec.scale = low;
  return spec;
}

SampleSpec uniform_spec(double bound) {
  check_positive("bound", bound);
  SampleSpec spec;
  spec.distribution = Distribution::Uniform;
  spec.scale = bound;
  return spec;
}

SampleSpec normal_spec(double std) {
  check_positive("std", std);
  SampleSpec spec;
  spec.distribution = Distribution::Normal;
  spec.scale = std;
  return spec;
}

}  // namespace nspl
