// What a fill samples: the SampleSpec of each distribution, its constants for the kernels
// (computed in float64), the power law's second moment and the normalising scale, and
// whether the values fit the tensor's dtype.
#include "sample_spec.h"

#include <c10/util/Exception.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

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

// The smallest normal and the largest finite value of the dtypes nspl_filler fills.
struct DtypeRange {
  double min_normal;
  double max;
};
DtypeRange dtype_range(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kHalf:
      return {6.103515625e-05, 65504.0};
    case c10::kBFloat16:
      return {1.1754943508222875e-38, 3.3895313892515355e38};
    case c10::kFloat:
      return {1.1754943508222875e-38, 3.4028234663852886e38};
    default:
      return {2.2250738585072014e-308, 1.7976931348623157e308};
  }
}

// The value of T (float, c10::Half, c10::BFloat16) nearest to x > 0 from the side of x
// that `up` names: the smallest T >= x (up) or the largest T <= x.
template <typename T>
double round_toward(double x, bool up) {
  T r = static_cast<T>(static_cast<float>(x));
  if constexpr (std::is_same_v<T, float>) {
    if (up && static_cast<double>(r) < x) r = std::nextafter(r, std::numeric_limits<float>::infinity());
    if (!up && static_cast<double>(r) > x) r = std::nextafter(r, 0.0f);
  } else {
    // Positive finite values of a binary format: consecutive values have consecutive bits.
    if (up && static_cast<double>(static_cast<float>(r)) < x) r = T(static_cast<uint16_t>(r.x + 1), T::from_bits());
    if (!up && static_cast<double>(static_cast<float>(r)) > x) r = T(static_cast<uint16_t>(r.x - 1), T::from_bits());
  }
  return static_cast<double>(static_cast<float>(r));
}

double round_into_dtype(double x, c10::ScalarType dtype, bool up) {
  switch (dtype) {
    case c10::kHalf:
      return round_toward<c10::Half>(x, up);
    case c10::kBFloat16:
      return round_toward<c10::BFloat16>(x, up);
    case c10::kFloat:
      return round_toward<float>(x, up);
    default:
      return x;
  }
}

// [c, c·r] rounded inward to the dtype (see PowerLawConstants::low, high).
std::pair<double, double> inward_bounds(const SampleSpec& spec, c10::ScalarType dtype) {
  return {round_into_dtype(spec.magnitude_low(), dtype, /*up=*/true),
          round_into_dtype(spec.magnitude_high(), dtype, /*up=*/false)};
}

// Below this |b·L| the log-uniform form differs from the exact inverse CDF by less than a
// float64 rounding.
constexpr double kLogUniformThreshold = 1e-20;

}  // namespace

bool is_log_uniform(const SampleSpec& spec) {
  return std::fabs((1.0 - spec.alpha) * std::log(spec.ratio)) < kLogUniformThreshold;
}

template <typename acc_t>
LogUniformConstants<acc_t> log_uniform_constants(const SampleSpec& spec, c10::ScalarType dtype) {
  const auto [low, high] = inward_bounds(spec, dtype);
  // log2 r rounded to acc_t, then scaled exactly by the cell unit of acc_t's variate.
  const acc_t log2_ratio = static_cast<acc_t>(std::log2(spec.ratio));
  const acc_t cell = std::is_same_v<acc_t, float> ? acc_t(0x1p-32) : acc_t(0x1p-64);
  return {log2_ratio * cell, static_cast<acc_t>(std::log2(spec.scale)),
          static_cast<acc_t>(std::log2(spec.scale) + std::log2(spec.ratio)), static_cast<acc_t>(low),
          static_cast<acc_t>(high)};
}

namespace {
// -|b|·L; -inf where |b| is near the largest double, and exp(K) = 0, expm1(K) = -1 then.
double power_law_k(const SampleSpec& spec) { return -std::fabs((1.0 - spec.alpha) * std::log(spec.ratio)); }
}  // namespace

template <typename acc_t>
PowerLawForm power_law_form(const SampleSpec& spec) {
  if (spec.alpha < 1.0) return PowerLawForm::AlphaBelowOne;
  // Where exp(K) is below the normal numbers it is stored as 0: no subnormal operand
  // reaches the kernels, and s̄ >= 2^-32 keeps their log's argument normal.
  return std::exp(power_law_k(spec)) < static_cast<double>(std::numeric_limits<acc_t>::min())
             ? PowerLawForm::AlphaAboveOneTinyExpK
             : PowerLawForm::AlphaAboveOne;
}

template <typename acc_t, PowerLawForm kForm>
PowerLawConstants<acc_t, kForm> power_law_constants(const SampleSpec& spec, c10::ScalarType dtype) {
  const double b = 1.0 - spec.alpha;
  const double k = power_law_k(spec);
  const auto [low, high] = inward_bounds(spec, dtype);
  PowerLawConstants<acc_t, kForm> c{};
  c.expm1_k = static_cast<acc_t>(std::expm1(k));
  c.exp_k = kForm == PowerLawForm::AlphaAboveOneTinyExpK ? acc_t(0) : static_cast<acc_t>(std::exp(k));
  c.log2e_over_b = static_cast<acc_t>(1.44269504088896340736 / b);
  c.inv_b = static_cast<acc_t>(1.0 / b);
  c.log2_base = static_cast<acc_t>(std::log2(spec.scale) + (b > 0 ? std::log2(spec.ratio) : 0.0));
  c.low = static_cast<acc_t>(low);
  c.high = static_cast<acc_t>(high);
  return c;
}

