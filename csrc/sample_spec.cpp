// The host-side math of each distribution of sample_spec.h, one section each: its spec
// builder, its range check and its samplers' constants (computed in float64); the power law's
// second moment and the normalising scale with it.
#include "sample_spec.h"

#include <c10/util/Exception.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <variant>

#include "fill.h"

namespace nspl {

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

// ValueError unless the largest |value|, `high`, of a law with scale `scale` fits the dtype.
void check_largest_magnitude(double high, double scale, c10::ScalarType dtype) {
  const DtypeRange range = dtype_range(dtype);
  TORCH_CHECK_VALUE(std::isfinite(high) && high <= range.max, "nspl_filler: the largest |value| ", high,
                    " (scale ", scale, ") overflows ", dtype, " (max ", range.max, ")");
}

}  // namespace

std::pair<double, double> dtype_values_within(double low, double high, c10::ScalarType dtype) {
  // A value of either sign: its magnitude rounded toward the inside of [low, high].
  const auto inward = [dtype](double x, bool up) {
    if (x == 0.0) return 0.0;
    return x > 0 ? round_into_dtype(x, dtype, up) : -round_into_dtype(-x, dtype, !up);
  };
  return {inward(low, /*up=*/true), inward(high, /*up=*/false)};
}

double dtype_min_normal(c10::ScalarType dtype) { return dtype_range(dtype).min_normal; }

// ---------------------------------------------------------------------------------
// The power law
// ---------------------------------------------------------------------------------
PowerLawSpec power_law_spec(double alpha, double low, double high) {
  check_finite("alpha", alpha);
  check_positive("low", low);
  TORCH_CHECK_VALUE(std::isfinite(high) && high > low, "nspl_filler: high must be finite and > low (",
                    low, "), got ", high);
  const double ratio = high / low;
  TORCH_CHECK_VALUE(ratio > 1 && std::isfinite(ratio), "nspl_filler: high / low must be finite and > 1, got ",
                    ratio);
  return PowerLawSpec{alpha, ratio, low};
}

namespace {

// [c, c·r] rounded inward to the dtype (see PowerLawConstants::low, high).
std::pair<double, double> inward_bounds(const PowerLawSpec& spec, c10::ScalarType dtype) {
  return {round_into_dtype(spec.magnitude_low(), dtype, /*up=*/true),
          round_into_dtype(spec.magnitude_high(), dtype, /*up=*/false)};
}

// Below this |b·L| the log-uniform form differs from the exact inverse CDF by less than a
// float64 rounding.
constexpr double kLogUniformThreshold = 1e-20;

}  // namespace

bool is_log_uniform(const PowerLawSpec& spec) {
  return std::fabs((1.0 - spec.alpha) * std::log(spec.ratio)) < kLogUniformThreshold;
}

template <typename acc_t>
LogUniformConstants<acc_t> log_uniform_constants(const PowerLawSpec& spec, c10::ScalarType dtype) {
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
double power_law_k(const PowerLawSpec& spec) { return -std::fabs((1.0 - spec.alpha) * std::log(spec.ratio)); }
}  // namespace

template <typename acc_t>
PowerLawForm power_law_form(const PowerLawSpec& spec) {
  if (spec.alpha < 1.0) return PowerLawForm::AlphaBelowOne;
  // Where exp(K) is below the normal numbers it is stored as 0: no subnormal operand
  // reaches the kernels, and s̄ >= 2^-32 keeps their log's argument normal.
  return std::exp(power_law_k(spec)) < static_cast<double>(std::numeric_limits<acc_t>::min())
             ? PowerLawForm::AlphaAboveOneTinyExpK
             : PowerLawForm::AlphaAboveOne;
}

