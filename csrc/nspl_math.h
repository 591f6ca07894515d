// The random stream and the per-element samplers of nspl_filler, shared by the CPU
// and CUDA kernels so the math is written once (SPEC §2 and §4).
//
// Everything here is plain arithmetic on 32-bit words: no torch types, so the header
// compiles under gcc, nvcc and in the AVX2 translation unit alike.
#pragma once

#include <cstdint>
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

// Overloads so one template body serves float and double on host and device.
NSPL_HD float m_exp(float x) { return ::expf(x); }
NSPL_HD double m_exp(double x) { return ::exp(x); }
NSPL_HD float m_log(float x) { return ::logf(x); }
NSPL_HD double m_log(double x) { return ::log(x); }
NSPL_HD float m_log1p(float x) { return ::log1pf(x); }
NSPL_HD double m_log1p(double x) { return ::log1p(x); }
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
// terms, so no digits are lost. Hence every float32 value is within a few ulp of the
// exact inverse CDF at the same u, for any alpha and r up to 1e30.
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
