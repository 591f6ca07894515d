// AVX2 kernels of the CPU backend: Philox4x32-10 for eight blocks at once, then the
// samplers of nspl_math.h on eight elements at once.
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
// Lane-wise float helpers
// ---------------------------------------------------------------------------------
NSPL_AVX2_INLINE __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
NSPL_AVX2_INLINE __m256 sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
NSPL_AVX2_INLINE __m256 mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
NSPL_AVX2_INLINE __m256 splat(float x) { return _mm256_set1_ps(x); }
NSPL_AVX2_INLINE __m256i splat_int(uint32_t x) { return _mm256_set1_epi32(static_cast<int32_t>(x)); }
NSPL_AVX2_INLINE __m256 as_float(__m256i x) { return _mm256_castsi256_ps(x); }
NSPL_AVX2_INLINE __m256i as_int(__m256 x) { return _mm256_castps_si256(x); }
// mask ? b : a, lane by lane.
NSPL_AVX2_INLINE __m256 select(__m256 mask, __m256 b, __m256 a) { return _mm256_blendv_ps(a, b, mask); }

// 2^n for -126 <= n <= 127 (pow2i of nspl_math.h).
NSPL_AVX2_INLINE __m256 pow2i(__m256i n) {
  return as_float(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

// exp_f32 of nspl_math.h.
NSPL_AVX2_INLINE __m256 exp8(__m256 x) {
  using namespace f32;
  // _mm256_min_ps(a, b) is a < b ? a : b and _mm256_max_ps(a, b) is a > b ? a : b, so
  // these are the scalar clamps, NaN included.
  x = _mm256_min_ps(splat(89.0f), x);
  x = _mm256_max_ps(splat(-104.0f), x);
  const __m256 shifted = add(mul(x, splat(kLog2e)), splat(kRoundMagic));
  const __m256 n = sub(shifted, splat(kRoundMagic));
  const __m256i ni = _mm256_sub_epi32(as_int(shifted), splat_int(float_bits(kRoundMagic)));
  __m256 r = sub(x, mul(n, splat(kLn2Hi)));
  r = sub(r, mul(n, splat(kLn2Lo)));
  __m256 q = splat(kExpP4);
  q = add(mul(q, r), splat(kExpP3));
  q = add(mul(q, r), splat(kExpP2));
  q = add(mul(q, r), splat(kExpP1));
  q = add(mul(q, r), splat(kExpP0));
  const __m256 er = add(splat(1.0f), add(r, mul(mul(r, r), q)));
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  return mul(mul(er, pow2i(n1)), pow2i(_mm256_sub_epi32(ni, n1)));
}

// log_f32_corrected of nspl_math.h: log(a + c).
NSPL_AVX2_INLINE __m256 log8(__m256 a, __m256 c) {
  using namespace f32;
  const __m256 zero = _mm256_setzero_ps();
  const __m256 not_positive = _mm256_cmp_ps(a, zero, _CMP_NGT_UQ);
  const __m256 is_zero = _mm256_cmp_ps(a, zero, _CMP_EQ_OQ);
  const __m256 is_inf = _mm256_cmp_ps(a, splat(INFINITY), _CMP_EQ_OQ);
  const __m256 tiny = _mm256_cmp_ps(a, splat(kMinNormal), _CMP_LT_OQ);
  a = select(tiny, mul(a, splat(kTwo23)), a);
  c = select(tiny, mul(c, splat(kTwo23)), c);
  const __m256i e_denormal = _mm256_and_si256(as_int(tiny), _mm256_set1_epi32(-23));
  const __m256i shifted = _mm256_sub_epi32(as_int(a), splat_int(kSqrtHalfBits));
  const __m256i e = _mm256_srai_epi32(shifted, 23);
  const __m256 m =
      as_float(_mm256_add_epi32(_mm256_and_si256(shifted, splat_int(0x007fffffu)), splat_int(kSqrtHalfBits)));
  const __m256i e_clamped = _mm256_min_epi32(e, _mm256_set1_epi32(126));
  const __m256 f = add(sub(m, splat(1.0f)), mul(c, pow2i(_mm256_sub_epi32(_mm256_setzero_si256(), e_clamped))));
  const __m256 f2 = mul(f, f);
  __m256 q = splat(kLogQ7);
  q = add(mul(q, f), splat(kLogQ6));
  q = add(mul(q, f), splat(kLogQ5));
  q = add(mul(q, f), splat(kLogQ4));
  q = add(mul(q, f), splat(kLogQ3));
  q = add(mul(q, f), splat(kLogQ2));
  q = add(mul(q, f), splat(kLogQ1));
  q = add(mul(q, f), splat(kLogQ0));
  const __m256 ef = _mm256_cvtepi32_ps(_mm256_add_epi32(e, e_denormal));
  const __m256 tail = add(mul(mul(f2, f), q), mul(ef, splat(kLn2Lo)));
  __m256 result = add(add(sub(tail, mul(splat(0.5f), f2)), f), mul(ef, splat(kLn2Hi)));
  result = select(is_inf, splat(INFINITY), result);
  result = select(not_positive, splat(NAN), result);
  return select(is_zero, splat(-INFINITY), result);
}

// log1p_f32 of nspl_math.h: the TwoSum 1 + p = a + c, then log(a + c).
NSPL_AVX2_INLINE void two_sum_one(__m256 p, __m256& a, __m256& c) {
  const __m256 one = splat(1.0f);
  a = add(one, p);
  const __m256 p_part = sub(a, one);
  c = add(sub(one, sub(a, p_part)), sub(p, p_part));
}

NSPL_AVX2_INLINE __m256 log1p8(__m256 p) {
  __m256 a, c;
  two_sum_one(p, a, c);
  return log8(a, c);
}

// ---------------------------------------------------------------------------------
// Philox4x32-10 on eight consecutive blocks
// ---------------------------------------------------------------------------------
// Word j of blocks b .. b+7 sits in x[j], lane k holding block b+k.
struct Philox8 {
  __m256i x[4];
};

// 32x32 -> 64-bit products of the eight lanes of a with m: _mm256_mul_epu32 multiplies
// the even lanes, so the odd lanes are shifted down for a second product.
NSPL_AVX2_INLINE void mul_wide(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

NSPL_AVX2_INLINE Philox8 philox8(uint64_t block, uint64_t key) {
  const __m256i m0 = splat_int(kPhiloxM0);
  const __m256i m1 = splat_int(kPhiloxM1);
  // Counter words 0-1 are the 64-bit block number: add 0..7 to the low word and carry
  // into the high word where it wraps (unsigned compare through a sign flip).
  const __m256i lo_base = splat_int(static_cast<uint32_t>(block));
  const __m256i c0 = _mm256_add_epi32(lo_base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i sign = splat_int(0x80000000u);
  const __m256i wrapped =
      _mm256_cmpgt_epi32(_mm256_xor_si256(lo_base, sign), _mm256_xor_si256(c0, sign));
  const __m256i c1 = _mm256_sub_epi32(splat_int(static_cast<uint32_t>(block >> 32)), wrapped);
  __m256i k0 = splat_int(static_cast<uint32_t>(key));
  __m256i k1 = splat_int(static_cast<uint32_t>(key >> 32));
  // Round 1 with counter words 2-3 zero: the products of word 2 vanish.
  __m256i hi0, lo0, hi1, lo1;
  mul_wide(c0, m0, hi0, lo0);
  __m256i x0 = _mm256_xor_si256(c1, k0);
  __m256i x1 = _mm256_setzero_si256();
  __m256i x2 = _mm256_xor_si256(hi0, k1);
  __m256i x3 = lo0;
  for (int round = 1; round < 10; ++round) {
    k0 = _mm256_add_epi32(k0, splat_int(kPhiloxW0));
    k1 = _mm256_add_epi32(k1, splat_int(kPhiloxW1));
    mul_wide(x0, m0, hi0, lo0);
    mul_wide(x2, m1, hi1, lo1);
    x0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), k0);
    x1 = lo1;
    x2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), k1);
    x3 = lo0;
  }
  return Philox8{{x0, x1, x2, x3}};
}

