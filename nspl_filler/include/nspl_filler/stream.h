// Where a fill takes its random numbers (docs/spec.md §4): Philox4x32-10 keyed by a 64-bit seed, one
// 128-bit block per counter value. A fill with seed s and offset o gives the element of
// logical index i the words of block o + i / 4 (float64: o + i / 2), and consumes
// blocks_for(numel, dtype) blocks: the next fill of the same stream starts there.
#pragma once

#include <ATen/core/Generator.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <utility>

namespace nspl {

// Elements per Philox block: a float64 element takes two 32-bit words, the others one.
inline int64_t elements_per_block(c10::ScalarType dtype) { return dtype == c10::kDouble ? 2 : 4; }

// Blocks a fill of `numel` elements of `dtype` consumes: ceil(numel / elements_per_block).
inline uint64_t blocks_for(int64_t numel, c10::ScalarType dtype) {
  const int64_t per = elements_per_block(dtype);
  return static_cast<uint64_t>((numel + per - 1) / per);
}

// The stream of one fill: an explicit (seed, offset), the same values on every device; or a
// torch generator (its key and offset, so torch.manual_seed governs the values, which then
// differ between devices as torch's own do); or, with neither, the default generator of the
// tensor's device.
struct Stream {
  std::optional<int64_t> seed;  // the key; a uint64 seed is passed as its two's complement
  int64_t offset = 0;           // first block, with a seed; in [0, 2^63 - 1]
  std::optional<at::Generator> generator;

  // Key `seed`, from block `offset`.
  static Stream Seeded(int64_t seed, int64_t offset = 0) { return Stream{seed, offset, std::nullopt}; }
  // The stream taken from `generator`: a CPU generator gives a 64-bit key (offset 0), a CUDA
  // one reserves the fill's blocks of its own Philox stream.
  static Stream FromGenerator(at::Generator generator) { return Stream{std::nullopt, 0, std::move(generator)}; }
};

}  // namespace nspl
