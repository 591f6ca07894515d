// The random stream and the per-element samplers of nspl_filler (docs/spec.md §2 and §4), written
// once for every backend: the scalar CPU path, the AVX2 and AVX-512 CPU kernels and CUDA.
//
// Element math is a template over a *lane type*: float or double (one lane: the scalar CPU
// path and CUDA), or a SIMD vector of them (cpu/lanes_avx2.h, cpu/lanes_avx512.h, and
// cpu/lane_pack.h for several vectors side by side). Every lane type offers the same
// operations with the same IEEE-754 meaning:
//   + - * /          correctly rounded;
//   fmadd(a, b, c)   a·b + c with a single rounding (std::fma, __fmaf_rn, vfmadd);
//   sqrt_of(a)       correctly rounded;
//   select(m, a, b)  m ? a : b;  min_of(a, b) = a < b ? a : b;  max_of(a, b) = a > b ? a : b
//                    (b never NaN, a and b never zeros of opposite signs);
//   lt               a comparison giving a mask;
//   integer lanes of the same width with +, -, &, |, ^, shifts, is_negative (a mask) and
//   conversions to float lanes rounded to nearest.
// Nothing else touches a floating-point value: no libm function, no hardware approximation,
// and no contraction of a*b + c into an fma (builds pass -ffp-contract=off and nvcc
// --fmad=false; an fma appears only where the code writes fmadd). Every backend therefore
// performs the same operations in the same order, and gives the same bits.
//
// A translation unit that compiles this header for one CPU instruction set defines
// NSPL_MATH_ISA to a namespace name first: its copies of these inline functions then live
// in nspl::<that name> (an inline namespace) and cannot be mistaken at link time for the
// portable copies that other translation units compile.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernel_args.h"
#include "mul_high.h"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define NSPL_HD __host__ __device__ __forceinline__
#else
#define NSPL_HD inline __attribute__((always_inline))
#endif

#ifdef NSPL_MATH_ISA
#define NSPL_ISA_BEGIN inline namespace NSPL_MATH_ISA {
#define NSPL_ISA_END }
#else
#define NSPL_ISA_BEGIN
#define NSPL_ISA_END
#endif

