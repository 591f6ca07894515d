// The random stream and the per-element samplers of nspl_filler, shared by the CPU
// and CUDA kernels so the math is written once (SPEC §2 and §4).
//
// Everything here is plain arithmetic on 32-bit words: no torch types, so the header
// compiles under gcc, nvcc and in the AVX2 translation unit alike.
#pragma once

#include <cstdint>
#include <cstring>
#include <math.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define NSPL_HD __host__ __device__ __forceinline__
#else
#define NSPL_HD inline
#endif

namespace nspl {

// ---------------------------------------------------------------------------------
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11).
// Counter = (block lo, block hi, 0, 0), key = (seed lo, seed hi): one call gives four
// independent 32-bit words, so one call serves four float32 (or two float64) elements.
// ---------------------------------------------------------------------------------
struct PhiloxWords {
  uint32_t w[4];
};

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

NSPL_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

NSPL_HD PhiloxWords philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                  uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const uint32_t hi0 = mulhi32(kPhiloxM0, c0);
    const uint32_t lo0 = kPhiloxM0 * c0;
    const uint32_t hi1 = mulhi32(kPhiloxM1, c2);
    const uint32_t lo1 = kPhiloxM1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

// Block `block` of the stream with 64-bit key `key` (SPEC §4).
NSPL_HD PhiloxWords philox_block(uint64_t key, uint64_t block) {
  return philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
                       static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}

// ---------------------------------------------------------------------------------
// Uniform variates. `acc_t` is the arithmetic type: float for 16/32-bit outputs,
// double for float64 outputs. A float element uses one word of a block (4 per block),
// a double element two (2 per block).
// ---------------------------------------------------------------------------------
template <typename acc_t>
struct Lanes;

template <>
struct Lanes<float> {
  static constexpr int kPerBlock = 4;
  // u = ((w >> 8) + 0.5) * 2^-24, rounded to float32 (it can round to 1.0).
  NSPL_HD static float unit(const PhiloxWords& x, int lane) {
    return (static_cast<float>(x.w[lane] >> 8) + 0.5f) * 5.9604644775390625e-08f;
  }
  // 2u - 1 without rounding: (k - 2^23 + 0.5) * 2^-23 is exact in float32, in (-1, 1).
  NSPL_HD static float symmetric_unit(const PhiloxWords& x, int lane) {
    return (static_cast<float>(static_cast<int32_t>(x.w[lane] >> 8) - (1 << 23)) + 0.5f) *
           1.1920928955078125e-07f;
  }
  NSPL_HD static bool negative(const PhiloxWords& x, int lane) { return (x.w[lane] & 1u) != 0u; }
};

template <>
struct Lanes<double> {
  static constexpr int kPerBlock = 2;
  NSPL_HD static uint64_t bits(const PhiloxWords& x, int lane) {
    return (static_cast<uint64_t>(x.w[2 * lane]) << 32) | x.w[2 * lane + 1];
  }
  // u = ((v >> 11) + 0.5) * 2^-53 with v = wa * 2^32 + wb.
  NSPL_HD static double unit(const PhiloxWords& x, int lane) {
    return (static_cast<double>(bits(x, lane) >> 11) + 0.5) * 1.1102230246251565e-16;
  }
  NSPL_HD static double symmetric_unit(const PhiloxWords& x, int lane) {
    const int64_t k = static_cast<int64_t>(bits(x, lane) >> 11) - (int64_t(1) << 52);
    return (static_cast<double>(k) + 0.5) * 2.220446049250313e-16;
  }
  NSPL_HD static bool negative(const PhiloxWords& x, int lane) { return (x.w[2 * lane + 1] & 1u) != 0u; }
};

// ---------------------------------------------------------------------------------
// float32 exp, log and log1p of our own, used by every path in place of libm's.
//
// Why not libm: the magnitude is y = exp(base + t/b) with t a logarithm, and a one-ulp
// change in t moves y by up to |base + t/b| ulp, about 69 ulp at r = 1e30. Libraries
// disagree in the last place often enough to matter (glibc 2.36's log1pf is not the
// nearest float for about 7% of arguments; CUDA's, newer glibc's and the AVX2 kernels'
// are others again), so the stream would give different values on different machines.
// These functions are plain float multiplies and adds (no fma: -ffp-contract=off and
// nvcc --fmad=false keep them unfused), integer bit operations and comparisons, which
// every IEEE-754 machine rounds alike; cpu/fill_cpu_avx2.cpp performs the same operations
// in the same order on eight lanes. So every path gives the same bits, and each function
// is within about one ulp of the exact value (tests/test_simd.py measures it).
// The polynomial coefficients are minimax fits: tools/fit_polynomials.py.
// ---------------------------------------------------------------------------------
NSPL_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