// Element order: out.x[g] holds the four words of block 2g then those of block 2g+1,
// i.e. the words of elements 8g .. 8g+7 of the batch.
NSPL_AVX2_INLINE Philox8 to_element_order(const Philox8& in) {
  const __m256i t0 = _mm256_unpacklo_epi32(in.x[0], in.x[1]);  // blocks 0,1 | 4,5: words 0,1
  const __m256i t1 = _mm256_unpackhi_epi32(in.x[0], in.x[1]);  // blocks 2,3 | 6,7: words 0,1
  const __m256i t2 = _mm256_unpacklo_epi32(in.x[2], in.x[3]);  // blocks 0,1 | 4,5: words 2,3
  const __m256i t3 = _mm256_unpackhi_epi32(in.x[2], in.x[3]);  // blocks 2,3 | 6,7: words 2,3
  const __m256i b04 = _mm256_unpacklo_epi64(t0, t2);
  const __m256i b15 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i b26 = _mm256_unpacklo_epi64(t1, t3);
  const __m256i b37 = _mm256_unpackhi_epi64(t1, t3);
  return Philox8{{_mm256_permute2x128_si256(b04, b15, 0x20), _mm256_permute2x128_si256(b26, b37, 0x20),
                  _mm256_permute2x128_si256(b04, b15, 0x31), _mm256_permute2x128_si256(b26, b37, 0x31)}};
}