namespace nspl {

// The version of the stream: of the map from (key, offset, logical index, dtype,
// distribution) to values, which the samplers below implement (docs/sampling.md). Any change
// to a value changes this number. Version 2 takes the power law's uniform from 31 bits of
// the word (63 for float64), exact on its small side; version 1 took 24 (53) bits rounded
// to the nearest acc_t, which put an atom at c·r.
constexpr int kStreamVersion = 2;

NSPL_ISA_BEGIN

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
    const uint32_t hi0 = mul_high(kPhiloxM0, c0);
    const uint32_t lo0 = kPhiloxM0 * c0;
    const uint32_t hi1 = mul_high(kPhiloxM1, c2);
    const uint32_t lo1 = kPhiloxM1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

// Block `block` of the stream with 64-bit key `key` (docs/spec.md §4).
NSPL_HD PhiloxWords philox_block(uint64_t key, uint64_t block) {
  return philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
                       static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}

// The ten round keys of a 64-bit key, for kernels that compute many blocks of one stream:
// the key schedule is worked out once, not once per block.
struct PhiloxRoundKeys {
  uint32_t k0[10];
  uint32_t k1[10];
};

NSPL_HD PhiloxRoundKeys philox_round_keys(uint64_t key) {
  PhiloxRoundKeys keys;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    keys.k0[round] = k0;
    keys.k1[round] = k1;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return keys;
}

// philox_block with the key schedule of philox_round_keys.
NSPL_HD PhiloxWords philox_block(const PhiloxRoundKeys& keys, uint64_t block) {
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32), c2 = 0u, c3 = 0u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = mul_high(kPhiloxM0, c0);
    const uint32_t lo0 = kPhiloxM0 * c0;
    const uint32_t hi1 = mul_high(kPhiloxM1, c2);
    const uint32_t lo1 = kPhiloxM1 * c2;
    c0 = hi1 ^ c1 ^ keys.k0[round];
    c1 = lo1;
    c2 = hi0 ^ c3 ^ keys.k1[round];
    c3 = lo0;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

// ---------------------------------------------------------------------------------
// Scalar lanes: float and double with int32_t and int64_t bit patterns. Integer lanes
// wrap (arithmetic is done unsigned), as SIMD integer lanes do.
// ---------------------------------------------------------------------------------
// LaneOf<F>: the integer lane type of the same width, the mask type and the scalar type of
// a float lane type; FloatOf<I>: the float lane type of an integer lane type.
template <typename F>
struct LaneOf;
template <>
struct LaneOf<float> {
  using Int = int32_t;
  using Mask = bool;
  using Scalar = float;
};
template <>
struct LaneOf<double> {
  using Int = int64_t;
  using Mask = bool;
  using Scalar = double;
};
template <typename I>
struct FloatOf;
template <>
struct FloatOf<int32_t> {
  using type = float;
};
template <>
struct FloatOf<int64_t> {
  using type = double;
};

NSPL_HD float fmadd(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#elif defined(__GNUC__)
  // An fma instruction where the translation unit's target has one, else libm's fmaf.
  return __builtin_fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
NSPL_HD double fmadd(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#elif defined(__GNUC__)
  return __builtin_fma(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
NSPL_HD float sqrt_of(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
NSPL_HD double sqrt_of(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

template <typename T>
NSPL_HD T select(bool mask, T a, T b) {
  return mask ? a : b;
}
// The device's min / max instructions differ from these expressions only where b is NaN or
// a and b are zeros of opposite signs, which the samplers never pass (b is a bound, a
// positive normal number): there they compute the same, in one instruction.
#if defined(__CUDA_ARCH__)
NSPL_HD float min_of(float a, float b) { return fminf(a, b); }
NSPL_HD double min_of(double a, double b) { return fmin(a, b); }
NSPL_HD float max_of(float a, float b) { return fmaxf(a, b); }
NSPL_HD double max_of(double a, double b) { return fmax(a, b); }
#else
NSPL_HD float min_of(float a, float b) { return a < b ? a : b; }
NSPL_HD double min_of(double a, double b) { return a < b ? a : b; }
NSPL_HD float max_of(float a, float b) { return a > b ? a : b; }
NSPL_HD double max_of(double a, double b) { return a > b ? a : b; }
#endif
NSPL_HD bool lt(float a, float b) { return a < b; }
NSPL_HD bool lt(double a, double b) { return a < b; }

// The bits of `x` read as a `To` of the same width (a float's as an int, and back): a copy
// on the host, a register move on the device.
template <typename To, typename From>
NSPL_HD To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: the same width");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<From, float>) {
    return __float_as_int(x);
  } else if constexpr (std::is_same_v<From, double>) {
    return __double_as_longlong(x);
  } else if constexpr (std::is_same_v<To, float>) {
    return __int_as_float(x);
  } else {
    return __longlong_as_double(x);
  }
#else
  To y;
  memcpy(&y, &x, sizeof y);
  return y;
#endif
}
NSPL_HD int32_t as_int(float x) { return bits_as<int32_t>(x); }
NSPL_HD float as_float(int32_t i) { return bits_as<float>(i); }
NSPL_HD int64_t as_int(double x) { return bits_as<int64_t>(x); }
NSPL_HD double as_float(int64_t i) { return bits_as<double>(i); }

NSPL_HD int32_t add(int32_t a, int32_t b) { return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b)); }
NSPL_HD int64_t add(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
NSPL_HD int32_t sub(int32_t a, int32_t b) { return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b)); }
NSPL_HD int64_t sub(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b)); }
template <typename I>
NSPL_HD I bit_and(I a, I b) {
  return a & b;
}
template <typename I>
NSPL_HD I bit_or(I a, I b) {
  return a | b;
}
template <typename I>
NSPL_HD I bit_xor(I a, I b) {
  return a ^ b;
}
// The mask of the lanes whose integer is negative (top bit set).
NSPL_HD bool is_negative(int32_t a) { return a < 0; }
NSPL_HD bool is_negative(int64_t a) { return a < 0; }
template <int k>
NSPL_HD int32_t shift_left(int32_t a) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) << k);
}
template <int k>
NSPL_HD int64_t shift_left(int64_t a) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) << k);
}
template <int k>
NSPL_HD int32_t shift_right_logical(int32_t a) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) >> k);
}
template <int k>
NSPL_HD int64_t shift_right_logical(int64_t a) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) >> k);
}
// Arithmetic right shift, floor(a / 2^k): what >> does on signed integers in C++20, and in
// gcc, clang, MSVC and nvcc before it (one instruction).
template <int k>
NSPL_HD int32_t shift_right_arithmetic(int32_t a) {
  return a >> k;
}
template <int k>
NSPL_HD int64_t shift_right_arithmetic(int64_t a) {
  return a >> k;
}
// Conversions of |a| < 2^31 (int32 -> float) or |a| < 2^63 (int64 -> double), correctly
// rounded (to nearest even, which rounds a and -a to opposite values; exact below 2^24 or
// 2^53).
NSPL_HD float convert_signed(int32_t a) {
#if defined(__CUDA_ARCH__)
  return __int2float_rn(a);
#else
  return static_cast<float>(a);
#endif
}
NSPL_HD double convert_signed(int64_t a) {
#if defined(__CUDA_ARCH__)
  return __ll2double_rn(a);
#else
  return static_cast<double>(a);
#endif
}
// Exact conversions of small signed integers: |a| < 2^22 (float) or |a| < 2^51 (double).
NSPL_HD float convert_small(int32_t a) { return static_cast<float>(a); }
NSPL_HD double convert_small(int64_t a) { return static_cast<double>(a); }