NSPL_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// 2^n for -126 <= n <= 127.
NSPL_HD float pow2i(int32_t n) { return bits_float(static_cast<uint32_t>(n + 127) << 23); }

namespace f32 {
constexpr float kLog2e = 1.442695f;
// ln 2 = kLn2Hi + kLn2Lo; kLn2Hi = 355/512 has 9 significant bits, so n·kLn2Hi is exact
// for every exponent n a float can have.
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.1219444e-4f;
// x + 1.5·2^23 - 1.5·2^23 rounds x to the nearest integer for |x| < 2^22.
constexpr float kRoundMagic = 12582912.0f;
constexpr uint32_t kSqrtHalfBits = 0x3f3504f3u;  // sqrt(1/2)
constexpr float kMinNormal = 1.17549435e-38f;
constexpr float kTwo23 = 8388608.0f;
// e^r = 1 + r + r^2·P(r) on |r| <= ln(2)/2, relative error 2^-28.
constexpr float kExpP0 = 0.49999994f, kExpP1 = 0.16666515f, kExpP2 = 0.041668456f,
                kExpP3 = 0.008369419f, kExpP4 = 0.0013813145f;
// log(1 + f) = f - f^2/2 + f^3·Q(f) on sqrt(1/2) - 1 <= f <= sqrt(2) - 1, relative
// error 2^-27.
constexpr float kLogQ0 = 0.3333333f, kLogQ1 = -0.25000837f, kLogQ2 = 0.20001292f,
                kLogQ3 = -0.16622765f, kLogQ4 = 0.14199696f, kLogQ5 = -0.13164185f,
                kLogQ6 = 0.12779112f, kLogQ7 = -0.07646102f;
}  // namespace f32

// e^x: x = n·ln 2 + r with |r| <= ln(2)/2, e^x = 2^n·e^r. Results down to the smallest
// denormal; overflows to inf past ln(FLT_MAX); NaN stays NaN.
NSPL_HD float exp_f32(float x) {
  using namespace f32;
  // Outside [-104, 89] e^x is 0 or inf in float32; the clamp keeps n in [-150, 128].
  x = x > 89.0f ? 89.0f : x;
  x = x < -104.0f ? -104.0f : x;
  const float shifted = x * kLog2e + kRoundMagic;
  const float n = shifted - kRoundMagic;
  const int32_t ni = static_cast<int32_t>(float_bits(shifted) - float_bits(kRoundMagic));
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float q = kExpP4;
  q = q * r + kExpP3;
  q = q * r + kExpP2;
  q = q * r + kExpP1;
  q = q * r + kExpP0;
  const float er = 1.0f + (r + (r * r) * q);
  // 2^n as two normal factors: the first product is exact, so a denormal result is
  // rounded once.
  const int32_t n1 = ni >> 1;
  return (er * pow2i(n1)) * pow2i(ni - n1);
}

// log(a + c) where c is the rounding error of a sum a (|c| <= ulp(a)/2; 0 for a plain
// log): a = 2^e·m with m in [sqrt(1/2), sqrt(2)), log(a + c) = e·ln 2 + log(1 + f) with
// f = m - 1 + c·2^-e. a = 0 gives -inf, a < 0 or NaN gives NaN, a = inf gives inf.
NSPL_HD float log_f32_corrected(float a, float c) {
  using namespace f32;
  if (!(a > 0.0f)) return a == 0.0f ? -INFINITY : NAN;
  if (a == INFINITY) return a;
  int32_t e_denormal = 0;
  if (a < kMinNormal) {
    a *= kTwo23;
    c *= kTwo23;
    e_denormal = -23;
  }
  // Subtracting sqrt(1/2)'s bits moves the exponent boundary from 1 to sqrt(1/2).
  const uint32_t shifted = float_bits(a) - kSqrtHalfBits;
  const int32_t e = static_cast<int32_t>(shifted) >> 23;
  const float m = bits_float((shifted & 0x007fffffu) + kSqrtHalfBits);
  // c matters only next to f's last bits; 2^-126 stands in for 2^-127 and 2^-128 there.
  const float f = (m - 1.0f) + c * pow2i(-(e < 126 ? e : 126));
  const float f2 = f * f;
  float q = kLogQ7;
  q = q * f + kLogQ6;
  q = q * f + kLogQ5;
  q = q * f + kLogQ4;
  q = q * f + kLogQ3;
  q = q * f + kLogQ2;
  q = q * f + kLogQ1;
  q = q * f + kLogQ0;
  const float ef = static_cast<float>(e + e_denormal);
  const float tail = (f2 * f) * q + ef * kLn2Lo;
  return ((tail - 0.5f * f2) + f) + ef * kLn2Hi;
}

