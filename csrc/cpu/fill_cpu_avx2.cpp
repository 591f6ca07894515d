// AVX2 kernels of the CPU backend: Philox4x32-10 on eight blocks per vector, then the
// samplers of nspl_math.h on eight float (four double) elements per vector.
//
// FMA is not used: fusing would change the roundings, and the point is to round
// exactly as the scalar code (and the CUDA kernels) do.
//
// The values are those of the scalar path bit for bit: every sampler here performs the
// scalar code's float operations in the same order (plain multiplies and adds, no fma;
// the build's -ffp-contract=off keeps the compiler from fusing them), with the math
// functions of nspl_math.h rewritten lane-wise, and both branches of a scalar `if`
// computed and blended. Only the Philox words are laid out differently, and the
// transpose below puts them back in element order.
//
// The functions carry __attribute__((target)) instead of the build passing -mavx2, so
// the library still loads on any x86-64; cpu_capability.cpp decides at run time
// whether these kernels run.
#include "fill_cpu_avx2.h"

#if NSPL_HAVE_AVX2_KERNELS

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define NSPL_AVX2 __attribute__((target("avx2,f16c")))
#define NSPL_AVX2_INLINE __attribute__((target("avx2,f16c"), always_inline)) inline

namespace nspl {
namespace avx2 {
namespace {

// ---------------------------------------------------------------------------------
// Packs of N vectors of eight lanes. Every operation below is applied to the N vectors
// side by side, so the N independent dependency chains of a long formula (a log, an
// exp) interleave instruction by instruction and the core overlaps their latencies.
// ---------------------------------------------------------------------------------
template <int N>
struct F {  // float lanes
  __m256 v[N];
};
template <int N>
struct I {  // 32-bit integer lanes
  __m256i v[N];
};
template <int N>
struct D {  // double lanes
  __m256d v[N];
};
template <int N>
struct L {  // 64-bit integer lanes
  __m256i v[N];
};

#define NSPL_LANEWISE(Result, expr)    \
  Result<N> r;                         \
  for (int i = 0; i < N; ++i) r.v[i] = expr; \
  return r

template <int N>
NSPL_AVX2_INLINE F<N> splat(float x) {
  NSPL_LANEWISE(F, _mm256_set1_ps(x));
}
template <int N>
NSPL_AVX2_INLINE I<N> splat_int(uint32_t x) {
  NSPL_LANEWISE(I, _mm256_set1_epi32(static_cast<int32_t>(x)));
}
template <int N>
NSPL_AVX2_INLINE F<N> add(F<N> a, F<N> b) {
  NSPL_LANEWISE(F, _mm256_add_ps(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> sub(F<N> a, F<N> b) {
  NSPL_LANEWISE(F, _mm256_sub_ps(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> mul(F<N> a, F<N> b) {
  NSPL_LANEWISE(F, _mm256_mul_ps(a.v[i], b.v[i]));
}
// _mm256_min_ps(a, b) is a < b ? a : b and _mm256_max_ps(a, b) is a > b ? a : b, NaN
// included: these are the scalar code's conditional expressions.
template <int N>
NSPL_AVX2_INLINE F<N> less_or(F<N> a, F<N> b) {  // a < b ? a : b
  NSPL_LANEWISE(F, _mm256_min_ps(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> greater_or(F<N> a, F<N> b) {  // a > b ? a : b
  NSPL_LANEWISE(F, _mm256_max_ps(a.v[i], b.v[i]));
}
template <int P, int N>
NSPL_AVX2_INLINE F<N> compare(F<N> a, F<N> b) {  // all ones where `a P b`
  NSPL_LANEWISE(F, _mm256_cmp_ps(a.v[i], b.v[i], P));
}
// mask ? b : a
template <int N>
NSPL_AVX2_INLINE F<N> select(F<N> mask, F<N> b, F<N> a) {
  NSPL_LANEWISE(F, _mm256_blendv_ps(a.v[i], b.v[i], mask.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> bit_and(F<N> a, F<N> b) {
  NSPL_LANEWISE(F, _mm256_and_ps(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> square_root(F<N> a) {
  NSPL_LANEWISE(F, _mm256_sqrt_ps(a.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> to_float(I<N> a) {  // exact for |a| < 2^24
  NSPL_LANEWISE(F, _mm256_cvtepi32_ps(a.v[i]));
}
template <int N>
NSPL_AVX2_INLINE F<N> as_float(I<N> a) {
  NSPL_LANEWISE(F, _mm256_castsi256_ps(a.v[i]));
}
template <int N>
NSPL_AVX2_INLINE I<N> as_int(F<N> a) {
  NSPL_LANEWISE(I, _mm256_castps_si256(a.v[i]));
}
template <int N>
NSPL_AVX2_INLINE I<N> add(I<N> a, I<N> b) {
  NSPL_LANEWISE(I, _mm256_add_epi32(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE I<N> sub(I<N> a, I<N> b) {
  NSPL_LANEWISE(I, _mm256_sub_epi32(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE I<N> bit_and(I<N> a, I<N> b) {
  NSPL_LANEWISE(I, _mm256_and_si256(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE I<N> bit_xor(I<N> a, I<N> b) {
  NSPL_LANEWISE(I, _mm256_xor_si256(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE I<N> minimum(I<N> a, I<N> b) {
  NSPL_LANEWISE(I, _mm256_min_epi32(a.v[i], b.v[i]));
}
template <int S, int N>
NSPL_AVX2_INLINE I<N> shift_left(I<N> a) {
  NSPL_LANEWISE(I, _mm256_slli_epi32(a.v[i], S));
}
template <int S, int N>
NSPL_AVX2_INLINE I<N> shift_right(I<N> a) {  // logical
  NSPL_LANEWISE(I, _mm256_srli_epi32(a.v[i], S));
}
template <int S, int N>
NSPL_AVX2_INLINE I<N> shift_right_signed(I<N> a) {  // arithmetic
  NSPL_LANEWISE(I, _mm256_srai_epi32(a.v[i], S));
}

template <int N>
NSPL_AVX2_INLINE D<N> splat_double(double x) {
  NSPL_LANEWISE(D, _mm256_set1_pd(x));
}
template <int N>
NSPL_AVX2_INLINE L<N> splat_long(uint64_t x) {
  NSPL_LANEWISE(L, _mm256_set1_epi64x(static_cast<int64_t>(x)));
}
template <int N>
NSPL_AVX2_INLINE D<N> add(D<N> a, D<N> b) {
  NSPL_LANEWISE(D, _mm256_add_pd(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> sub(D<N> a, D<N> b) {
  NSPL_LANEWISE(D, _mm256_sub_pd(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> mul(D<N> a, D<N> b) {
  NSPL_LANEWISE(D, _mm256_mul_pd(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> div(D<N> a, D<N> b) {
  NSPL_LANEWISE(D, _mm256_div_pd(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> less_or(D<N> a, D<N> b) {  // a < b ? a : b
  NSPL_LANEWISE(D, _mm256_min_pd(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> greater_or(D<N> a, D<N> b) {  // a > b ? a : b
  NSPL_LANEWISE(D, _mm256_max_pd(a.v[i], b.v[i]));
}
template <int P, int N>
NSPL_AVX2_INLINE D<N> compare(D<N> a, D<N> b) {
  NSPL_LANEWISE(D, _mm256_cmp_pd(a.v[i], b.v[i], P));
}
template <int N>
NSPL_AVX2_INLINE D<N> select(D<N> mask, D<N> b, D<N> a) {
  NSPL_LANEWISE(D, _mm256_blendv_pd(a.v[i], b.v[i], mask.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> bit_and(D<N> a, D<N> b) {
  NSPL_LANEWISE(D, _mm256_and_pd(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE D<N> as_double(L<N> a) {
  NSPL_LANEWISE(D, _mm256_castsi256_pd(a.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> as_long(D<N> a) {
  NSPL_LANEWISE(L, _mm256_castpd_si256(a.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> add(L<N> a, L<N> b) {
  NSPL_LANEWISE(L, _mm256_add_epi64(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> sub(L<N> a, L<N> b) {
  NSPL_LANEWISE(L, _mm256_sub_epi64(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> bit_and(L<N> a, L<N> b) {
  NSPL_LANEWISE(L, _mm256_and_si256(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> bit_or(L<N> a, L<N> b) {
  NSPL_LANEWISE(L, _mm256_or_si256(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> bit_xor(L<N> a, L<N> b) {
  NSPL_LANEWISE(L, _mm256_xor_si256(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> greater(L<N> a, L<N> b) {  // all ones where a > b (signed)
  NSPL_LANEWISE(L, _mm256_cmpgt_epi64(a.v[i], b.v[i]));
}
template <int N>
NSPL_AVX2_INLINE L<N> select(L<N> mask, L<N> b, L<N> a) {
  NSPL_LANEWISE(L, _mm256_blendv_epi8(a.v[i], b.v[i], mask.v[i]));
}
template <int S, int N>
NSPL_AVX2_INLINE L<N> shift_left(L<N> a) {
  NSPL_LANEWISE(L, _mm256_slli_epi64(a.v[i], S));
}
template <int S, int N>
NSPL_AVX2_INLINE L<N> shift_right(L<N> a) {  // logical
  NSPL_LANEWISE(L, _mm256_srli_epi64(a.v[i], S));
}

#undef NSPL_LANEWISE

// 2^n for -126 <= n <= 127 (pow2i of nspl_math.h).
template <int N>
NSPL_AVX2_INLINE F<N> pow2i(I<N> n) {
  return as_float(shift_left<23>(add(n, splat_int<N>(127))));
}

// -x: the sign bit flipped, as the scalar unary minus does.
template <int N>
NSPL_AVX2_INLINE F<N> negate(F<N> x) {
  return as_float(bit_xor(as_int(x), splat_int<N>(0x80000000u)));
}

// exp_f32 of nspl_math.h.
template <int N>
NSPL_AVX2_INLINE F<N> exp_v(F<N> x) {
  using namespace f32;
  x = less_or(splat<N>(89.0f), x);      // x > 89 ? 89 : x
  x = greater_or(splat<N>(-104.0f), x);  // x < -104 ? -104 : x
  const F<N> shifted = add(mul(x, splat<N>(kLog2e)), splat<N>(kRoundMagic));
  const F<N> n = sub(shifted, splat<N>(kRoundMagic));
  const I<N> ni = sub(as_int(shifted), splat_int<N>(float_bits(kRoundMagic)));
  F<N> r = sub(x, mul(n, splat<N>(kLn2Hi)));
  r = sub(r, mul(n, splat<N>(kLn2Lo)));
  F<N> q = splat<N>(kExpP4);
  q = add(mul(q, r), splat<N>(kExpP3));
  q = add(mul(q, r), splat<N>(kExpP2));
  q = add(mul(q, r), splat<N>(kExpP1));
  q = add(mul(q, r), splat<N>(kExpP0));
  const F<N> er = add(splat<N>(1.0f), add(r, mul(mul(r, r), q)));
  const I<N> n1 = shift_right_signed<1>(ni);
  return mul(mul(er, pow2i(n1)), pow2i(sub(ni, n1)));
}

// log_f32_corrected of nspl_math.h: log(a + c).
template <int N>
NSPL_AVX2_INLINE F<N> log_v(F<N> a, F<N> c) {
  using namespace f32;
  const F<N> zero = splat<N>(0.0f);
  const F<N> not_positive = compare<_CMP_NGT_UQ>(a, zero);
  const F<N> is_zero = compare<_CMP_EQ_OQ>(a, zero);
  const F<N> is_inf = compare<_CMP_EQ_OQ>(a, splat<N>(INFINITY));
  const F<N> tiny = compare<_CMP_LT_OQ>(a, splat<N>(kMinNormal));
  a = select(tiny, mul(a, splat<N>(kTwo23)), a);
  c = select(tiny, mul(c, splat<N>(kTwo23)), c);
  const I<N> e_denormal = bit_and(as_int(tiny), splat_int<N>(static_cast<uint32_t>(-23)));
  const I<N> shifted = sub(as_int(a), splat_int<N>(kSqrtHalfBits));
  const I<N> e = shift_right_signed<23>(shifted);
  const F<N> m = as_float(add(bit_and(shifted, splat_int<N>(0x007fffffu)), splat_int<N>(kSqrtHalfBits)));
  const I<N> e_clamped = minimum(e, splat_int<N>(126));
  const F<N> f = add(sub(m, splat<N>(1.0f)), mul(c, pow2i(sub(splat_int<N>(0), e_clamped))));
  const F<N> f2 = mul(f, f);
  F<N> q = splat<N>(kLogQ7);
  q = add(mul(q, f), splat<N>(kLogQ6));
  q = add(mul(q, f), splat<N>(kLogQ5));
  q = add(mul(q, f), splat<N>(kLogQ4));
  q = add(mul(q, f), splat<N>(kLogQ3));
  q = add(mul(q, f), splat<N>(kLogQ2));
  q = add(mul(q, f), splat<N>(kLogQ1));
  q = add(mul(q, f), splat<N>(kLogQ0));
  const F<N> ef = to_float(add(e, e_denormal));
  const F<N> tail = add(mul(mul(f2, f), q), mul(ef, splat<N>(kLn2Lo)));
  F<N> result = add(add(sub(tail, mul(splat<N>(0.5f), f2)), f), mul(ef, splat<N>(kLn2Hi)));
  result = select(is_inf, splat<N>(INFINITY), result);
  result = select(not_positive, splat<N>(NAN), result);
  return select(is_zero, splat<N>(-INFINITY), result);
}

// log1p_f32 of nspl_math.h: the TwoSum 1 + p = a + c, then log(a + c).
template <int N>
NSPL_AVX2_INLINE void two_sum_one(F<N> p, F<N>& a, F<N>& c) {
  const F<N> one = splat<N>(1.0f);
  a = add(one, p);
  const F<N> p_part = sub(a, one);
  c = add(sub(one, sub(a, p_part)), sub(p, p_part));
}

template <int N>
NSPL_AVX2_INLINE F<N> log1p_v(F<N> p) {
  F<N> a, c;
  two_sum_one(p, a, c);
  return log_v(a, c);
}

// The double value of integers 0 <= k < 2^52: k placed in the mantissa of 2^52, minus
// 2^52 (AVX2 has no 64-bit integer conversion).
template <int N>
NSPL_AVX2_INLINE D<N> small_to_double(L<N> k) {
  const uint64_t two52_bits = 0x4330000000000000ull;
  return sub(as_double(bit_or(k, splat_long<N>(two52_bits))), splat_double<N>(4503599627370496.0));
}

// 2^n for -1022 <= n <= 1023 (pow2i_f64 of nspl_math.h), n given as n + 1023.
template <int N>
NSPL_AVX2_INLINE D<N> pow2_biased(L<N> n_plus_1023) {
  return as_double(shift_left<52>(n_plus_1023));
}

// exp_f64 of nspl_math.h.
template <int N>
NSPL_AVX2_INLINE D<N> exp_v(D<N> x) {
  using namespace f64;
  x = less_or(splat_double<N>(710.0), x);     // x > 710 ? 710 : x
  x = greater_or(splat_double<N>(-746.0), x);  // x < -746 ? -746 : x
  const D<N> shifted = add(mul(x, splat_double<N>(kLog2e)), splat_double<N>(kRoundMagic));
  const D<N> n = sub(shifted, splat_double<N>(kRoundMagic));
  const L<N> n_biased = add(sub(as_long(shifted), splat_long<N>(double_bits(kRoundMagic))), splat_long<N>(2048));
  D<N> r = sub(x, mul(n, splat_double<N>(kLn2Hi)));
  r = sub(r, mul(n, splat_double<N>(kLn2Lo)));
  D<N> q = splat_double<N>(kExpP9);
  q = add(mul(q, r), splat_double<N>(kExpP8));
  q = add(mul(q, r), splat_double<N>(kExpP7));
  q = add(mul(q, r), splat_double<N>(kExpP6));
  q = add(mul(q, r), splat_double<N>(kExpP5));
  q = add(mul(q, r), splat_double<N>(kExpP4));
  q = add(mul(q, r), splat_double<N>(kExpP3));
  q = add(mul(q, r), splat_double<N>(kExpP2));
  q = add(mul(q, r), splat_double<N>(kExpP1));
  q = add(mul(q, r), splat_double<N>(kExpP0));
  const D<N> er = add(splat_double<N>(1.0), add(r, mul(mul(r, r), q)));
  // n1 + 1023 = (n + 2048) / 2 - 1; n - n1 + 1023 = (n + 2048) - (n1 + 1023) - 2.
  const L<N> n1_plus_1023 = sub(shift_right<1>(n_biased), splat_long<N>(1));
  const L<N> n2_plus_1023 = sub(sub(n_biased, n1_plus_1023), splat_long<N>(2));
  return mul(mul(er, pow2_biased(n1_plus_1023)), pow2_biased(n2_plus_1023));
}

// log_f64_corrected of nspl_math.h: log(a + c).
template <int N>
NSPL_AVX2_INLINE D<N> log_v(D<N> a, D<N> c) {
  using namespace f64;
  const D<N> zero = splat_double<N>(0.0);
  const D<N> not_positive = compare<_CMP_NGT_UQ>(a, zero);
  const D<N> is_zero = compare<_CMP_EQ_OQ>(a, zero);
  const D<N> is_inf = compare<_CMP_EQ_OQ>(a, splat_double<N>(INFINITY));
  const D<N> tiny = compare<_CMP_LT_OQ>(a, splat_double<N>(kMinNormal));
  a = select(tiny, mul(a, splat_double<N>(kTwo54)), a);
  c = select(tiny, mul(c, splat_double<N>(kTwo54)), c);
  const L<N> shifted = add(sub(as_long(a), splat_long<N>(kSqrtHalfBits)), splat_long<N>(kExponentBias));
  const L<N> e_plus_1024 = shift_right<52>(shifted);
  // e + e_denormal + 2048, a small positive integer.
  const L<N> e_total_plus_2048 =
      sub(add(e_plus_1024, splat_long<N>(1024)), bit_and(as_long(tiny), splat_long<N>(54)));
  const D<N> m = as_double(add(bit_and(shifted, splat_long<N>(kMantissaMask)), splat_long<N>(kSqrtHalfBits)));
  // 2^-min(e, 1022): exponent field 1023 - min(e, 1022) = 2047 - min(e + 1024, 2046).
  const L<N> cap = splat_long<N>(2046);
  const L<N> e_capped = select(greater(e_plus_1024, cap), cap, e_plus_1024);
  const D<N> scale = pow2_biased(sub(splat_long<N>(2047), e_capped));
  const D<N> f = add(sub(m, splat_double<N>(1.0)), mul(c, scale));
  const D<N> s = div(f, add(splat_double<N>(2.0), f));
  const D<N> z = mul(s, s);
  D<N> t = splat_double<N>(kLogT6);
  t = add(mul(t, z), splat_double<N>(kLogT5));
  t = add(mul(t, z), splat_double<N>(kLogT4));
  t = add(mul(t, z), splat_double<N>(kLogT3));
  t = add(mul(t, z), splat_double<N>(kLogT2));
  t = add(mul(t, z), splat_double<N>(kLogT1));
  t = add(mul(t, z), splat_double<N>(kLogT0));
  const D<N> half_f2 = mul(splat_double<N>(0.5), mul(f, f));
  const D<N> ed = sub(small_to_double(e_total_plus_2048), splat_double<N>(2048.0));
  const D<N> tail = add(mul(s, add(half_f2, mul(z, t))), mul(ed, splat_double<N>(kLn2Lo)));
  D<N> result = add(add(sub(tail, half_f2), f), mul(ed, splat_double<N>(kLn2Hi)));
  result = select(is_inf, splat_double<N>(INFINITY), result);
  result = select(not_positive, splat_double<N>(NAN), result);
  return select(is_zero, splat_double<N>(-INFINITY), result);
}

template <int N>
NSPL_AVX2_INLINE void two_sum_one(D<N> p, D<N>& a, D<N>& c) {
  const D<N> one = splat_double<N>(1.0);
  a = add(one, p);
  const D<N> p_part = sub(a, one);
  c = add(sub(one, sub(a, p_part)), sub(p, p_part));
}

template <int N>
NSPL_AVX2_INLINE D<N> log1p_v(D<N> p) {
  D<N> a, c;
  two_sum_one(p, a, c);
  return log_v(a, c);
}

// ---------------------------------------------------------------------------------
// Philox4x32-10 on 8·B consecutive blocks
// ---------------------------------------------------------------------------------
// High and low halves of the 32x32 -> 64-bit products of the eight lanes of a with m.
// _mm256_mul_epu32 multiplies the even lanes only, so the odd lanes are shifted down
// for a second product. The low halves come from _mm256_mullo_epi32, which measured
// faster than extracting them from the two products (AMD Zen 3).
NSPL_AVX2_INLINE void mul_wide(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_mullo_epi32(a, m);
}

// The words of blocks block .. block + 8B - 1 in element order: vector 4j + g holds
// the four words of block 8j + 2g, then those of block 8j + 2g + 1, i.e. the words of
// elements 32j + 8g .. 32j + 8g + 7.
template <int B>
NSPL_AVX2_INLINE I<4 * B> philox(uint64_t block, uint64_t key) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int32_t>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int32_t>(kPhiloxM1));
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  // Word j of blocks block + 8b .. block + 8b + 7 is x[j][b], lane k holding block 8b + k.
  __m256i x[4][B];
  for (int b = 0; b < B; ++b) {
    // Counter words 0-1 are the 64-bit block number: add to the low word and carry
    // into the high word where it wraps (an unsigned compare through a sign flip).
    const uint64_t first = block + 8 * static_cast<uint64_t>(b);
    const __m256i lo_base = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(first)));
    const __m256i c0 = _mm256_add_epi32(lo_base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(lo_base, sign), _mm256_xor_si256(c0, sign));
    const __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(first >> 32))),
                                        wrapped);
    // Round 1 with counter words 2-3 zero: the products of word 2 vanish.
    __m256i hi0, lo0;
    mul_wide(c0, m0, hi0, lo0);
    x[0][b] = _mm256_xor_si256(c1, _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(key))));
    x[1][b] = _mm256_setzero_si256();
    x[2][b] = _mm256_xor_si256(hi0, _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(key >> 32))));
    x[3][b] = lo0;
  }
  uint32_t k0 = static_cast<uint32_t>(key);
  uint32_t k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 1; round < 10; ++round) {
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
    const __m256i key0 = _mm256_set1_epi32(static_cast<int32_t>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int32_t>(k1));
    for (int b = 0; b < B; ++b) {
      __m256i hi0, lo0, hi1, lo1;
      mul_wide(x[0][b], m0, hi0, lo0);
      mul_wide(x[2][b], m1, hi1, lo1);
      x[0][b] = _mm256_xor_si256(_mm256_xor_si256(hi1, x[1][b]), key0);
      x[1][b] = lo1;
      x[2][b] = _mm256_xor_si256(_mm256_xor_si256(hi0, x[3][b]), key1);
      x[3][b] = lo0;
    }
  }
  I<4 * B> out;
  for (int b = 0; b < B; ++b) {
    const __m256i t0 = _mm256_unpacklo_epi32(x[0][b], x[1][b]);  // blocks 0,1 | 4,5: words 0,1
    const __m256i t1 = _mm256_unpackhi_epi32(x[0][b], x[1][b]);  // blocks 2,3 | 6,7: words 0,1
    const __m256i t2 = _mm256_unpacklo_epi32(x[2][b], x[3][b]);  // blocks 0,1 | 4,5: words 2,3
    const __m256i t3 = _mm256_unpackhi_epi32(x[2][b], x[3][b]);  // blocks 2,3 | 6,7: words 2,3
    const __m256i b04 = _mm256_unpacklo_epi64(t0, t2);
    const __m256i b15 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i b26 = _mm256_unpacklo_epi64(t1, t3);
    const __m256i b37 = _mm256_unpackhi_epi64(t1, t3);
    out.v[4 * b + 0] = _mm256_permute2x128_si256(b04, b15, 0x20);
    out.v[4 * b + 1] = _mm256_permute2x128_si256(b26, b37, 0x20);
    out.v[4 * b + 2] = _mm256_permute2x128_si256(b04, b15, 0x31);
    out.v[4 * b + 3] = _mm256_permute2x128_si256(b26, b37, 0x31);
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Samplers on packs of elements: Lanes<float> and the samplers of nspl_math.h.
// ---------------------------------------------------------------------------------
template <int N>
NSPL_AVX2_INLINE F<N> unit_v(I<N> w) {
  return mul(add(to_float(shift_right<8>(w)), splat<N>(0.5f)), splat<N>(5.9604644775390625e-08f));
}

template <int N>
NSPL_AVX2_INLINE F<N> symmetric_unit_v(I<N> w) {
  const I<N> k = sub(shift_right<8>(w), splat_int<N>(1u << 23));
  return mul(add(to_float(k), splat<N>(0.5f)), splat<N>(1.1920928955078125e-07f));
}

// Bit 0 of the word set -> negate (flip the sign bit, as the scalar unary minus does).
template <int N>
NSPL_AVX2_INLINE F<N> apply_sign(F<N> v, I<N> w) {
  return as_float(bit_xor(as_int(v), shift_left<31>(w)));
}

struct PowerLawVector {
  static constexpr int kPerBlock = Lanes<float>::kPerBlock;
  PowerLawSampler<float> s;

  template <int N>
  NSPL_AVX2_INLINE F<N> magnitude(F<N> u) const {
    if (s.form == PowerLawForm::LogUniform) return exp_v(mul(u, splat<N>(s.log_ratio)));
    const F<N> one_minus_u = sub(splat<N>(1.0f), u);
    const bool small_u = s.form == PowerLawForm::SmallU;
    const F<N> sv = small_u ? u : one_minus_u;
    const F<N> sv_bar = small_u ? one_minus_u : u;
    const F<N> p = mul(sv, splat<N>(s.expm1_k));
    // Both scalar branches as one log: log1p(p) = log(a + c) with 1 + p = a + c, and
    // log(s_bar + s·exp_k) = log(a + 0).
    const F<N> use_log1p = compare<_CMP_GE_OQ>(p, splat<N>(-0.5f));
    F<N> a1, c1;
    two_sum_one(p, a1, c1);
    const F<N> a = select(use_log1p, a1, add(sv_bar, mul(sv, splat<N>(s.exp_k))));
    const F<N> t = log_v(a, bit_and(use_log1p, c1));
    return exp_v(add(splat<N>(s.base), mul(t, splat<N>(s.inv_b))));
  }

  template <int N>
  NSPL_AVX2_INLINE F<N> operator()(I<N> w) const {
    const F<N> v = mul(splat<N>(s.scale), magnitude(unit_v(w)));
    // v < low ? low : (v < high ? v : high)
    const F<N> low = splat<N>(s.low);
    const F<N> clamped = select(compare<_CMP_LT_OQ>(v, low), low, less_or(v, splat<N>(s.high)));
    return apply_sign(clamped, w);
  }
};

struct UniformVector {
  static constexpr int kPerBlock = Lanes<float>::kPerBlock;
  UniformSampler<float> s;
  template <int N>
  NSPL_AVX2_INLINE F<N> operator()(I<N> w) const {
    return mul(splat<N>(s.bound), symmetric_unit_v(w));
  }
};

struct NormalVector {
  static constexpr int kPerBlock = Lanes<float>::kPerBlock;
  NormalSampler<float> s;

  // erfinv_approx of nspl_math.h, both polynomials computed and the right one kept.
  template <int N>
  NSPL_AVX2_INLINE static F<N> erfinv(F<N> x) {
    const F<N> one = splat<N>(1.0f);
    const F<N> w = negate(log_v(mul(sub(one, x), add(one, x)), splat<N>(0.0f)));
    const F<N> central = compare<_CMP_LT_OQ>(w, splat<N>(5.0f));
    const F<N> wc = sub(w, splat<N>(2.5f));
    F<N> pc = splat<N>(2.81022636e-08f);
    pc = add(splat<N>(3.43273939e-07f), mul(pc, wc));
    pc = add(splat<N>(-3.5233877e-06f), mul(pc, wc));
    pc = add(splat<N>(-4.39150654e-06f), mul(pc, wc));
    pc = add(splat<N>(0.00021858087f), mul(pc, wc));
    pc = add(splat<N>(-0.00125372503f), mul(pc, wc));
    pc = add(splat<N>(-0.00417768164f), mul(pc, wc));
    pc = add(splat<N>(0.246640727f), mul(pc, wc));
    pc = add(splat<N>(1.50140941f), mul(pc, wc));
    const F<N> wt = sub(square_root(w), splat<N>(3.0f));
    F<N> pt = splat<N>(-0.000200214257f);
    pt = add(splat<N>(0.000100950558f), mul(pt, wt));
    pt = add(splat<N>(0.00134934322f), mul(pt, wt));
    pt = add(splat<N>(-0.00367342844f), mul(pt, wt));
    pt = add(splat<N>(0.00573950773f), mul(pt, wt));
    pt = add(splat<N>(-0.0076224613f), mul(pt, wt));
    pt = add(splat<N>(0.00943887047f), mul(pt, wt));
    pt = add(splat<N>(1.00167406f), mul(pt, wt));
    pt = add(splat<N>(2.83297682f), mul(pt, wt));
    return mul(select(central, pc, pt), x);
  }

  template <int N>
  NSPL_AVX2_INLINE F<N> operator()(I<N> w) const {
    return mul(splat<N>(s.std_sqrt2), erfinv(symmetric_unit_v(w)));
  }
};

// float64 elements: the two words of an element are the low (wa) and high (wb) halves of
// one 64-bit lane, v = wa·2^32 + wb (Lanes<double>).
template <int N>
NSPL_AVX2_INLINE L<N> element_bits(I<N> w) {
  L<N> r;
  for (int i = 0; i < N; ++i) r.v[i] = w.v[i];
  return r;
}

// v >> 11 = wa·2^21 + (wb >> 11) as a double, exactly.
template <int N>
NSPL_AVX2_INLINE D<N> top53(L<N> v) {
  const D<N> wa = small_to_double(bit_and(v, splat_long<N>(0xffffffffull)));
  return add(mul(wa, splat_double<N>(2097152.0)), small_to_double(shift_right<43>(v)));
}

template <int N>
NSPL_AVX2_INLINE D<N> apply_sign(D<N> x, L<N> v) {  // bit 0 of wb is bit 32 of the lane
  const L<N> sign = bit_and(shift_left<31>(v), splat_long<N>(0x8000000000000000ull));
  return as_double(bit_xor(as_long(x), sign));
}

struct PowerLawVector64 {
  static constexpr int kPerBlock = Lanes<double>::kPerBlock;
  PowerLawSampler<double> s;

  template <int N>
  NSPL_AVX2_INLINE D<N> magnitude(D<N> u) const {
    if (s.form == PowerLawForm::LogUniform) return exp_v(mul(u, splat_double<N>(s.log_ratio)));
    const D<N> one_minus_u = sub(splat_double<N>(1.0), u);
    const bool small_u = s.form == PowerLawForm::SmallU;
    const D<N> sv = small_u ? u : one_minus_u;
    const D<N> sv_bar = small_u ? one_minus_u : u;
    const D<N> p = mul(sv, splat_double<N>(s.expm1_k));
    const D<N> use_log1p = compare<_CMP_GE_OQ>(p, splat_double<N>(-0.5));
    D<N> a1, c1;
    two_sum_one(p, a1, c1);
    const D<N> a = select(use_log1p, a1, add(sv_bar, mul(sv, splat_double<N>(s.exp_k))));
    const D<N> t = log_v(a, bit_and(use_log1p, c1));
    return exp_v(add(splat_double<N>(s.base), mul(t, splat_double<N>(s.inv_b))));
  }

  template <int N>
  NSPL_AVX2_INLINE D<N> operator()(I<N> w) const {
    const L<N> v = element_bits(w);
    const D<N> u = mul(add(top53(v), splat_double<N>(0.5)), splat_double<N>(1.1102230246251565e-16));
    const D<N> x = mul(splat_double<N>(s.scale), magnitude(u));
    const D<N> low = splat_double<N>(s.low);
    const D<N> clamped = select(compare<_CMP_LT_OQ>(x, low), low, less_or(x, splat_double<N>(s.high)));
    return apply_sign(clamped, v);
  }
};

struct UniformVector64 {
  static constexpr int kPerBlock = Lanes<double>::kPerBlock;
  UniformSampler<double> s;
  template <int N>
  NSPL_AVX2_INLINE D<N> operator()(I<N> w) const {
    const D<N> k = sub(top53(element_bits(w)), splat_double<N>(4503599627370496.0));
    return mul(splat_double<N>(s.bound), mul(add(k, splat_double<N>(0.5)), splat_double<N>(2.220446049250313e-16)));
  }
};

template <typename Sampler>
struct Vector;
template <>
struct Vector<PowerLawSampler<double>> {
  using type = PowerLawVector64;
};
template <>
struct Vector<UniformSampler<double>> {
  using type = UniformVector64;
};
template <>
struct Vector<PowerLawSampler<float>> {
  using type = PowerLawVector;
};
template <>
struct Vector<UniformSampler<float>> {
  using type = UniformVector;
};
template <>
struct Vector<NormalSampler<float>> {
  using type = NormalVector;
};

// ---------------------------------------------------------------------------------
// Stores, rounded as c10's float -> Half / BFloat16 conversions round (to nearest even)
// ---------------------------------------------------------------------------------
NSPL_AVX2_INLINE void store_vector(double* out, __m256d v) { _mm256_storeu_pd(out, v); }

NSPL_AVX2_INLINE void store_vector(float* out, __m256 v) { _mm256_storeu_ps(out, v); }

NSPL_AVX2_INLINE void store_vector(c10::Half* out, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

NSPL_AVX2_INLINE void store_vector(c10::BFloat16* out, __m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), packed);
}

// ---------------------------------------------------------------------------------
// The run: batches of kBlocks Philox blocks
// ---------------------------------------------------------------------------------
// Philox runs on two groups of eight blocks side by side and the sampler on kPack
// vectors side by side: enough independent work to hide the latencies of the
// multiplies and of the long polynomial chains without running out of registers.
constexpr int kPhiloxGroups = 2;
constexpr int kBlocks = 8 * kPhiloxGroups;
constexpr int kWordVectors = kBlocks / 2;
constexpr int kPack = 8;

template <typename scalar_t, typename Sampler>
NSPL_AVX2 void fill_run_avx2(scalar_t* out, int64_t stride, uint64_t first, int64_t count,
                             const Sampler& scalar_sampler, const StreamPosition& pos) {
  using Vectorised = typename Vector<Sampler>::type;
  constexpr int kPerBlock = Vectorised::kPerBlock;
  constexpr int kPerVector = 2 * kPerBlock;  // a vector of words covers two blocks
  constexpr int kBatch = kBlocks * kPerBlock;
  const Vectorised sampler{scalar_sampler};
  uint64_t block = pos.offset + first / kPerBlock;
  int skip = static_cast<int>(first % kPerBlock);
  while (count > 0) {
    const int take = static_cast<int>(std::min<int64_t>(kBatch - skip, count));
    const I<kWordVectors> words = philox<kPhiloxGroups>(block, pos.key);
    // A full contiguous batch goes straight to `out`; a partial batch (row head or
    // tail) or a strided row goes through a buffer, element by element.
    alignas(32) scalar_t buffer[kBatch];
    const bool direct = stride == 1 && take == kBatch;
    scalar_t* const dst = direct ? out : buffer;
    for (int g = 0; g < kWordVectors; g += kPack) {
      I<kPack> w;
      for (int i = 0; i < kPack; ++i) w.v[i] = words.v[g + i];
      const auto v = sampler(w);
      for (int i = 0; i < kPack; ++i) store_vector(dst + kPerVector * (g + i), v.v[i]);
    }
    if (!direct) {
      for (int j = 0; j < take; ++j) out[j * stride] = buffer[skip + j];
    }
    out += take * stride;
    count -= take;
    block += kBlocks;
    skip = 0;
  }
}

template <MathFunction fn, typename T, typename V>
NSPL_AVX2 void math_avx2(const T* in, T* out, int64_t n) {
  constexpr int kLanes = 32 / sizeof(T);
  for (int64_t i = 0; i < n; i += kLanes) {
    alignas(32) T buffer[kLanes] = {};
    const int64_t k = std::min<int64_t>(kLanes, n - i);
    std::memcpy(buffer, in + i, k * sizeof(T));
    V x;
    std::memcpy(&x, buffer, sizeof x);
    V zero;
    std::memset(&zero, 0, sizeof zero);
    x = fn == MathFunction::Exp ? exp_v(x) : fn == MathFunction::Log ? log_v(x, zero) : log1p_v(x);
    std::memcpy(buffer, &x, sizeof x);
    std::memcpy(out + i, buffer, k * sizeof(T));
  }
}

template <typename T, typename V>
void math_dispatch(MathFunction fn, const T* in, T* out, int64_t n) {
  switch (fn) {
    case MathFunction::Exp:
      return math_avx2<MathFunction::Exp, T, V>(in, out, n);
    case MathFunction::Log:
      return math_avx2<MathFunction::Log, T, V>(in, out, n);
    case MathFunction::Log1p:
      return math_avx2<MathFunction::Log1p, T, V>(in, out, n);
  }
}

}  // namespace

template <typename scalar_t, typename Sampler>
void fill_run(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Sampler& sampler,
              const StreamPosition& pos) {
  fill_run_avx2(out, stride, first, count, sampler, pos);
}

#define NSPL_INSTANTIATE_AVX2_RUN(scalar_t, Sampler)                                                  \
  template void fill_run<scalar_t, Sampler>(scalar_t*, int64_t, uint64_t, int64_t, const Sampler&, \
                                            const StreamPosition&)
#define NSPL_INSTANTIATE_AVX2_SAMPLER(Sampler)     \
  NSPL_INSTANTIATE_AVX2_RUN(float, Sampler);      \
  NSPL_INSTANTIATE_AVX2_RUN(c10::Half, Sampler);  \
  NSPL_INSTANTIATE_AVX2_RUN(c10::BFloat16, Sampler)
NSPL_INSTANTIATE_AVX2_SAMPLER(PowerLawSampler<float>);
NSPL_INSTANTIATE_AVX2_SAMPLER(UniformSampler<float>);
NSPL_INSTANTIATE_AVX2_SAMPLER(NormalSampler<float>);
NSPL_INSTANTIATE_AVX2_RUN(double, PowerLawSampler<double>);
NSPL_INSTANTIATE_AVX2_RUN(double, UniformSampler<double>);

void math_f32(MathFunction fn, const float* in, float* out, int64_t n) {
  math_dispatch<float, F<1>>(fn, in, out, n);
}

void math_f64(MathFunction fn, const double* in, double* out, int64_t n) {
  math_dispatch<double, D<1>>(fn, in, out, n);
}

}  // namespace avx2
}  // namespace nspl

#endif  // NSPL_HAVE_AVX2_KERNELS