// ---------------------------------------------------------------------------------
// Precision-specific constants: Arith<float> for 16/32-bit outputs, Arith<double> for
// float64. The polynomial coefficients are minimax fits (tools/fit_polynomials.py).
// ---------------------------------------------------------------------------------
// c0 + x·(c1 + x·(c2 + ...)), by Horner's rule with one fma per coefficient.
template <typename F, typename C>
NSPL_HD F horner(F, C c0) {
  return F(c0);
}
template <typename F, typename C, typename... Rest>
NSPL_HD F horner(F x, C c0, Rest... rest) {
  return fmadd(horner(x, rest...), x, F(c0));
}

template <typename acc_t>
struct Arith;

template <>
struct Arith<float> {
  using Int = int32_t;
  static constexpr int kMantissaBits = 23;
  // The power law's variate on its small side is n·2^-32 (n odd, < 2^31); the uniform and
  // normal samplers' |variate| is ((word >> 8) | 1)·2^-24 (see the variates below).
  static constexpr float kCellUnit = 0x1p-32f;
  static constexpr int kMagnitudeShift = 8;
  static constexpr float kMagnitudeUnit = 0x1p-24f;
  static constexpr int32_t kSqrtHalfBits = 0x3f3504f3;     // sqrt(1/2)
  static constexpr int32_t kMantissaMask = 0x007fffff;
  static constexpr float kRoundMagic = 0x1.8p23f;  // x + 1.5·2^23 rounds x to an integer
  // ln 2 = kLn2Hi + kLn2Lo to about 2^-48.
  static constexpr float kLn2Hi = 0x1.62e430p-1f;
  static constexpr float kLn2Lo = -0x1.05c610p-29f;

  // 2^r on |r| <= 1/2 as 1 + r·q(r), relative error 2^-28.8.
  template <typename F>
  static NSPL_HD F exp2_reduced(F r) {
    const F q = horner(r, 0.6931472f, 0.24022648f, 0.055503294f, 0.00961845f, 0.001340017f, 0.00015352317f);
    return fmadd(q, r, F(1.0f));
  }
  // ln(1 + f) on sqrt(1/2) - 1 <= f <= sqrt(2) - 1 as f + f^2·P(f), relative error 2^-25.
  template <typename F>
  static NSPL_HD F log1p_reduced(F f) {
    const F p = horner(f, -0.4999999f, 0.33333963f, -0.25001818f, 0.19961566f, -0.16568461f, 0.149217f,
                       -0.1432549f, 0.08746889f);
    return fmadd(f * f, p, f);
  }
};

template <>
struct Arith<double> {
  using Int = int64_t;
  static constexpr int kMantissaBits = 52;
  // As for float, from the element's 64 bits: n·2^-64 (n odd, < 2^63) and
  // ((bits >> 11) | 1)·2^-53.
  static constexpr double kCellUnit = 0x1p-64;
  static constexpr int kMagnitudeShift = 11;
  static constexpr double kMagnitudeUnit = 0x1p-53;
  static constexpr int64_t kSqrtHalfBits = 0x3fe6a09e667f3bcdll;
  static constexpr int64_t kMantissaMask = 0x000fffffffffffffll;
  static constexpr double kRoundMagic = 0x1.8p52;
  static constexpr double kLn2Hi = 0x1.62e42fefa39efp-1;
  static constexpr double kLn2Lo = 0x1.abc9e3b39803fp-56;

  // 2^r on |r| <= 1/2 as 1 + r·q(r), relative error 2^-57.9.
  template <typename F>
  static NSPL_HD F exp2_reduced(F r) {
    const F q = horner(r, 0.6931471805599453, 0.2402265069591014, 0.055504108664819925, 0.00961812910759129,
                       0.0013333558146803258, 0.00015403530461014837, 1.5252733474030355e-05,
                       1.3215433198780268e-06, 1.0178204174077209e-07, 7.074161477185964e-09,
                       4.4345557559811184e-10);
    return fmadd(q, r, F(1.0));
  }
  // ln(1 + f) = 2·atanh(s), s = f / (2 + f), as f - h + s·(h + z·T(z)) with h = f^2/2,
  // z = s^2 (since 2s = f - s·f and s·f = 2h - s·h): f is exact, and the rest is small
  // against it. Relative error of T 2^-59.3; one correctly rounded division.
  template <typename F>
  static NSPL_HD F log1p_reduced(F f) {
    const F s = f / (F(2.0) + f);
    const F z = s * s;
    const F t = horner(z, 0.6666666666666744, 0.3999999999934089, 0.28571428760269146, 0.22222196601517677,
                       0.18183673301765763, 0.15311108796450834, 0.1482681178421262);
    const F h = F(0.5) * (f * f);
    return f + fmadd(s, fmadd(z, t, h), F(0.0) - h);
  }
};