NSPL_HD float log_f32(float x) { return log_f32_corrected(x, 0.0f); }

// log(1 + p): 1 + p = a + c exactly (Knuth's TwoSum), and log(a + c) keeps every digit
// of p that the rounded sum a drops.
NSPL_HD float log1p_f32(float p) {
  const float a = 1.0f + p;
  const float p_part = a - 1.0f;
  const float c = (1.0f - (a - p_part)) + (p - p_part);
  return log_f32_corrected(a, c);
}

// ---------------------------------------------------------------------------------
// The float64 counterparts, for the same reason and with the same structure; log uses
// the atanh form log(1 + f) = 2·atanh(f / (2 + f)), whose series in s^2 converges fast
// enough for double precision (one correctly rounded division, the same everywhere).
// ---------------------------------------------------------------------------------
NSPL_HD uint64_t double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

NSPL_HD double bits_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// 2^n for -1022 <= n <= 1023.
NSPL_HD double pow2i_f64(int64_t n) { return bits_double(static_cast<uint64_t>(n + 1023) << 52); }

namespace f64 {
constexpr double kLog2e = 1.4426950408889634;
// ln 2 = kLn2Hi + kLn2Lo; kLn2Hi has 32 significant bits, so n·kLn2Hi is exact for
// every exponent n a double can have.
constexpr double kLn2Hi = 0.6931471803691238;
constexpr double kLn2Lo = 1.9082149292705877e-10;
constexpr double kRoundMagic = 6755399441055744.0;  // 1.5·2^52
constexpr uint64_t kSqrtHalfBits = 0x3fe6a09e667f3bcdull;
constexpr uint64_t kMantissaMask = 0x000fffffffffffffull;
// Added to the exponent field so the (signed) exponent difference stays positive.
constexpr uint64_t kExponentBias = uint64_t(1024) << 52;
constexpr double kMinNormal = 2.2250738585072014e-308;
constexpr double kTwo54 = 18014398509481984.0;
// e^r = 1 + r + r^2·P(r) on |r| <= ln(2)/2, relative error 2^-57.8.
constexpr double kExpP0 = 0.5000000000000012, kExpP1 = 0.16666666666666385, kExpP2 = 0.04166666666651916,
                 kExpP3 = 0.008333333333507656, kExpP4 = 0.001388888894691977,
                 kExpP5 = 0.0001984126948617589, kExpP6 = 2.480148935244164e-05,
                 kExpP7 = 2.755759717274139e-06, kExpP8 = 2.7631687291807605e-07,
                 kExpP9 = 2.499899734355423e-08;
// 2·atanh(s) = 2s + s·z·T(z), z = s^2, |s| <= 3 - 2·sqrt(2), relative error 2^-59.3.
constexpr double kLogT0 = 0.6666666666666744, kLogT1 = 0.3999999999934089, kLogT2 = 0.28571428760269146,
                 kLogT3 = 0.22222196601517677, kLogT4 = 0.18183673301765763,
                 kLogT5 = 0.15311108796450834, kLogT6 = 0.1482681178421262;
}  // namespace f64

// e^x as exp_f32 does it, in double: down to the smallest denormal, inf past
// ln(DBL_MAX), NaN stays NaN.
NSPL_HD double exp_f64(double x) {
  using namespace f64;
  // Outside [-746, 710] e^x is 0 or inf in float64; the clamp keeps n in [-1077, 1025].
  x = x > 710.0 ? 710.0 : x;
  x = x < -746.0 ? -746.0 : x;
  const double shifted = x * kLog2e + kRoundMagic;
  const double n = shifted - kRoundMagic;
  // n + 2048 > 0, so halving it is a logical shift (AVX2 has no 64-bit arithmetic one).
  const int64_t n_biased = static_cast<int64_t>(double_bits(shifted) - double_bits(kRoundMagic)) + 2048;
  double r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  double q = kExpP9;
  q = q * r + kExpP8;
  q = q * r + kExpP7;
  q = q * r + kExpP6;
  q = q * r + kExpP5;
  q = q * r + kExpP4;
  q = q * r + kExpP3;
  q = q * r + kExpP2;
  q = q * r + kExpP1;
  q = q * r + kExpP0;
  const double er = 1.0 + (r + (r * r) * q);
  const int64_t n1 = (n_biased >> 1) - 1024;
  return (er * pow2i_f64(n1)) * pow2i_f64(n_biased - 2048 - n1);
}

