// The SIMD kernel of the CPU backend, generic over an instruction set's lane types (Avx2
// of lanes_avx2.h, Avx512 of lanes_avx512.h): Philox on 16 blocks per batch, the words
// put in element order, the sampler of nspl_math.h on every element of the batch at once
// (a Pack of vectors), and vector stores. It gives the values of the element-by-element
// kernel (fill_run.h) bit for bit: the samplers are the same templates, and only the
// layout of the Philox words differs.
//
// Include in a SIMD translation unit after lanes_*.h and lane_pack.h, with c10's Half and
// BFloat16 included before the instruction-set pragma (see fill_cpu_avx2.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../nspl_math.h"
#include "fill_run.h"
#include "lane_pack.h"

namespace nspl {
NSPL_ISA_BEGIN

// A batch is 16 Philox blocks: 64 float32 or 32 float64 elements.
constexpr int kBatchBlocks = 16;
// Shorter runs are computed element by element: a batch costs the same however few of
// its elements a run takes.
constexpr int64_t kMinVectorRun = 8;

// The round keys of Philox4x32-10 for `key`, broadcast: keys[round][word].
template <class Isa>
struct PhiloxKeys {
  typename Isa::Word k[10][2];
  explicit inline __attribute__((always_inline)) PhiloxKeys(uint64_t key) {
    uint32_t k0 = static_cast<uint32_t>(key);
    uint32_t k1 = static_cast<uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
      k[round][0] = typename Isa::Word(static_cast<int64_t>(k0));
      k[round][1] = typename Isa::Word(static_cast<int64_t>(k1));
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
  }
};

// Philox4x32-10 of blocks first_block, first_block + 1, ... in kGroups vectors of 64-bit
// lanes, one block per lane, x[word][group]. Each 32-bit word of the state lives in the
// low half of its lane; what the high halves hold does not matter: the multiplies read
// only the low halves, Isa::high_words brings the products' high words down into them, and
// only low halves are kept at the end (Isa::element_words / element_bits).
template <class Isa, int kGroups>
inline __attribute__((always_inline)) void philox_batch(uint64_t first_block, const PhiloxKeys<Isa>& keys,
                                                       typename Isa::Word (&x)[4][kGroups]) {
  using W = typename Isa::Word;
  const W m0(static_cast<int64_t>(kPhiloxM0));
  const W m1(static_cast<int64_t>(kPhiloxM1));
  // Round 1, with counter words 2 and 3 zero: the products of word 2 vanish.
  for (int g = 0; g < kGroups; ++g) {
    const W blocks = Isa::consecutive(first_block + static_cast<uint64_t>(g * Isa::kBlocksPerVector));
    const W p0 = Isa::mul_u32(blocks, m0);
    x[0][g] = bit_xor(Isa::high_words(blocks), keys.k[0][0]);
    x[1][g] = W(int64_t(0));
    x[2][g] = bit_xor(Isa::high_words(p0), keys.k[0][1]);
    x[3][g] = p0;
  }
  for (int round = 1; round < 10; ++round) {
    for (int g = 0; g < kGroups; ++g) {
      const W p0 = Isa::mul_u32(x[0][g], m0);
      const W p1 = Isa::mul_u32(x[2][g], m1);
      x[0][g] = Isa::xor3(Isa::high_words(p1), x[1][g], keys.k[round][0]);
      x[1][g] = p1;
      x[2][g] = Isa::xor3(Isa::high_words(p0), x[3][g], keys.k[round][1]);
      x[3][g] = p0;
    }
  }
}

template <class Isa, typename scalar_t, typename V>
inline __attribute__((always_inline)) void store_vector(scalar_t* out, const V& v) {
  if constexpr (std::is_same_v<scalar_t, c10::Half>) {
    Isa::store_half(out, v);
  } else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    Isa::store_bfloat16(out, v);
  } else {
    Isa::store(out, v);
  }
}

// Fills `count` elements whose global indices are first, first + 1, ... at out,
// out + stride, ... A whole contiguous batch is stored in place; a partial batch (the head
// or tail of a run) or a strided run goes through a buffer.
template <class Isa, typename scalar_t, typename Sampler>
void fill_run_vector(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Sampler& sampler,
                     const StreamPosition& pos) {
  if (count < kMinVectorRun) {
    fill_run_scalar(out, stride, first, count, sampler, pos);
    return;
  }
  using acc_t = typename Sampler::Acc;
  constexpr bool kDouble = std::is_same_v<acc_t, double>;
  constexpr int kPerBlock = Lanes<acc_t>::kPerBlock;
  constexpr int kGroups = kBatchBlocks / Isa::kBlocksPerVector;
  constexpr int kVectors = 2 * kGroups;  // element vectors per batch
  constexpr int kBatch = kBatchBlocks * kPerBlock;
  constexpr int kPerVector = kBatch / kVectors;
  using Bits = std::conditional_t<kDouble, typename Isa::Long, typename Isa::Int>;

  const PhiloxKeys<Isa> keys(pos.key);
  uint64_t block = pos.offset + first / kPerBlock;
  int skip = static_cast<int>(first % kPerBlock);
  while (count > 0) {
    const int take = static_cast<int>(std::min<int64_t>(kBatch - skip, count));
    typename Isa::Word x[4][kGroups];
    philox_batch<Isa, kGroups>(block, keys, x);
    Pack<Bits, kVectors> bits;
    for (int g = 0; g < kGroups; ++g) {
      if constexpr (kDouble) {
        Isa::element_bits(x[0][g], x[1][g], x[2][g], x[3][g], bits.v[2 * g], bits.v[2 * g + 1]);
      } else {
        Isa::element_words(x[0][g], x[1][g], x[2][g], x[3][g], bits.v[2 * g], bits.v[2 * g + 1]);
      }
    }
    const auto values = sampler.draw(bits);
    alignas(64) scalar_t buffer[kBatch];
    const bool direct = stride == 1 && take == kBatch;
    scalar_t* const dst = direct ? out : buffer;
    for (int i = 0; i < kVectors; ++i) store_vector<Isa>(dst + i * kPerVector, values.v[i]);
    if (!direct) {
      for (int j = 0; j < take; ++j) out[j * stride] = buffer[skip + j];
    }
    out += take * stride;
    count -= take;
    block += kBatchBlocks;
    skip = 0;
  }
}

// A MathFunction of nspl_math.h over n values, vector by vector (tests).
template <class Isa, typename T>
void math_vector(MathFunction function, const T* in, T* out, int64_t n) {
  using V = std::conditional_t<std::is_same_v<T, double>, typename Isa::Double, typename Isa::Float>;
  constexpr int kLanes = static_cast<int>(sizeof(V) / sizeof(T));
  for (int64_t i = 0; i < n; i += kLanes) {
    const int k = static_cast<int>(std::min<int64_t>(kLanes, n - i));
    alignas(64) T buffer[kLanes] = {};
    for (int j = 0; j < k; ++j) buffer[j] = in[i + j];
    V x;
    __builtin_memcpy(&x, buffer, sizeof x);
    x = math_function(function, x);
    __builtin_memcpy(buffer, &x, sizeof x);
    for (int j = 0; j < k; ++j) out[i + j] = buffer[j];
  }
}

NSPL_ISA_END
}  // namespace nspl