// ---------------------------------------------------------------------------------
// 2^x and ln x for the samplers, on the arguments the samplers give them.
// ---------------------------------------------------------------------------------
// 2^x where the result is a normal number: x = n + r with n an integer and |r| <= 1/2
// (both exact), and n is added to the exponent field of 2^r. Working in base 2 makes the
// reduction exact with no ln 2 to split. Outside that range (results below the smallest
// normal or above the largest finite value) the bits are meaningless; the samplers clamp
// their results to bounds that are normal numbers, which repairs them.
template <typename F>
NSPL_HD F exp2_to_normal(F x) {
  using A = Arith<typename LaneOf<F>::Scalar>;
  using I = typename LaneOf<F>::Int;
  const F shifted = x + F(A::kRoundMagic);
  const F r = x - (shifted - F(A::kRoundMagic));
  // shifted's bits are the magic's plus n, and the magic's low bits are zero, so
  // shifting them left by the mantissa width leaves n in the exponent field.
  const I exponent = shift_left<A::kMantissaBits>(as_int(shifted));
  return as_float(add(as_int(A::exp2_reduced(r)), exponent));
}

// a = 2^e · (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)), for a positive normal a. Returns
// a's bits minus those of sqrt(1/2) (rounded to acc_t), negative exactly where a is below it
// (positive floats order as their bits do).
template <typename F>
NSPL_HD typename LaneOf<F>::Int log_reduce(F a, F& e, F& f) {
  using A = Arith<typename LaneOf<F>::Scalar>;
  using I = typename LaneOf<F>::Int;
  // Subtracting sqrt(1/2)'s bits moves the exponent boundary from 1 to sqrt(1/2).
  const I shifted = sub(as_int(a), I(A::kSqrtHalfBits));
  e = convert_small(shift_right_arithmetic<A::kMantissaBits>(shifted));
  f = as_float(add(bit_and(shifted, I(A::kMantissaMask)), I(A::kSqrtHalfBits))) - F(1);
  return shifted;
}

// e·ln 2 + l, with ln 2 in two parts so that e·ln 2 keeps its digits.
template <typename F>
NSPL_HD F add_ln2_multiple(F e, F l) {
  using A = Arith<typename LaneOf<F>::Scalar>;
  return fmadd(e, F(A::kLn2Hi), fmadd(e, F(A::kLn2Lo), l));
}

// ln a for a positive normal a.
template <typename F>
NSPL_HD F log_normal(F a) {
  using A = Arith<typename LaneOf<F>::Scalar>;
  F e, f;
  log_reduce(a, e, f);
  return add_ln2_multiple(e, A::log1p_reduced(f));
}

// ---------------------------------------------------------------------------------
// Uniform variates from an element's random bits: the 32-bit word (int32 lanes, float
// arithmetic) or the 64 bits wa·2^32 + wb of its two words (int64 lanes, double).
// ---------------------------------------------------------------------------------
template <typename I>
using FloatLane = typename FloatOf<I>::type;

// Stream version 2 (docs/spec.md §4). Bit 0 of the element's bits is the sign; the bits
// above it (31 of a 32-bit word, 63 of float64's 64 bits) are m, and the magnitude's uniform
// is the centre of cell m: u = (m + 1/2)·2^-31 (2^-63), with q = 1 - u the centre of cell
// 2^31 - 1 - m counted from the top. Whichever of u and q is below 1/2 is t = (2k + 1)·2^-32
// (2^-64), with 2k + 1 the bits themselves, bit 0 set to 1, where m's top bit is clear
// (u < 1/2), or their complement, bit 0 set to 1, where it is set (q < 1/2): an odd integer
// below 2^31 (2^63), converted with one rounding (exact below 2^24 / 2^53). So the small
// side is the exact cell centre correctly rounded, down to 2^-32 (2^-64), never 0; the
// large side is 1 minus it, one more rounding, never 1.
//
// Both come from one signed conversion, with no select: read as a signed integer, the bits
// with bit 0 set to 1 are 2k + 1 where the top bit is clear and -(2k + 1) where it is set
// (the complement plus one is the negation), and rounding to nearest even is symmetric, so
// their conversion n is +t·2^32 where u = t and -t·2^32 where q = t. With h = 1 where the
// top bit is set, else 0: u = h + n·2^-32 and q = (1 - h) - n·2^-32, each one fma of exact
// operands (n·2^-32 is exact): t itself on the small side, the correctly rounded 1 - t on
// the large.
template <typename I>
NSPL_HD FloatLane<I> signed_small_side_integer(I bits) {
  return convert_signed(bit_or(bits, I(1)));
}

