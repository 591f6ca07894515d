// What SIMD lane types have in common, written once for lanes_avx2.h and lanes_avx512.h:
// the wrapper types, their traits, and the operations that map one to one onto intrinsics
// named alike in every vector width:
//
//   NSPL_VECTOR_LANE_OPS(F, I, bits, ps|pd, 32|64)
//
// defines, for the float lane type F (vectors of `bits` bits, element suffix ps or pd) and
// its integer lane type I (epi32 or epi64 elements): + - * /, fmadd, sqrt_of, min_of,
// max_of, as_int, as_float, add, sub, bit_and, bit_or, bit_xor, shift_left and shift_right_logical,
// with the meanings nspl_math.h lists. vminp* / vmaxp* return their second operand unless
// the comparison holds: exactly a < b ? a : b and a > b ? a : b, NaN included.
// Comparisons, select, arithmetic shifts and conversions differ between instruction sets
// and stay in lanes_*.h.
#pragma once

#define NSPL_LANE inline __attribute__((always_inline))

// A vector lane type `Name` around the intrinsic type `Raw`, built from a `Raw` or by
// broadcasting a `Scalar`.
#define NSPL_VECTOR_TYPE(Name, Raw, Scalar, broadcast) \
  struct Name {                                        \
    Raw v;                                             \
    Name() = default;                                  \
    NSPL_LANE Name(Raw x) : v(x) {}                    \
    NSPL_LANE Name(Scalar x) : v(broadcast(x)) {}      \
  };

// The LaneOf / FloatOf entries (nspl_math.h) of float lane F, integer lane I, mask M.
#define NSPL_LANE_TRAITS(F, I, M, ScalarT) \
  template <>                              \
  struct LaneOf<F> {                       \
    using Int = I;                         \
    using Mask = M;                        \
    using Scalar = ScalarT;                \
  };                                       \
  template <>                              \
  struct FloatOf<I> {                      \
    using type = F;                        \
  };

#define NSPL_VECTOR_LANE_OPS(F, I, bits, ps, ebits)                                                    \
  NSPL_LANE F operator+(F a, F b) { return _mm##bits##_add_##ps(a.v, b.v); }                          \
  NSPL_LANE F operator-(F a, F b) { return _mm##bits##_sub_##ps(a.v, b.v); }                          \
  NSPL_LANE F operator*(F a, F b) { return _mm##bits##_mul_##ps(a.v, b.v); }                          \
  NSPL_LANE F operator/(F a, F b) { return _mm##bits##_div_##ps(a.v, b.v); }                          \
  NSPL_LANE F fmadd(F a, F b, F c) { return _mm##bits##_fmadd_##ps(a.v, b.v, c.v); }                  \
  NSPL_LANE F sqrt_of(F a) { return _mm##bits##_sqrt_##ps(a.v); }                                     \
  NSPL_LANE F min_of(F a, F b) { return _mm##bits##_min_##ps(a.v, b.v); }                             \
  NSPL_LANE F max_of(F a, F b) { return _mm##bits##_max_##ps(a.v, b.v); }                            \
  NSPL_LANE I as_int(F a) { return _mm##bits##_cast##ps##_si##bits(a.v); }                           \
  NSPL_LANE F as_float(I a) { return _mm##bits##_castsi##bits##_##ps(a.v); }                         \
  NSPL_LANE I add(I a, I b) { return _mm##bits##_add_epi##ebits(a.v, b.v); }                         \
  NSPL_LANE I sub(I a, I b) { return _mm##bits##_sub_epi##ebits(a.v, b.v); }                         \
  NSPL_LANE I bit_and(I a, I b) { return _mm##bits##_and_si##bits(a.v, b.v); }                       \
  NSPL_LANE I bit_or(I a, I b) { return _mm##bits##_or_si##bits(a.v, b.v); }                         \
  NSPL_LANE I bit_xor(I a, I b) { return _mm##bits##_xor_si##bits(a.v, b.v); }                       \
  template <int k>                                                                                     \
  NSPL_LANE I shift_left(I a) {                                                                        \
    return _mm##bits##_slli_epi##ebits(a.v, k);                                                        \
  }                                                                                                    \
  template <int k>                                                                                     \
  NSPL_LANE I shift_right_logical(I a) {                                                               \
    return _mm##bits##_srli_epi##ebits(a.v, k);                                                        \
  }