template <typename acc_t, PowerLawForm kForm>
PowerLawConstants<acc_t, kForm> power_law_constants(const PowerLawSpec& spec, c10::ScalarType dtype) {
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

template LogUniformConstants<float> log_uniform_constants<float>(const PowerLawSpec&, c10::ScalarType);
template LogUniformConstants<double> log_uniform_constants<double>(const PowerLawSpec&, c10::ScalarType);
template PowerLawForm power_law_form<float>(const PowerLawSpec&);
template PowerLawForm power_law_form<double>(const PowerLawSpec&);
#define NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(acc_t, form) \
  template PowerLawConstants<acc_t, form> power_law_constants<acc_t, form>(const PowerLawSpec&, c10::ScalarType)
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(float, PowerLawForm::AlphaAboveOne);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(float, PowerLawForm::AlphaAboveOneTinyExpK);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(float, PowerLawForm::AlphaBelowOne);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(double, PowerLawForm::AlphaAboveOne);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(double, PowerLawForm::AlphaAboveOneTinyExpK);
NSPL_INSTANTIATE_POWER_LAW_CONSTANTS(double, PowerLawForm::AlphaBelowOne);
#undef NSPL_INSTANTIATE_POWER_LAW_CONSTANTS

void check_range(const PowerLawSpec& spec, c10::ScalarType dtype) {
  const double high = spec.magnitude_high();
  check_largest_magnitude(high, spec.scale, dtype);
  const DtypeRange range = dtype_range(dtype);
  const double low = spec.magnitude_low();
  TORCH_CHECK_VALUE(low >= range.min_normal, "nspl_filler: the smallest |value| c = ", low,
                    " is below the smallest normal ", dtype, " (", range.min_normal,
                    "), so values would be subnormal or zero; use a larger scale or low, a smaller ratio, "
                    "or a wider dtype");
  const auto [low_in, high_in] = inward_bounds(spec, dtype);
  TORCH_CHECK_VALUE(low_in <= high_in, "nspl_filler: no ", dtype, " value lies in [c, c·r] = [", low, ", ", high,
                    "]; use a larger ratio or a wider dtype");
}

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

// ---------------------------------------------------------------------------------
// The uniform and the normal: the largest |value| is their only limit
// ---------------------------------------------------------------------------------
UniformSpec uniform_spec(double bound) {
  check_positive("bound", bound);
  return UniformSpec{bound};
}

void check_range(const UniformSpec& spec, c10::ScalarType dtype) {
  check_largest_magnitude(spec.magnitude_high(), spec.bound, dtype);
}

NormalSpec normal_spec(double std) {
  check_positive("std", std);
  return NormalSpec{std};
}

void check_range(const NormalSpec& spec, c10::ScalarType dtype) {
  check_largest_magnitude(spec.magnitude_high(), spec.std, dtype);
}

// ---------------------------------------------------------------------------------
// The truncated normal
// ---------------------------------------------------------------------------------
TruncNormalSpec trunc_normal_spec(double mean, double std, double a, double b) {
  check_finite("mean", mean);
  check_positive("std", std);
  TORCH_CHECK_VALUE(!std::isnan(a) && !std::isnan(b) && a < b, "nspl_filler: the bounds need a < b (either may be "
                    "infinite, neither NaN), got a = ", a, ", b = ", b);
  return TruncNormalSpec{mean, std, a, b};
}

namespace {

// docs/spec.md §2b. Every element's tail mass (its p or q, whichever is smaller) is at least
// cell·D, cell = 2^-32 (float arithmetic) or 2^-64 (double): the smallest small side of
// unit_variates. Where Φ(α) or Φ(-β) is below the smallest normal number of the arithmetic
// it is stored as 0, which changes such a mass by less than one rounding when D is at least
// kMinMass: 2^-126 / (2^-32·2^-70) = 2^-24, and 2^-1022 / (2^-64·2^-905) = 2^-53.
struct TruncNormalArith {
  double cell;
  double min_mass;
  const char* min_mass_text;
  // mean (unless 0) and std are at least this, so that no intermediate value of the sampler
  // (std·z, mean + std·z) is a subnormal number, whose treatment differs between devices.
  double min_scale;
  const char* min_scale_text;
  const char* name;
};

TruncNormalArith trunc_normal_arith(c10::ScalarType dtype) {
  if (dtype == c10::kDouble) return {0x1p-64, 0x1p-905, "2^-905", 0x1p-900, "2^-900", "float64"};
  return {0x1p-32, 0x1p-70, "2^-70", 0x1p-60, "2^-60", "float32 (the arithmetic of float16, bfloat16 and float32 fills)"};
}

// [a, b] cut to the values the fill reaches: |z| <= sqrt(-2 ln(cell·D)), since Φ(-x) < e^(-x²/2).
std::pair<double, double> trunc_normal_reach(const TruncNormalSpec& spec, const TruncNormalMasses& masses,
                                             const TruncNormalArith& arith) {
  const double z_bound = std::sqrt(-2.0 * std::log(arith.cell * masses.mass));
  return {std::max(spec.lower, spec.mean - spec.std * z_bound), std::min(spec.upper, spec.mean + spec.std * z_bound)};
}

// The clamp bounds: [a, b] within the dtype's range, rounded inward to its values; a bound that
// would be a subnormal number is moved inward to 0 or to the smallest normal number.
std::pair<double, double> trunc_normal_bounds(const TruncNormalSpec& spec, c10::ScalarType dtype) {
  const DtypeRange range = dtype_range(dtype);
  const auto within_range = [&](double x) { return std::min(std::max(x, -range.max), range.max); };
  auto [low, high] = dtype_values_within(within_range(spec.lower), within_range(spec.upper), dtype);
  if (low != 0 && std::fabs(low) < range.min_normal) low = low > 0 ? range.min_normal : 0.0;
  if (high != 0 && std::fabs(high) < range.min_normal) high = high < 0 ? -range.min_normal : 0.0;
  return {low + 0.0, high + 0.0};
}

}  // namespace

void check_range(const TruncNormalSpec& spec, c10::ScalarType dtype) {
  const DtypeRange range = dtype_range(dtype);
  const TruncNormalArith arith = trunc_normal_arith(dtype);
  const DtypeRange arith_range = dtype_range(dtype == c10::kDouble ? c10::kDouble : c10::kFloat);
  TORCH_CHECK_VALUE(spec.std >= arith.min_scale && spec.std <= arith_range.max, "nspl_filler: std must lie in [",
                    arith.min_scale_text, ", ", arith_range.max, "] for ", dtype, " (", arith.name, "), got ",
                    spec.std);
  TORCH_CHECK_VALUE(spec.mean == 0 || (std::fabs(spec.mean) >= arith.min_scale && std::fabs(spec.mean) <= arith_range.max),
                    "nspl_filler: mean must be 0 or of magnitude in [", arith.min_scale_text, ", ", arith_range.max,
                    "] for ", dtype, " (", arith.name, "), got ", spec.mean);
  const TruncNormalMasses masses = trunc_normal_masses(spec);
  TORCH_CHECK_VALUE(masses.mass >= arith.min_mass, "nspl_filler: [a, b] = [", spec.lower, ", ", spec.upper,
                    "] holds probability ", masses.mass, " of the normal with mean ", spec.mean, " and std ", spec.std,
                    ", below the ", arith.min_mass_text, " that a ", dtype, " fill resolves; move a or b towards the mean",
                    dtype == c10::kDouble ? "" : " or fill a float64 tensor");
  const auto [reach_low, reach_high] = trunc_normal_reach(spec, masses, arith);
  TORCH_CHECK_VALUE(reach_low >= -range.max && reach_high <= range.max, "nspl_filler: the values of the normal with mean ",
                    spec.mean, " and std ", spec.std, " on [a, b] = [", spec.lower, ", ", spec.upper, "] reach [",
                    reach_low, ", ", reach_high, "], beyond the range of ", dtype, " (max ", range.max,
                    "); use a smaller mean or std, a narrower [a, b], or a wider dtype");
  const auto [low, high] = trunc_normal_bounds(spec, dtype);
  TORCH_CHECK_VALUE(low <= high, "nspl_filler: no ", dtype, " value lies in [a, b] = [", spec.lower, ", ", spec.upper,
                    "]; widen it or use a wider dtype");
}

TruncNormalMasses trunc_normal_masses(const TruncNormalSpec& spec) {
  const double alpha = (spec.lower - spec.mean) / spec.std;
  const double beta = (spec.upper - spec.mean) / spec.std;
  // Φ(x) = erfc(-x/√2) / 2, accurate in the lower tail; Φ(±inf) is 1 or 0.
  const auto phi = [](double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); };
  const double lower = phi(alpha);
  const double upper = phi(-beta);
  double mass;
  if (alpha >= 0) {
    mass = phi(-alpha) - upper;  // both upper tails: the larger first
  } else if (beta <= 0) {
    mass = phi(beta) - lower;  // both lower tails
  } else {
    mass = (1.0 - lower) - upper;  // each tail at most 1/2: nothing cancels
  }
  return {lower, upper, mass};
}

