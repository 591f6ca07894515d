// The CPU kernel for one run of elements, element by element: `count` elements whose
// global indices are first, first + 1, ... at out, out + stride, ... Every CPU path
// (fill_cpu.cpp's portable one, and the short runs of the SIMD kernels, compiled there
// with their instruction sets) uses it, with the samplers of nspl_math.h.
#pragma once

#include <cstdint>

#include "../nspl_math.h"

namespace nspl {
NSPL_ISA_BEGIN

template <typename scalar_t, typename Sampler>
void fill_run_scalar(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Sampler& sampler,
                     const StreamPosition& pos) {
  constexpr int per_block = Lanes<typename Sampler::Acc>::kPerBlock;
  const PhiloxRoundKeys keys = philox_round_keys(pos.key);
  uint64_t index = first;
  while (count > 0) {
    const PhiloxWords words = philox_block(keys, pos.offset + index / per_block);
    for (int lane = static_cast<int>(index % per_block); lane < per_block && count > 0; ++lane) {
      *out = static_cast<scalar_t>(sampler(words, lane));
      out += stride;
      ++index;
      --count;
    }
  }
}

NSPL_ISA_END
}  // namespace nspl