template <typename F>
struct UnitVariates {
  F u;  // the cell centre (m + 1/2)·2^-31
  F q;  // 1 - u
};

template <typename I>
NSPL_HD UnitVariates<FloatLane<I>> unit_variates(I bits) {
  using F = FloatLane<I>;
  using Scalar = typename LaneOf<F>::Scalar;
  constexpr Scalar kCell = Arith<Scalar>::kCellUnit;
  const F n = signed_small_side_integer(bits);
  // 1.0 where the top bit is set (all ones and'ed with the bits of 1.0), else +0.0.
  const F upper = as_float(bit_and(shift_right_arithmetic<8 * sizeof(Scalar) - 1>(bits), as_int(F(Scalar(1)))));
  return {fmadd(n, F(kCell), upper), fmadd(n, F(-kCell), F(Scalar(1)) - upper)};
}

// The uniform and normal samplers' |variate| in (0, 1): ((bits >> 8) | 1)·2^-24 =
// (j + 1/2)·2^-23 with j the word's top 23 bits (float64: ((bits >> 11) | 1)·2^-53, the top
// 52 bits), exact; the sign is bit 0, as for the power law.
template <typename I>
NSPL_HD FloatLane<I> magnitude_variate(I bits) {
  using F = FloatLane<I>;
  using A = Arith<typename LaneOf<F>::Scalar>;
  return convert_signed(bit_or(shift_right_logical<A::kMagnitudeShift>(bits), I(1))) * F(A::kMagnitudeUnit);
}

// -v where bit 0 of the element's bits is set (docs/spec.md §4): the sign bit flipped.
template <typename F, typename I>
NSPL_HD F apply_sign(F v, I bits) {
  return as_float(bit_xor(as_int(v), shift_left<8 * sizeof(typename LaneOf<F>::Scalar) - 1>(bits)));
}

// v clamped to [low, high]: (v < high ? v : high), then (that > low ? that : low).
template <typename F>
NSPL_HD F clamp_to(F v, F low, F high) {
  return max_of(min_of(v, high), low);
}

// The element's random bits from a Philox block (scalar path and CUDA): word `lane` for
// float arithmetic, words 2·lane (high) and 2·lane + 1 (low) for double.
template <typename acc_t>
struct Lanes;
template <>
struct Lanes<float> {
  static constexpr int kPerBlock = 4;
  NSPL_HD static int32_t bits(const PhiloxWords& x, int lane) { return static_cast<int32_t>(x.w[lane]); }
};
template <>
struct Lanes<double> {
  static constexpr int kPerBlock = 2;
  NSPL_HD static int64_t bits(const PhiloxWords& x, int lane) {
    return static_cast<int64_t>((static_cast<uint64_t>(x.w[2 * lane]) << 32) | x.w[2 * lane + 1]);
  }
};

// ---------------------------------------------------------------------------------
// Samplers. Each maps an element's random bits, in any lane type, to its value with its
// constants k (kernel_args.h): `draw(bits)`, the law itself, which is all a sampler
// defines. The rest is the same for every law and written once, in SamplerBase: the
// constants, the arithmetic type Acc and operator()(words, lane), the scalar form the
// per-element kernels call. A sampler is an aggregate of its constants alone, so kernels
// take it by value as a kernel argument, and sampler_for(constants) makes one.
// ---------------------------------------------------------------------------------
template <typename Sampler, typename acc_t, typename Constants>
struct SamplerBase {
  using Acc = acc_t;
  Constants k;

  NSPL_HD acc_t operator()(const PhiloxWords& words, int lane) const {
    return static_cast<const Sampler&>(*this).draw(Lanes<acc_t>::bits(words, lane));
  }
};