template LogUniformConstants<float> log_uniform_constants<float>(const SampleSpec&, c10::ScalarType);
template LogUniformConstants<double> log_uniform_constants<double>(const SampleSpec&, c10::ScalarType);
template PowerLawForm power_law_form<float>(const SampleSpec&);
template PowerLawForm power_law_form<double>(const SampleSpec&);
#define NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(acc_t, form) \
  template PowerLawConstants<acc_t, form> power_law_constants<acc_t, form>(const SampleSpec&, c10::ScalarType)
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(float, PowerLawForm::AlphaAboveOne);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(float, PowerLawForm::AlphaAboveOneTinyExpK);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(float, PowerLawForm::AlphaBelowOne);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(double, PowerLawForm::AlphaAboveOne);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(double, PowerLawForm::AlphaAboveOneTinyExpK);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(double, PowerLawForm::AlphaBelowOne);
#undef NSPL_INSTANTIATE_POWER_LAW_CONSTANTS

void check_range(const SampleSpec& spec, c10::ScalarType dtype) {
  const DtypeRange range = dtype_range(dtype);
  const double high = spec.magnitude_high();
  TORCH_CHECK_VALUE(std::isfinite(high) && high <= range.max, "nspl_filler: the largest |value| ", high,
                    " (scale ", spec.scale, ") overflows ", dtype, " (max ", range.max, ")");
  if (spec.distribution != Distribution::PowerLaw) return;
  const double low = spec.magnitude_low();
  TORCH_CHECK_VALUE(low >= range.min_normal, "nspl_filler: the smallest |value| c = ", low,
                    " is below the smallest normal ", dtype, " (", range.min_normal,
                    "), so values would be subnormal or zero; use a larger scale or low, a smaller ratio, "
                    "or a wider dtype");
  const auto [low_in, high_in] = inward_bounds(spec, dtype);
  TORCH_CHECK_VALUE(low_in <= high_in, "nspl_filler: no ", dtype, " value lies in [c, c·r] = [", low, ", ", high,
                    "]; use a larger ratio or a wider dtype");
}

std::pair<double, double> dtype_values_within(double low, double high, c10::ScalarType dtype) {
  // A value of either sign: its magnitude rounded toward the inside of [low, high].
  const auto inward = [dtype](double x, bool up) {
    if (x == 0.0) return 0.0;
    return x > 0 ? round_into_dtype(x, dtype, up) : -round_into_dtype(-x, dtype, !up);
  };
  return {inward(low, /*up=*/true), inward(high, /*up=*/false)};
}

double dtype_min_normal(c10::ScalarType dtype) { return dtype_range(dtype).min_normal; }

namespace {
// ln(-expm1(-|x|)) = ln(1 - e^-|x|) for x != 0: 0 at x = ±inf, accurate for small |x|.
double log_one_minus_exp(double x) { return std::log(-std::expm1(-std::fabs(x))); }
}  // namespace

double power_law_log_second_moment(double alpha, double ratio) {
  check_power_law(alpha, ratio);
  // E[y²] = g(x2) / g(x1) with g(x) = expm1(x) / x, x1 = b·L, x2 = (b + 2)·L, b = 1 - alpha.
  // For x != 0, ln g(x) = max(x, 0) + ln(1 - e^-|x|) - ln|x|, and x2 / x1 = (b + 2) / b, so
  //   ln E[y²] = (max(x2, 0) - max(x1, 0)) + ln(1 - e^-|x2|) - ln(1 - e^-|x1|) - ln|(b + 2) / b|,
  // where the first term is 2L, (b + 2)·L or 0 exactly: no two large numbers are ever
  // subtracted, so it stays accurate for every finite alpha (x may even overflow to ±inf)
  // and every ratio, including where E[y²] itself overflows a double.
  const double log_ratio = std::log(ratio);
  const double b = 1.0 - alpha;
  const double x1 = b * log_ratio;
  const double x2 = (b + 2.0) * log_ratio;
  const auto log_g = [](double x) {  // ln g(x), for x2 = 0 or x1 = 0 (alpha = 3 or 1)
    return x == 0.0 ? 0.0 : std::max(x, 0.0) + log_one_minus_exp(x) - std::log(std::fabs(x));
  };
  if (b == 0.0) return log_g(x2);
  if (b == -2.0) return -log_g(x1);
  const double positive_parts = b > 0 ? 2.0 * log_ratio : b < -2.0 ? 0.0 : x2;
  const double log_fan_ratio = (b > 0 || b < -2.0) ? std::log1p(2.0 / b) : std::log((b + 2.0) / -b);
  return positive_parts + log_one_minus_exp(x2) - log_one_minus_exp(x1) - log_fan_ratio;
}

double power_law_second_moment(double alpha, double ratio) {
  const double log_moment = power_law_log_second_moment(alpha, ratio);
  const double moment = std::exp(log_moment);
  TORCH_CHECK_VALUE(std::isfinite(moment), "nspl_filler: E[y²] = e^", log_moment, " for alpha ", alpha,
                    " and ratio ", ratio, " overflows float64; its logarithm is available");
  return moment;
}

double normalised_scale(double alpha, double ratio, double gain, double n) {
  check_positive("gain", gain);
  check_positive("fan", n);
  // In logarithms: E[y²] may overflow a double where c is still a normal number.
  return std::exp(std::log(gain) - 0.5 * std::log(n) - 0.5 * power_law_log_second_moment(alpha, ratio));
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