// log(a + c) as log_f32_corrected does it, in double.
NSPL_HD double log_f64_corrected(double a, double c) {
  using namespace f64;
  if (!(a > 0.0)) return a == 0.0 ? -INFINITY : NAN;
  if (a == INFINITY) return a;
  int64_t e_denormal = 0;
  if (a < kMinNormal) {
    a *= kTwo54;
    c *= kTwo54;
    e_denormal = -54;
  }
  const uint64_t shifted = double_bits(a) - kSqrtHalfBits + kExponentBias;
  const int64_t e = static_cast<int64_t>(shifted >> 52) - 1024;
  const double m = bits_double((shifted & kMantissaMask) + kSqrtHalfBits);
  const double f = (m - 1.0) + c * pow2i_f64(-(e < 1022 ? e : 1022));
  const double s = f / (2.0 + f);
  const double z = s * s;
  double t = kLogT6;
  t = t * z + kLogT5;
  t = t * z + kLogT4;
  t = t * z + kLogT3;
  t = t * z + kLogT2;
  t = t * z + kLogT1;
  t = t * z + kLogT0;
  // 2s = f - s·f, so log(1 + f) = f - h + s·(h + z·T) with h = f^2 / 2: f is exact and
  // the rest is small, which keeps the rounding errors small against the result.
  const double half_f2 = 0.5 * (f * f);
  const double ed = static_cast<double>(e + e_denormal);
  const double tail = s * (half_f2 + z * t) + ed * kLn2Lo;
  return ((tail - half_f2) + f) + ed * kLn2Hi;
}

NSPL_HD double log_f64(double x) { return log_f64_corrected(x, 0.0); }

NSPL_HD double log1p_f64(double p) {
  const double a = 1.0 + p;
  const double p_part = a - 1.0;
  const double c = (1.0 - (a - p_part)) + (p - p_part);
  return log_f64_corrected(a, c);
}

// Overloads so one template body serves float and double on host and device.
NSPL_HD float m_exp(float x) { return exp_f32(x); }
NSPL_HD double m_exp(double x) { return exp_f64(x); }
NSPL_HD float m_log(float x) { return log_f32(x); }
NSPL_HD double m_log(double x) { return log_f64(x); }
NSPL_HD float m_log1p(float x) { return log1p_f32(x); }
NSPL_HD double m_log1p(double x) { return log1p_f64(x); }
NSPL_HD float m_sqrt(float x) { return ::sqrtf(x); }
NSPL_HD double m_sqrt(double x) { return ::sqrt(x); }

// ---------------------------------------------------------------------------------
// Symmetric truncated power law (SPEC §2): |w| = c·y, y on [1, r] with density ∝ y^-alpha,
// sign a fair coin. With L = ln r, b = 1 - alpha, K = -|b|·L:
//   b < 0:  y = exp(log(1 + u·expm1(bL)) / b)
//   b > 0:  y = exp(L + log(1 + (1-u)·expm1(-bL)) / b)
//   |bL| tiny: y = exp(u·L)
// Both non-degenerate forms are log(1 + s·E) with s = u or 1-u and E = expm1(K) in (-1, 0).
// Where s·E >= -1/2, log1p(s·E) is accurate to an ulp. Below, 1 + s·E nears zero and
// would cancel; there the same quantity is (1 - s) + s·exp(K), a sum of two positive
// terms, so no digits are lost: no cancellation for any alpha and r up to 1e30. What
// remains is the rounding of the exponent z = base + t/b, which y = e^z turns into a
// relative error of up to |z|·2^-24 (float32): measured against the exact inverse CDF
// at the same u, at most 8 ulp for r = 100 and about 70 ulp (4e-6) for r = 1e30.
// ---------------------------------------------------------------------------------
enum class PowerLawForm : int32_t { LogUniform = 0, SmallU = 1, SmallOneMinusU = 2 };

template <typename acc_t>
struct PowerLawSampler {
  acc_t scale;        // c
  acc_t log_ratio;    // L
  acc_t base;         // L for b > 0, else 0
  acc_t inv_b;        // 1 / b
  acc_t expm1_k;      // E = expm1(K)
  acc_t exp_k;        // exp(K)
  acc_t low, high;    // c and c·r rounded inward: rounding never leaves [c, c·r]
  PowerLawForm form;