// Symmetric truncated power law (docs/spec.md §2), general alpha: |w| = c·y, y on [1, r]
// with density ∝ y^-alpha, by the inverse CDF y = exp(ln(1 + s·E) / b) (alpha > 1, s = u)
// or y = r·exp(ln(1 + s·E) / b) (alpha < 1, s = q = 1 - u), E = expm1(K), K = -|b|·ln r;
// both are ln(1 + x) with x = s·E in (-1, 0), and c joins the exponent,
// |w| = 2^(log2 y + log2 c), so that only the final value, which lies in [c, c·r], has to
// be a normal number.
//
// One logarithm, no branch: where 1 + x >= sqrt(1/2), ln(1 + x) is the log1p polynomial
// of x itself (x is a product, accurate to an ulp, and no 1 + x is ever rounded). Below,
// 1 + x = s̄ + s·exp(K) with s̄ = 1 - s, a sum of two positive terms computed with one
// rounding: no digits cancel, whatever alpha and r. Both arguments are computed and the
// right one is selected before the single log. u and q both come from the element's
// integer (unit_variates): in the tail that matters, s̄ -> 0 as y -> r, s̄ is the small
// side, correctly rounded down to 2^-32 (float) or 2^-64 (double), so the law is followed
// out to the last cell and never reaches r itself (stream version 2).
//
// The exponent z = log2 |w| is rounded once to acc_t, which 2^z turns into a relative
// error of up to |ln |w||·2^-24 (float32): |w| carries an error that grows with |ln |w||
// (docs/sampling.md states the bound, tests/test_tails.py measures it against the exact
// inverse CDF at each cell's centre).
//
// Where exp(K) is below the smallest normal it is stored as 0 (the TinyExpK form), which
// keeps subnormal operands out of the arithmetic; s̄ >= 2^-32 keeps 1 + x a normal number.
template <typename acc_t, PowerLawForm kForm>
struct PowerLawSampler : SamplerBase<PowerLawSampler<acc_t, kForm>, acc_t, PowerLawConstants<acc_t, kForm>> {
  template <typename I, typename F = FloatLane<I>>
  NSPL_HD F draw(I bits) const {
    using A = Arith<acc_t>;
    const UnitVariates<F> variates = unit_variates(bits);
    const F s = kForm == PowerLawForm::AlphaBelowOne ? variates.q : variates.u;
    const F s_bar = kForm == PowerLawForm::AlphaBelowOne ? variates.u : variates.q;
    const F x = s * F(this->k.expm1_k);
    // 1 + x as a sum of two positive terms (s̄ itself where exp(K) is stored as 0).
    const F a = kForm == PowerLawForm::AlphaAboveOneTinyExpK ? s_bar : fmadd(s, F(this->k.exp_k), s_bar);
    // Where a >= sqrt(1/2) its reduction has exponent 0 and ln(1 + x) is log1p(x) itself;
    // below, ln a = e·ln 2 + log1p(f).
    F e, f;
    const auto below = is_negative(log_reduce(a, e, f));
    f = select(below, f, x);
    // log2 |w| = ln(1 + x) / (b ln 2) + log2_base = log1p(f)·(log2(e) / b) + e / b + log2_base.
    const F z =
        fmadd(A::log1p_reduced(f), F(this->k.log2e_over_b), fmadd(e, F(this->k.inv_b), F(this->k.log2_base)));
    return apply_sign(clamp_to(exp2_to_normal(z), F(this->k.low), F(this->k.high)), bits);
  }
};

// The power law at alpha = 1: y = exp(u·ln r) = r·exp(-q·ln r), log-uniform. Each half
// takes its small side t, so neither is rounded near 1: log2 |w| = log2 c + t·log2 r
// (u = t < 1/2) or log2(c·r) - t·log2 r (q = t < 1/2). With n the signed conversion of
// unit_variates (+t·2^32 where u = t, -t·2^32 where q = t) both are one fma,
// n·(log2 r·2^-32) + base, the base chosen by the word's top bit.
template <typename acc_t>
struct LogUniformSampler : SamplerBase<LogUniformSampler<acc_t>, acc_t, LogUniformConstants<acc_t>> {
  template <typename I, typename F = FloatLane<I>>
  NSPL_HD F draw(I bits) const {
    const F base = select(is_negative(bits), F(this->k.log2_high), F(this->k.log2_low));
    const F z = fmadd(signed_small_side_integer(bits), F(this->k.log2_ratio_cell), base);
    return apply_sign(clamp_to(exp2_to_normal(z), F(this->k.low), F(this->k.high)), bits);
  }
};

// Uniform on (-bound, bound): Caffe's XavierFiller with bound = sqrt(3 / n). The sign is
// bit 0, the magnitude bound·|v| with |v| = magnitude_variate, both exact cell centres.
template <typename acc_t>
struct UniformSampler : SamplerBase<UniformSampler<acc_t>, acc_t, UniformConstants<acc_t>> {
  template <typename I, typename F = FloatLane<I>>
  NSPL_HD F draw(I bits) const {
    return apply_sign(F(this->k.bound) * magnitude_variate(bits), bits);
  }
};

// erfinv on (-1, 1): M. Giles, "Approximating the erfinv function" (GPU Computing Gems,
// 2011), single-precision polynomials, relative error about 1e-7; both branches computed
// and one selected.
template <typename F>
NSPL_HD F erfinv_approx(F x) {
  const F w = F(0.0f) - log_normal(fmadd(F(0.0f) - x, x, F(1.0f)));
  const F central = horner(w - F(2.5f), 1.50140941f, 0.246640727f, -0.00417768164f, -0.00125372503f,
                           0.00021858087f, -4.39150654e-06f, -3.5233877e-06f, 3.43273939e-07f, 2.81022636e-08f);
  const F tail = horner(sqrt_of(w) - F(3.0f), 2.83297682f, 1.00167406f, 0.00943887047f, -0.0076224613f,
                        0.00573950773f, -0.00367342844f, 0.00134934322f, 0.000100950558f, -0.000200214257f);
  return select(lt(w, F(5.0f)), central, tail) * x;
}