template <typename acc_t>
TruncNormalConstants<acc_t> trunc_normal_constants(const TruncNormalSpec& spec, c10::ScalarType dtype) {
  const TruncNormalMasses masses = trunc_normal_masses(spec);
  const auto [low, high] = trunc_normal_bounds(spec, dtype);
  const auto flushed = [](double mass) {
    return mass < static_cast<double>(std::numeric_limits<acc_t>::min()) ? acc_t(0) : static_cast<acc_t>(mass);
  };
  TruncNormalConstants<acc_t> c{};
  c.lower_mass = flushed(masses.lower);
  c.upper_mass = flushed(masses.upper);
  c.mass = static_cast<acc_t>(masses.mass);
  c.mean = static_cast<acc_t>(spec.mean + 0.0);  // +0.0 for a mean of -0.0: no zeros of both signs
  c.std = static_cast<acc_t>(spec.std);
  c.low = static_cast<acc_t>(low);
  c.high = static_cast<acc_t>(high);
  return c;
}

template TruncNormalConstants<float> trunc_normal_constants<float>(const TruncNormalSpec&, c10::ScalarType);
template TruncNormalConstants<double> trunc_normal_constants<double>(const TruncNormalSpec&, c10::ScalarType);

// ---------------------------------------------------------------------------------
// Any distribution
// ---------------------------------------------------------------------------------
void check_range(const SampleSpec& spec, c10::ScalarType dtype) {
  std::visit([dtype](const auto& law) { check_range(law, dtype); }, spec);
}

}  // namespace nspl