  // Magnitude y in [1, r] from u in (0, 1].
  NSPL_HD acc_t magnitude(acc_t u) const {
    if (form == PowerLawForm::LogUniform) return m_exp(u * log_ratio);
    const acc_t one_minus_u = acc_t(1) - u;
    const acc_t s = (form == PowerLawForm::SmallU) ? u : one_minus_u;
    const acc_t s_bar = (form == PowerLawForm::SmallU) ? one_minus_u : u;
    const acc_t p = s * expm1_k;
    const acc_t t = (p >= acc_t(-0.5)) ? m_log1p(p) : m_log(s_bar + s * exp_k);
    return m_exp(base + t * inv_b);
  }

  NSPL_HD acc_t operator()(const PhiloxWords& x, int lane) const {
    acc_t v = scale * magnitude(Lanes<acc_t>::unit(x, lane));
    // Also maps the one overflow, u rounded to 1 with exp(K) flushed to zero, to c·r.
    v = v < low ? low : (v < high ? v : high);
    return Lanes<acc_t>::negative(x, lane) ? -v : v;
  }
};

// Uniform on (-bound, bound): Caffe's XavierFiller with bound = sqrt(3 / n).
template <typename acc_t>
struct UniformSampler {
  acc_t bound;
  NSPL_HD acc_t operator()(const PhiloxWords& x, int lane) const {
    return bound * Lanes<acc_t>::symmetric_unit(x, lane);
  }
};

// erfinv on (-1, 1): M. Giles, "Approximating the erfinv function" (GPU Computing Gems,
// 2011), single-precision branch-light polynomials, relative error about 1e-7.
NSPL_HD float erfinv_approx(float x) {
  float w = -m_log((1.0f - x) * (1.0f + x));
  float p;
  if (w < 5.0f) {
    w = w - 2.5f;
    p = 2.81022636e-08f;
    p = 3.43273939e-07f + p * w;
    p = -3.5233877e-06f + p * w;
    p = -4.39150654e-06f + p * w;
    p = 0.00021858087f + p * w;
    p = -0.00125372503f + p * w;
    p = -0.00417768164f + p * w;
    p = 0.246640727f + p * w;
    p = 1.50140941f + p * w;
  } else {
    w = m_sqrt(w) - 3.0f;
    p = -0.000200214257f;
    p = 0.000100950558f + p * w;
    p = 0.00134934322f + p * w;
    p = -0.00367342844f + p * w;
    p = 0.00573950773f + p * w;
    p = -0.0076224613f + p * w;
    p = 0.00943887047f + p * w;
    p = 1.00167406f + p * w;
    p = 2.83297682f + p * w;
  }
  return p * x;
}

// float64: the float32 estimate refined by Newton's method. Where |x| <= 1/2, on erf(z) = x.
// Beyond, erf(z) is within 1/2 of 1 and 1 - x would lose the digits that place z, so
// iterate on log(erfc(z)) = log(1 - |x|) instead: 1 - |x| is exact there, and the log
// makes the equation nearly linear in z, so a few steps reach full precision even from
// the float estimate at |x| = 1 - 2^-24 to the largest |z| of a 53-bit variate.
NSPL_HD double erfinv_refined(double x) {
  constexpr double kTwoOverSqrtPi = 1.1283791670955126;
  const double a = ::fabs(x);
  const float a_float = static_cast<float>(a) < 1.0f ? static_cast<float>(a) : 0.99999994f;
  double z = static_cast<double>(erfinv_approx(a_float));
  if (a <= 0.5) {
    for (int i = 0; i < 2; ++i) z -= (::erf(z) - a) / (kTwoOverSqrtPi * ::exp(-z * z));
  } else {
    const double log_tail = ::log(1.0 - a);
    for (int i = 0; i < 8; ++i) {
      const double tail = ::erfc(z);
      const double step = (::log(tail) - log_tail) * tail / (kTwoOverSqrtPi * ::exp(-z * z));
      z += step;
      if (::fabs(step) <= 1e-16 * z) break;
    }
  }
  return x < 0 ? -z : z;
}

// Gaussian N(0, std²) by inversion: z = sqrt(2)·erfinv(2u - 1). Caffe's MSRAFiller with
// std = sqrt(2 / n). One word (two for float64) per element, like every sampler here.
template <typename acc_t>
struct NormalSampler {
  acc_t std_sqrt2;  // std · sqrt(2)
  NSPL_HD acc_t operator()(const PhiloxWords& x, int lane) const;
};

template <>
NSPL_HD float NormalSampler<float>::operator()(const PhiloxWords& x, int lane) const {
  return std_sqrt2 * erfinv_approx(Lanes<float>::symmetric_unit(x, lane));
}

template <>
NSPL_HD double NormalSampler<double>::operator()(const PhiloxWords& x, int lane) const {
  return std_sqrt2 * erfinv_refined(Lanes<double>::symmetric_unit(x, lane));
}

}  // namespace nspl