// float64: the float32 estimate refined by Newton's method. Where |x| <= 1/2, on erf(z) = x.
// Beyond, erf(z) is within 1/2 of 1 and 1 - x would lose the digits that place z, so
// iterate on log(erfc(z)) = log(1 - |x|) instead: 1 - |x| is exact there, and the log
// makes the equation nearly linear in z, so a few steps reach full precision even from
// the float estimate at |x| = 1 - 2^-24 to the largest |z| of a 53-bit variate. Uses
// the platform's erf, erfc, exp and log: the one sampler whose bits may differ between
// devices (docs/spec.md §4: within 4 ulp).
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

// Gaussian N(0, std²) by inversion: |z| = sqrt(2)·erfinv(|v|), |v| = magnitude_variate
// (that is, 2u - 1 for the uniform u whose sign is bit 0), with the sign of bit 0. Caffe's MSRAFiller with
// std = sqrt(2 / n). One word (two for float64) per element, like every sampler here.
template <typename acc_t>
struct NormalSampler;

template <>
struct NormalSampler<float> : SamplerBase<NormalSampler<float>, float, NormalConstants<float>> {
  template <typename I, typename F = FloatLane<I>>
  NSPL_HD F draw(I bits) const {
    return apply_sign(F(k.std_sqrt2) * erfinv_approx(magnitude_variate(bits)), bits);
  }
};

template <>
struct NormalSampler<double> : SamplerBase<NormalSampler<double>, double, NormalConstants<double>> {
  NSPL_HD double draw(int64_t bits) const {
    return apply_sign(k.std_sqrt2 * erfinv_refined(magnitude_variate(bits)), bits);
  }
};

// Φ⁻¹(t), the standard normal quantile, for t in (0, ~1/2] a positive normal number: M. J.
// Wichura, "Algorithm AS 241: The percentage points of the normal distribution", Applied
// Statistics 37(3), 1988. Three rational approximations: in s = t - 1/2 where |s| <= 0.425
// (Φ⁻¹ = s·A(0.180625 - s²) / B(...)), else in r = sqrt(-ln t), one for r <= 5 and one
// beyond (Φ⁻¹ = -C(r - 1.6) / D(r - 1.6) or -E(r - 5) / F(r - 5)). Float arithmetic uses
// the paper's PPND7 (about 1e-7 relative), double its PPND16 (about 1e-16). All three are
// evaluated, numerator and denominator selected, and one division made: no branch, and only
// the operations every lane type has, with the package's own log (docs/spec.md §2b states the
// measured accuracy, tests/test_trunc_normal.py measures it).
template <typename acc_t>
struct NormalQuantile;

template <>
struct NormalQuantile<float> {
  template <typename F>
  static NSPL_HD F central_num(F r) { return horner(r, 3.3871327179f, 50.434271938f, 159.29113202f, 59.109374720f); }
  template <typename F>
  static NSPL_HD F central_den(F r) { return horner(r, 1.0f, 17.895169469f, 78.757757664f, 67.187563600f); }
  template <typename F>
  static NSPL_HD F near_num(F r) { return horner(r, 1.4234372777f, 2.7568153900f, 1.3067284816f, 0.17023821103f); }
  template <typename F>
  static NSPL_HD F near_den(F r) { return horner(r, 1.0f, 0.73700164250f, 0.12021132975f); }
  template <typename F>
  static NSPL_HD F far_num(F r) { return horner(r, 6.6579051150f, 3.0812263860f, 0.42868294337f, 0.017337203997f); }
  template <typename F>
  static NSPL_HD F far_den(F r) { return horner(r, 1.0f, 0.24197894225f, 0.012258202635f); }
};

template <>
struct NormalQuantile<double> {
  template <typename F>
  static NSPL_HD F central_num(F r) {
    return horner(r, 3.3871328727963666080, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125,
                  45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727);
  }
  template <typename F>
  static NSPL_HD F central_den(F r) {
    return horner(r, 1.0, 42.313330701600911252, 687.18700749205790830, 5394.1960214247511077,
                  21213.794301586595867, 39307.895800092710610, 28729.085735721942674, 5226.4952788528545610);
  }
  template <typename F>
  static NSPL_HD F near_num(F r) {
    return horner(r, 1.42343711074968357734, 4.63033784615654529590, 5.76949722146069140550, 3.64784832476320460504,
                  1.27045825245236838258, 0.241780725177450611770, 0.0227238449892691845833,
                  7.74545014278341407640e-4);
  }
  template <typename F>
  static NSPL_HD F near_den(F r) {
    return horner(r, 1.0, 2.05319162663775882187, 1.67638483018380384940, 0.689767334985100004550,
                  0.148103976427480074590, 0.0151986665636164571966, 5.47593808499534494600e-4,
                  1.05075007164441684324e-9);
  }
  template <typename F>
  static NSPL_HD F far_num(F r) {
    return horner(r, 6.65790464350110377720, 5.46378491116411436990, 1.78482653991729133580,
                  0.296560571828504891230, 0.0265321895265761230930, 1.24266094738807843860e-3,
                  2.71155556874348757815e-5, 2.01033439929228813265e-7);
  }
  template <typename F>
  static NSPL_HD F far_den(F r) {
    return horner(r, 1.0, 0.599832206555887937690, 0.136929880922735805310, 0.0148753612908506148525,
                  7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
                  2.04426310338993978564e-15);
  }
};