// ---------------------------------------------------------------------------------
// Samplers on eight elements: Lanes<float> and the samplers of nspl_math.h.
// ---------------------------------------------------------------------------------
NSPL_AVX2_INLINE __m256 unit8(__m256i w) {
  const __m256 k = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 8));
  return mul(add(k, splat(0.5f)), splat(5.9604644775390625e-08f));
}

NSPL_AVX2_INLINE __m256 symmetric_unit8(__m256i w) {
  const __m256i k = _mm256_sub_epi32(_mm256_srli_epi32(w, 8), _mm256_set1_epi32(1 << 23));
  return mul(add(_mm256_cvtepi32_ps(k), splat(0.5f)), splat(1.1920928955078125e-07f));
}

// Bit 0 of the word set -> negate (flip the sign bit, as the scalar unary minus does).
NSPL_AVX2_INLINE __m256 apply_sign(__m256 v, __m256i w) {
  return as_float(_mm256_xor_si256(as_int(v), _mm256_slli_epi32(w, 31)));
}

struct PowerLaw8 {
  __m256 scale, log_ratio, base, inv_b, expm1_k, exp_k, low, high;
  PowerLawForm form;

  NSPL_AVX2_INLINE explicit PowerLaw8(const PowerLawSampler<float>& s)
      : scale(splat(s.scale)),
        log_ratio(splat(s.log_ratio)),
        base(splat(s.base)),
        inv_b(splat(s.inv_b)),
        expm1_k(splat(s.expm1_k)),
        exp_k(splat(s.exp_k)),
        low(splat(s.low)),
        high(splat(s.high)),
        form(s.form) {}

  NSPL_AVX2_INLINE __m256 magnitude(__m256 u) const {
    if (form == PowerLawForm::LogUniform) return exp8(mul(u, log_ratio));
    const __m256 one_minus_u = sub(splat(1.0f), u);
    const bool small_u = form == PowerLawForm::SmallU;
    const __m256 s = small_u ? u : one_minus_u;
    const __m256 s_bar = small_u ? one_minus_u : u;
    const __m256 p = mul(s, expm1_k);
    // Both scalar branches as one log: log1p(p) = log(a + c) with 1 + p = a + c, and
    // log(s_bar + s·exp_k) = log(a + 0).
    const __m256 use_log1p = _mm256_cmp_ps(p, splat(-0.5f), _CMP_GE_OQ);
    __m256 a1, c1;
    two_sum_one(p, a1, c1);
    const __m256 a = select(use_log1p, a1, add(s_bar, mul(s, exp_k)));
    const __m256 c = _mm256_and_ps(use_log1p, c1);
    const __m256 t = log8(a, c);
    return exp8(add(base, mul(t, inv_b)));
  }

  NSPL_AVX2_INLINE __m256 operator()(__m256i w) const {
    const __m256 v = mul(scale, magnitude(unit8(w)));
    // v < low ? low : (v < high ? v : high)
    const __m256 below = _mm256_cmp_ps(v, low, _CMP_LT_OQ);
    const __m256 clamped = select(below, low, _mm256_min_ps(v, high));
    return apply_sign(clamped, w);
  }
};

struct Uniform8 {
  __m256 bound;
  NSPL_AVX2_INLINE explicit Uniform8(const UniformSampler<float>& s) : bound(splat(s.bound)) {}
  NSPL_AVX2_INLINE __m256 operator()(__m256i w) const { return mul(bound, symmetric_unit8(w)); }
};

struct Normal8 {
  __m256 std_sqrt2;
  NSPL_AVX2_INLINE explicit Normal8(const NormalSampler<float>& s) : std_sqrt2(splat(s.std_sqrt2)) {}

