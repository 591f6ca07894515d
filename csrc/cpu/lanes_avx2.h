// AVX2 (with FMA and F16C) lane types for the element math of nspl_math.h: 8 floats or 4
// doubles per vector, with the operations and IEEE meanings listed there, plus what the
// CPU kernel (fill_simd.h) needs: Philox on 4 blocks per vector, the words in element
// order, and stores that round to float16 / bfloat16 to nearest even. Where AVX2 lacks an
// instruction (64-bit arithmetic shifts and int64 -> double conversions), a short exact
// sequence stands in.
//
// Include only in a translation unit compiled for AVX2, FMA and F16C, after nspl_math.h
// (see fill_cpu_avx2.cpp).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "../nspl_math.h"
#include "lane_ops.h"

namespace nspl {
NSPL_ISA_BEGIN

NSPL_VECTOR_TYPE(F32x8, __m256, float, _mm256_set1_ps)
NSPL_VECTOR_TYPE(I32x8, __m256i, int32_t, _mm256_set1_epi32)
struct M32x8 {  // the lanes whose top bit is set (all ones where a comparison holds)
  __m256 m;
};
NSPL_VECTOR_TYPE(F64x4, __m256d, double, _mm256_set1_pd)
NSPL_VECTOR_TYPE(I64x4, __m256i, int64_t, _mm256_set1_epi64x)
struct M64x4 {  // as M32x8
  __m256d m;
};

NSPL_LANE_TRAITS(F32x8, I32x8, M32x8, float)
NSPL_LANE_TRAITS(F64x4, I64x4, M64x4, double)

NSPL_VECTOR_LANE_OPS(F32x8, I32x8, 256, ps, 32)
NSPL_VECTOR_LANE_OPS(F64x4, I64x4, 256, pd, 64)

// float lanes
NSPL_LANE M32x8 lt(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
NSPL_LANE F32x8 select(M32x8 m, F32x8 a, F32x8 b) { return _mm256_blendv_ps(b.v, a.v, m.m); }

// int32 lanes
template <int k>
NSPL_LANE I32x8 shift_right_arithmetic(I32x8 a) {
  return _mm256_srai_epi32(a.v, k);
}
NSPL_LANE F32x8 convert_signed(I32x8 a) { return _mm256_cvtepi32_ps(a.v); }
// vblendvps reads only the top bit of each mask lane: the integer's own bits are the mask.
NSPL_LANE M32x8 is_negative(I32x8 a) { return {_mm256_castsi256_ps(a.v)}; }
NSPL_LANE F32x8 convert_small(I32x8 a) { return _mm256_cvtepi32_ps(a.v); }

// double lanes
NSPL_LANE M64x4 lt(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ)}; }
NSPL_LANE F64x4 select(M64x4 m, F64x4 a, F64x4 b) { return _mm256_blendv_pd(b.v, a.v, m.m); }

// int64 lanes: the logical shift, with the sign bits shifted in where a is negative; a
// shift by 63 is the comparison alone.
template <int k>
NSPL_LANE I64x4 shift_right_arithmetic(I64x4 a) {
  const __m256i negative = _mm256_cmpgt_epi64(_mm256_setzero_si256(), a.v);
  if constexpr (k == 63) return negative;
  return _mm256_or_si256(_mm256_srli_epi64(a.v, k), _mm256_slli_epi64(negative, 64 - k));
}
NSPL_LANE M64x4 is_negative(I64x4 a) { return {_mm256_castsi256_pd(a.v)}; }
// |a| < 2^63: a = h·2^32 + l with h = a >> 32 (arithmetic) and l the low 32 bits, each
// converted exactly through the mantissa of 2^52 (or'ing an integer below 2^52 into 2^52's
// mantissa gives 2^52 + that integer; h goes in as h + 2^31, its top bit flipped, and
// 2^52 + 2^31 comes off), then joined by one fma, the one rounding of a correctly rounded
// conversion (none below 2^53).
NSPL_LANE F64x4 convert_signed(I64x4 a) {
  const __m256i two52 = _mm256_set1_epi64x(0x4330000000000000ll);
  const __m256i two52_two31 = _mm256_set1_epi64x(0x4330000080000000ll);
  const __m256d high = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_xor_si256(_mm256_srli_epi64(a.v, 32), two52_two31)),
                                     _mm256_set1_pd(0x1p52 + 0x1p31));
  const __m256i low_bits = _mm256_and_si256(a.v, _mm256_set1_epi64x(0xffffffffll));
  const __m256d low = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(low_bits, two52)), _mm256_set1_pd(0x1p52));
  return _mm256_fmadd_pd(high, _mm256_set1_pd(0x1p32), low);
}
// |a| < 2^51: a added to the bits of 1.5·2^52, whose binade holds 1.5·2^52 + a exactly.
NSPL_LANE F64x4 convert_small(I64x4 a) {
  const __m256i magic = _mm256_set1_epi64x(0x4338000000000000ll);
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(a.v, magic)), _mm256_set1_pd(0x1.8p52));
}