template <typename F>
NSPL_HD F normal_quantile_lower(F t) {
  using Scalar = typename LaneOf<F>::Scalar;
  using Q = NormalQuantile<Scalar>;
  const F s = t - F(Scalar(0.5));
  const F central_r = fmadd(F(Scalar(0)) - s, s, F(Scalar(0.180625)));
  const F r = sqrt_of(F(Scalar(0)) - log_normal(t));
  const F near_r = r - F(Scalar(1.6));
  const F far_r = r - F(Scalar(5));
  const auto far = lt(F(Scalar(5)), r);
  const auto tail = lt(s, F(Scalar(-0.425)));
  const F tail_num = F(Scalar(0)) - select(far, Q::far_num(far_r), Q::near_num(near_r));
  const F tail_den = select(far, Q::far_den(far_r), Q::near_den(near_r));
  return select(tail, tail_num, s * Q::central_num(central_r)) / select(tail, tail_den, Q::central_den(central_r));
}

// Normal N(mean, std²) truncated to [a, b] (docs/spec.md §2b), by the exact inverse CDF, no
// rejection: one word (two for float64) per element, the whole word's u and q = 1 - u of
// unit_variates (bit 0 is no sign here: it is set to 1 with the others' cell). With
// P = Φ(α) + u·D and Q = Φ(-β) + q·D, each one fma of a small side that is exact or
// relatively accurate, the value is mean + std·Φ⁻¹(P) where P <= Q and mean - std·Φ⁻¹(Q)
// where Q < P: the quantile always takes the smaller tail mass, in which it does not
// cancel, so far-tail intervals (a = 8σ) keep their digits. Clamped to [a, b] rounded
// inward to the dtype.
template <typename acc_t>
struct TruncNormalSampler : SamplerBase<TruncNormalSampler<acc_t>, acc_t, TruncNormalConstants<acc_t>> {
  template <typename I, typename F = FloatLane<I>>
  NSPL_HD F draw(I bits) const {
    const UnitVariates<F> v = unit_variates(bits);
    const F lower = fmadd(v.u, F(this->k.mass), F(this->k.lower_mass));
    const F upper = fmadd(v.q, F(this->k.mass), F(this->k.upper_mass));
    const auto from_upper = lt(upper, lower);
    const F z = normal_quantile_lower(min_of(lower, upper));
    const F signed_z = select(from_upper, F(acc_t(0)) - z, z);
    return clamp_to(fmadd(signed_z, F(this->k.std), F(this->k.mean)), F(this->k.low), F(this->k.high));
  }
};

// `function` of x (the tests evaluate each element function on given arguments).
template <typename F>
NSPL_HD F math_function(MathFunction function, F x) {
  switch (function) {
    case MathFunction::Exp2:
      return exp2_to_normal(x);
    case MathFunction::Log:
      return log_normal(x);
    case MathFunction::NormalQuantile:
      return normal_quantile_lower(x);
  }
  return x;
}

// The sampler that draws with a set of constants (kernel_args.h).
template <typename Constants>
struct SamplerFor;
template <typename acc_t, PowerLawForm kForm>
struct SamplerFor<PowerLawConstants<acc_t, kForm>> {
  using type = PowerLawSampler<acc_t, kForm>;
};
template <typename acc_t>
struct SamplerFor<LogUniformConstants<acc_t>> {
  using type = LogUniformSampler<acc_t>;
};
template <typename acc_t>
struct SamplerFor<UniformConstants<acc_t>> {
  using type = UniformSampler<acc_t>;
};
template <typename acc_t>
struct SamplerFor<NormalConstants<acc_t>> {
  using type = NormalSampler<acc_t>;
};
template <typename acc_t>
struct SamplerFor<TruncNormalConstants<acc_t>> {
  using type = TruncNormalSampler<acc_t>;
};

// The sampler that draws with `constants`: its base, SamplerBase, holds them.
template <typename Constants>
NSPL_HD typename SamplerFor<Constants>::type sampler_for(const Constants& constants) {
  return {{constants}};
}

NSPL_ISA_END
}  // namespace nspl