  // erfinv_approx of nspl_math.h, both polynomials computed and the right one kept.
  NSPL_AVX2_INLINE static __m256 erfinv(__m256 x) {
    const __m256 one = splat(1.0f);
    const __m256 lg = log8(mul(sub(one, x), add(one, x)), _mm256_setzero_ps());
    const __m256 w = as_float(_mm256_xor_si256(as_int(lg), splat_int(0x80000000u)));
    const __m256 central = _mm256_cmp_ps(w, splat(5.0f), _CMP_LT_OQ);
    const __m256 wc = sub(w, splat(2.5f));
    __m256 pc = splat(2.81022636e-08f);
    pc = add(splat(3.43273939e-07f), mul(pc, wc));
    pc = add(splat(-3.5233877e-06f), mul(pc, wc));
    pc = add(splat(-4.39150654e-06f), mul(pc, wc));
    pc = add(splat(0.00021858087f), mul(pc, wc));
    pc = add(splat(-0.00125372503f), mul(pc, wc));
    pc = add(splat(-0.00417768164f), mul(pc, wc));
    pc = add(splat(0.246640727f), mul(pc, wc));
    pc = add(splat(1.50140941f), mul(pc, wc));
    const __m256 wt = sub(_mm256_sqrt_ps(w), splat(3.0f));
    __m256 pt = splat(-0.000200214257f);
    pt = add(splat(0.000100950558f), mul(pt, wt));
    pt = add(splat(0.00134934322f), mul(pt, wt));
    pt = add(splat(-0.00367342844f), mul(pt, wt));
    pt = add(splat(0.00573950773f), mul(pt, wt));
    pt = add(splat(-0.0076224613f), mul(pt, wt));
    pt = add(splat(0.00943887047f), mul(pt, wt));
    pt = add(splat(1.00167406f), mul(pt, wt));
    pt = add(splat(2.83297682f), mul(pt, wt));
    return mul(select(central, pc, pt), x);
  }

  NSPL_AVX2_INLINE __m256 operator()(__m256i w) const { return mul(std_sqrt2, erfinv(symmetric_unit8(w))); }
};

template <typename Sampler>
struct Vector;
template <>
struct Vector<PowerLawSampler<float>> {
  using type = PowerLaw8;
};
template <>
struct Vector<UniformSampler<float>> {
  using type = Uniform8;
};
template <>
struct Vector<NormalSampler<float>> {
  using type = Normal8;
};

// ---------------------------------------------------------------------------------
// Stores, rounded as c10's float -> Half / BFloat16 conversions round (to nearest even)
// ---------------------------------------------------------------------------------
NSPL_AVX2_INLINE void store8(float* out, __m256 v) { _mm256_storeu_ps(out, v); }

NSPL_AVX2_INLINE void store8(c10::Half* out, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

NSPL_AVX2_INLINE void store8(c10::BFloat16* out, __m256 v) {
  const __m256i bits = as_int(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7fc0), as_int(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), packed);
}

// ---------------------------------------------------------------------------------
// The run: batches of eight blocks (32 elements)
// ---------------------------------------------------------------------------------
constexpr int kBatch = 32;

template <typename scalar_t, typename Sampler>
NSPL_AVX2 void fill_run_avx2(scalar_t* out, int64_t stride, uint64_t first, int64_t count,
                             const Sampler& scalar_sampler, const StreamPosition& pos) {
  const typename Vector<Sampler>::type sampler(scalar_sampler);
  uint64_t block = pos.offset + first / 4;
  int skip = static_cast<int>(first % 4);
  while (count > 0) {
    const int take = static_cast<int>(std::min<int64_t>(kBatch - skip, count));
    const Philox8 words = to_element_order(philox8(block, pos.key));
    if (stride == 1 && take == kBatch) {
      for (int g = 0; g < 4; ++g) store8(out + 8 * g, sampler(words.x[g]));
    } else {
      // A partial batch (row head or tail) or a strided row: sample the groups of eight
      // that hold wanted elements into a buffer, then copy those elements out.
      alignas(32) scalar_t buffer[kBatch];
      for (int g = 0; g < 4; ++g) {
        if (8 * g < skip + take && 8 * g + 8 > skip) store8(buffer + 8 * g, sampler(words.x[g]));
      }
      for (int j = 0; j < take; ++j) out[j * stride] = buffer[skip + j];
    }
    out += take * stride;
    count -= take;
    block += 8;
    skip = 0;
  }
}

template <MathFunction fn>
NSPL_AVX2 void math_f32_avx2(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    alignas(32) float buffer[8] = {};
    const int64_t k = std::min<int64_t>(8, n - i);
    std::memcpy(buffer, in + i, k * sizeof(float));
    __m256 x = _mm256_load_ps(buffer);
    x = fn == MathFunction::Exp ? exp8(x) : fn == MathFunction::Log ? log8(x, _mm256_setzero_ps()) : log1p8(x);
    _mm256_store_ps(buffer, x);
    std::memcpy(out + i, buffer, k * sizeof(float));
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

void math_f32(MathFunction fn, const float* in, float* out, int64_t n) {
  switch (fn) {
    case MathFunction::Exp:
      return math_f32_avx2<MathFunction::Exp>(in, out, n);
    case MathFunction::Log:
      return math_f32_avx2<MathFunction::Log>(in, out, n);
    case MathFunction::Log1p:
      return math_f32_avx2<MathFunction::Log1p>(in, out, n);
  }
}

}  // namespace avx2
}  // namespace nspl

#endif  // NSPL_HAVE_AVX2_KERNELS
