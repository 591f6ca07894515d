// Pack<V, N>: N vectors of lane type V used as one lane type, every operation applied to
// the N vectors side by side. The sampler templates of nspl_math.h then run N independent
// dependency chains interleaved instruction by instruction, so the core overlaps the
// latencies of their long exp / log chains.
//
// Include after nspl_math.h and a lanes_*.h, in a translation unit compiled for that
// instruction set (see fill_simd.h).
#pragma once

#include <type_traits>

#include "../nspl_math.h"

#define NSPL_PACK_OP inline __attribute__((always_inline))

namespace nspl {
NSPL_ISA_BEGIN

template <typename V, int N>
struct Pack {
  V v[N];
  Pack() = default;
  template <typename S, typename = std::enable_if_t<std::is_arithmetic_v<S>>>
  NSPL_PACK_OP Pack(S x) {
    for (int i = 0; i < N; ++i) v[i] = V(x);
  }
};

template <typename V, int N>
struct LaneOf<Pack<V, N>> {
  using Int = Pack<typename LaneOf<V>::Int, N>;
  using Mask = Pack<typename LaneOf<V>::Mask, N>;
  using Scalar = typename LaneOf<V>::Scalar;
};
template <typename I, int N>
struct FloatOf<Pack<I, N>> {
  using type = Pack<typename FloatOf<I>::type, N>;
};

#define NSPL_PACK_UNARY(name)                                       \
  template <typename V, int N>                                      \
  NSPL_PACK_OP auto name(const Pack<V, N>& a) {                     \
    Pack<decltype(name(a.v[0])), N> r;                              \
    for (int i = 0; i < N; ++i) r.v[i] = name(a.v[i]);              \
    return r;                                                       \
  }
#define NSPL_PACK_BINARY(name)                                      \
  template <typename V, int N>                                      \
  NSPL_PACK_OP auto name(const Pack<V, N>& a, const Pack<V, N>& b) { \
    Pack<decltype(name(a.v[0], b.v[0])), N> r;                      \
    for (int i = 0; i < N; ++i) r.v[i] = name(a.v[i], b.v[i]);      \
    return r;                                                       \
  }
#define NSPL_PACK_SHIFT(name)                                       \
  template <int k, typename V, int N>                               \
  NSPL_PACK_OP Pack<V, N> name(const Pack<V, N>& a) {               \
    Pack<V, N> r;                                                   \
    for (int i = 0; i < N; ++i) r.v[i] = name<k>(a.v[i]);           \
    return r;                                                       \
  }

NSPL_PACK_UNARY(sqrt_of)
NSPL_PACK_UNARY(as_int)
NSPL_PACK_UNARY(as_float)
NSPL_PACK_UNARY(convert_signed)
NSPL_PACK_UNARY(is_negative)
NSPL_PACK_UNARY(convert_small)
NSPL_PACK_BINARY(operator+)
NSPL_PACK_BINARY(operator-)
NSPL_PACK_BINARY(operator*)
NSPL_PACK_BINARY(operator/)
NSPL_PACK_BINARY(min_of)
NSPL_PACK_BINARY(max_of)
NSPL_PACK_BINARY(lt)
NSPL_PACK_BINARY(add)
NSPL_PACK_BINARY(sub)
NSPL_PACK_BINARY(bit_and)
NSPL_PACK_BINARY(bit_or)
NSPL_PACK_BINARY(bit_xor)
NSPL_PACK_SHIFT(shift_left)
NSPL_PACK_SHIFT(shift_right_logical)
NSPL_PACK_SHIFT(shift_right_arithmetic)

template <typename V, int N>
NSPL_PACK_OP Pack<V, N> fmadd(const Pack<V, N>& a, const Pack<V, N>& b, const Pack<V, N>& c) {
  Pack<V, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = fmadd(a.v[i], b.v[i], c.v[i]);
  return r;
}

template <typename M, typename V, int N>
NSPL_PACK_OP Pack<V, N> select(const Pack<M, N>& m, const Pack<V, N>& a, const Pack<V, N>& b) {
  Pack<V, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = select(m.v[i], a.v[i], b.v[i]);
  return r;
}

#undef NSPL_PACK_UNARY
#undef NSPL_PACK_BINARY
#undef NSPL_PACK_SHIFT

NSPL_ISA_END
}  // namespace nspl