// ---------------------------------------------------------------------------------
// For the CPU kernel (fill_simd.h)
// ---------------------------------------------------------------------------------
struct Avx2 {
  using Float = F32x8;
  using Int = I32x8;
  using Double = F64x4;
  using Long = I64x4;
  // Philox runs on 64-bit lanes, one block per lane, each 32-bit word of the state in the
  // low half of a lane (fill_simd.h explains why the high halves may hold anything).
  using Word = I64x4;
  static constexpr int kBlocksPerVector = 4;

  static NSPL_LANE I64x4 consecutive(uint64_t first) {
    return _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(first)), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static NSPL_LANE I64x4 mul_u32(I64x4 a, I64x4 b) { return _mm256_mul_epu32(a.v, b.v); }
  // The high 32 bits of each lane brought down to the low half (the high half then holds
  // them again, which Philox ignores): a shuffle, which issues on another port than the
  // multiplies and shifts of the rounds.
  static NSPL_LANE I64x4 high_words(I64x4 a) { return _mm256_shuffle_epi32(a.v, 0xF5); }
  static NSPL_LANE I64x4 xor3(I64x4 a, I64x4 b, I64x4 c) {
    return _mm256_xor_si256(_mm256_xor_si256(a.v, b.v), c.v);
  }

  // Words w0..w3 of blocks j = 0..3 as their 16 float elements in order: blocks 0-1 in
  // `first`, 2-3 in `second`.
  static NSPL_LANE void element_words(I64x4 x0, I64x4 x1, I64x4 x2, I64x4 x3, I32x8& first, I32x8& second) {
    const __m256i low = _mm256_set1_epi64x(0xffffffffll);
    const __m256i w01 = _mm256_or_si256(_mm256_and_si256(x0.v, low), _mm256_slli_epi64(x1.v, 32));
    const __m256i w23 = _mm256_or_si256(_mm256_and_si256(x2.v, low), _mm256_slli_epi64(x3.v, 32));
    __m256i a, b;
    interleave(w01, w23, a, b);
    first = a;
    second = b;
  }
  // The same blocks as 8 float64 elements of 64 bits wa·2^32 + wb each.
  static NSPL_LANE void element_bits(I64x4 x0, I64x4 x1, I64x4 x2, I64x4 x3, I64x4& first, I64x4& second) {
    const __m256i low = _mm256_set1_epi64x(0xffffffffll);
    const __m256i lane0 = _mm256_or_si256(_mm256_and_si256(x1.v, low), _mm256_slli_epi64(x0.v, 32));
    const __m256i lane1 = _mm256_or_si256(_mm256_and_si256(x3.v, low), _mm256_slli_epi64(x2.v, 32));
    __m256i a, b;
    interleave(lane0, lane1, a, b);
    first = a;
    second = b;
  }

  static NSPL_LANE void store(float* out, F32x8 v) { _mm256_storeu_ps(out, v.v); }
  static NSPL_LANE void store(double* out, F64x4 v) { _mm256_storeu_pd(out, v.v); }
  static NSPL_LANE void store_half(void* out, F32x8 v) {
    _mm_storeu_si128(static_cast<__m128i*>(out), _mm256_cvtps_ph(v.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // Round to nearest even on the bits (the values are finite), then pack the high halves.
  static NSPL_LANE void store_bfloat16(void* out, F32x8 v) {
    const __m256i bits = _mm256_castps_si256(v.v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
    _mm_storeu_si128(static_cast<__m128i*>(out), packed);
  }

 private:
  // (a0 b0 a1 b1) and (a2 b2 a3 b3) from the 64-bit lanes of a and b.
  static NSPL_LANE void interleave(__m256i a, __m256i b, __m256i& first, __m256i& second) {
    const __m256i low = _mm256_unpacklo_epi64(a, b);   // a0 b0 | a2 b2
    const __m256i high = _mm256_unpackhi_epi64(a, b);  // a1 b1 | a3 b3
    first = _mm256_permute2x128_si256(low, high, 0x20);
    second = _mm256_permute2x128_si256(low, high, 0x31);
  }
};

NSPL_ISA_END
}  // namespace nspl
