// AVX-512 lane types for the element math of nspl_math.h: 16 floats or 8 doubles per
// vector, with the operations and IEEE meanings listed there, plus what the CPU kernel
// (fill_simd.h) needs: Philox on 8 blocks per vector, the words in element order, and
// stores that round to float16 / bfloat16 to nearest even.
//
// Include only in a translation unit compiled for AVX-512 (AVX512F, DQ, BW, VL), after
// nspl_math.h (see fill_cpu_avx512.cpp).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "../nspl_math.h"
#include "lane_ops.h"

namespace nspl {
NSPL_ISA_BEGIN

NSPL_VECTOR_TYPE(F32x16, __m512, float, _mm512_set1_ps)
NSPL_VECTOR_TYPE(I32x16, __m512i, int32_t, _mm512_set1_epi32)
struct M16 {
  __mmask16 m;
};
NSPL_VECTOR_TYPE(F64x8, __m512d, double, _mm512_set1_pd)
NSPL_VECTOR_TYPE(I64x8, __m512i, int64_t, _mm512_set1_epi64)
struct M8 {
  __mmask8 m;
};

NSPL_LANE_TRAITS(F32x16, I32x16, M16, float)
NSPL_LANE_TRAITS(F64x8, I64x8, M8, double)

NSPL_VECTOR_LANE_OPS(F32x16, I32x16, 512, ps, 32)
NSPL_VECTOR_LANE_OPS(F64x8, I64x8, 512, pd, 64)

// float lanes
NSPL_LANE M16 lt(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
NSPL_LANE F32x16 select(M16 m, F32x16 a, F32x16 b) { return _mm512_mask_blend_ps(m.m, b.v, a.v); }

// int32 lanes
template <int k>
NSPL_LANE I32x16 shift_right_arithmetic(I32x16 a) {
  return _mm512_srai_epi32(a.v, k);
}
NSPL_LANE F32x16 convert_signed(I32x16 a) { return _mm512_cvtepi32_ps(a.v); }
NSPL_LANE M16 is_negative(I32x16 a) { return {_mm512_movepi32_mask(a.v)}; }
NSPL_LANE F32x16 convert_small(I32x16 a) { return _mm512_cvtepi32_ps(a.v); }

// double lanes
NSPL_LANE M8 lt(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ)}; }
NSPL_LANE F64x8 select(M8 m, F64x8 a, F64x8 b) { return _mm512_mask_blend_pd(m.m, b.v, a.v); }

// int64 lanes
template <int k>
NSPL_LANE I64x8 shift_right_arithmetic(I64x8 a) {
  return _mm512_srai_epi64(a.v, k);
}
NSPL_LANE F64x8 convert_signed(I64x8 a) { return _mm512_cvtepi64_pd(a.v); }
NSPL_LANE M8 is_negative(I64x8 a) { return {_mm512_movepi64_mask(a.v)}; }
NSPL_LANE F64x8 convert_small(I64x8 a) { return _mm512_cvtepi64_pd(a.v); }

// ---------------------------------------------------------------------------------
// For the CPU kernel (fill_simd.h)
// ---------------------------------------------------------------------------------
struct Avx512 {
  using Float = F32x16;
  using Int = I32x16;
  using Double = F64x8;
  using Long = I64x8;
  // Philox runs on 64-bit lanes, one block per lane, each 32-bit word of the state in the
  // low half of a lane (fill_simd.h explains why the high halves may hold anything).
  using Word = I64x8;
  static constexpr int kBlocksPerVector = 8;

  // Lanes first, first + 1, ..., first + 7.
  static NSPL_LANE I64x8 consecutive(uint64_t first) {
    return _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(first)), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // The full 64-bit products of the low 32 bits of each lane.
  static NSPL_LANE I64x8 mul_u32(I64x8 a, I64x8 b) { return _mm512_mul_epu32(a.v, b.v); }
  // The high 32 bits of each lane brought down to the low half (the high half then holds
  // them again, which Philox ignores): a shuffle, which issues on another port than the
  // multiplies and shifts of the rounds.
  static NSPL_LANE I64x8 high_words(I64x8 a) { return _mm512_shuffle_epi32(a.v, static_cast<_MM_PERM_ENUM>(0xF5)); }
  static NSPL_LANE I64x8 xor3(I64x8 a, I64x8 b, I64x8 c) { return _mm512_ternarylogic_epi64(a.v, b.v, c.v, 0x96); }

  // Words w0..w3 of blocks j = 0..7 (low halves of lane j of x0..x3) as the 32 float
  // elements of those blocks in order: blocks 0-3 in `first`, 4-7 in `second`.
  static NSPL_LANE void element_words(I64x8 x0, I64x8 x1, I64x8 x2, I64x8 x3, I32x16& first, I32x16& second) {
    const __m512i low = _mm512_set1_epi64(0xffffffffll);
    // Lane j: words (w0, w1) and (w2, w3) of block j, each pair one 64-bit lane.
    const __m512i w01 = _mm512_ternarylogic_epi64(x0.v, low, _mm512_slli_epi64(x1.v, 32), 0xEA);  // (a & b) | c
    const __m512i w23 = _mm512_ternarylogic_epi64(x2.v, low, _mm512_slli_epi64(x3.v, 32), 0xEA);
    first = _mm512_permutex2var_epi64(w01, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), w23);
    second = _mm512_permutex2var_epi64(w01, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), w23);
  }
  // The same blocks as 16 float64 elements, each 64 bits wa·2^32 + wb of words (w0, w1)
  // or (w2, w3): blocks 0-3 in `first`, 4-7 in `second`.
  static NSPL_LANE void element_bits(I64x8 x0, I64x8 x1, I64x8 x2, I64x8 x3, I64x8& first, I64x8& second) {
    const __m512i low = _mm512_set1_epi64(0xffffffffll);
    const __m512i lane0 = _mm512_ternarylogic_epi64(x1.v, low, _mm512_slli_epi64(x0.v, 32), 0xEA);
    const __m512i lane1 = _mm512_ternarylogic_epi64(x3.v, low, _mm512_slli_epi64(x2.v, 32), 0xEA);
    first = _mm512_permutex2var_epi64(lane0, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), lane1);
    second = _mm512_permutex2var_epi64(lane0, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), lane1);
  }

  static NSPL_LANE void store(float* out, F32x16 v) { _mm512_storeu_ps(out, v.v); }
  static NSPL_LANE void store(double* out, F64x8 v) { _mm512_storeu_pd(out, v.v); }
  static NSPL_LANE void store_half(void* out, F32x16 v) {
    _mm256_storeu_si256(static_cast<__m256i*>(out), _mm512_cvtps_ph(v.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // Round to nearest even on the bits (the values are finite): add 0x7fff plus the lowest
  // kept bit, keep the high halves.
  static NSPL_LANE void store_bfloat16(void* out, F32x16 v) {
    const __m512i bits = _mm512_castps_si512(v.v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    _mm256_storeu_si256(static_cast<__m256i*>(out), _mm512_cvtepi32_epi16(rounded));
  }
};

NSPL_ISA_END
}  // namespace nspl
