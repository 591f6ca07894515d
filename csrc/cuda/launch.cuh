// What the CUDA kernels of nspl_ (fill_cuda.cu) and of the bulk op nspl_many_
// (fill_many_cuda.cu) share: where a launch's stream starts, the reservation of torch's
// Philox counters, grid sizing, the store of one unit, and the per-tensor launch that the
// bulk op uses for the tensors its table does not take.
//
// Both ops work in three phases: plan every launch (every check that can fail happens
// here), reserve the stream (the only step that changes a generator), launch. So no error
// path runs after a generator was advanced (docs/spec.md §6).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraphsUtils.cuh>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAMacros.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>

#include "../fill.h"
#include "index_map.h"

namespace nspl {

constexpr int kThreads = 256;

// Where a launch's stream starts: an explicit (key, first block), or torch's generator
// state. Under CUDA-graph capture torch's seed and offset live in device memory and are
// only known at replay, so they are unpacked in the kernel, never on the host; a bulk call
// places each tensor `first_block` blocks after the reserved position.
struct LaunchStream {
  at::PhiloxCudaState torch_state;
  StreamPosition explicit_position;
  // The key's Philox round keys, worked out on the host wherever the host knows the key
  // (all but CUDA-graph capture): the kernels read them from their arguments instead of
  // every thread recomputing them (see round_keys below).
  PhiloxRoundKeys host_round_keys{};
  uint64_t first_block = 0;
  bool from_torch = false;
  bool key_on_device = false;

  static LaunchStream from_seed(uint64_t key, uint64_t offset) {
    LaunchStream s;
    s.explicit_position = {key, offset};
    s.host_round_keys = philox_round_keys(key);
    return s;
  }
  static LaunchStream from_torch_state(const at::PhiloxCudaState& state) {
    LaunchStream s;
    s.torch_state = state;
    s.from_torch = true;
    s.key_on_device = state.captured_;
    if (!state.captured_) s.host_round_keys = philox_round_keys(state.seed_.val);
    return s;
  }
  LaunchStream shifted(uint64_t blocks) const {
    LaunchStream s = *this;
    s.first_block += blocks;
    return s;
  }

  __device__ __forceinline__ StreamPosition position() const {
    if (!from_torch) return {explicit_position.key, explicit_position.offset + first_block};
    const auto seed_and_offset = at::cuda::philox::unpack(torch_state);
    return {std::get<0>(seed_and_offset), std::get<1>(seed_and_offset) / 4 + first_block};
  }

  // The round keys of `pos.key`: computed in the kernel when the key is only known at
  // replay (kKeyOnDevice, a separate instantiation), else read from the launch's
  // arguments, which the compiler keeps as operands rather than per-thread work.
  template <bool kKeyOnDevice>
  __device__ __forceinline__ PhiloxRoundKeys round_keys(const StreamPosition& pos) const {
    if constexpr (kKeyOnDevice) {
      return philox_round_keys(pos.key);
    } else {
      return host_round_keys;
    }
  }
};

// Runs `launch` with the kernel instantiation for where `stream`'s key is known:
// launch(std::bool_constant<key on device>).
template <typename Launch>
void with_key_source(const LaunchStream& stream, Launch&& launch) {
  if (stream.key_on_device) {
    launch(std::true_type{});
  } else {
    launch(std::false_type{});
  }
}

// Note [Reserving torch's Philox counters]
// torch's CUDA generator keeps its offset `philox_offset_per_thread` as a uint64_t (and,
// under graph capture, the offset within the graph as the PhiloxCudaState's
// `offset_intragraph_`: a uint64_t in torch 2.10 and later, so in the 2.11 of the GPU
// machines and the 2.14 of CI; a uint32_t before). A kernel that reserves `increment`
// values at offset O gives thread t the curand Philox stream of key = seed,
// counter = (O/4 + k, t), k = 0 .. increment/4 - 1 (block number in counter words 0-1,
// subsequence t in words 2-3); torch keeps O a multiple of 4.
// A generator-driven fill here uses key = seed, first block O/4, and blocks
// O/4 + g / per for global indices g, all with counter words 2-3 = 0: exactly the counters
// of subsequence 0 that a torch kernel reserving 4 · blocks would own. Reserving that
// increment makes every later torch draw start at block O/4 + blocks or beyond, so no
// counter is used twice. The reservation depends on the global shape alone, so every shard
// of a sharded tensor advances its generator by the same amount.
// What would wrap is refused before anything is reserved: an increment past 2^64, an
// offset that the increment would carry past 2^64, and under capture an increment past
// what this torch's intra-graph offset can hold. torch checks the sum of the intra-graph
// offset and the increment itself (it cannot be read beforehand); its error is passed on
// with what was asked.
inline at::PhiloxCudaState reserve_torch_stream(const at::Tensor& self, const std::optional<at::Generator>& generator,
                                                uint64_t blocks) {
  using IntragraphOffset = decltype(at::PhiloxCudaState{}.offset_intragraph_);
  constexpr uint64_t kMaxIncrement = std::numeric_limits<uint64_t>::max() / 4 * 4;
  TORCH_CHECK_VALUE(blocks <= kMaxIncrement / 4, "nspl_filler: a fill of ", blocks,
                    " Philox blocks is more than torch's CUDA generator can reserve (2^62 blocks)");
  const uint64_t increment = 4 * blocks;
  const bool capturing = at::cuda::currentStreamCaptureStatus() != at::cuda::CaptureStatus::None;
  TORCH_CHECK(!capturing || increment <= std::numeric_limits<IntragraphOffset>::max() / 4 * 4,
              "nspl_filler: under CUDA-graph capture this torch keeps the generator's offset within a graph in ",
              8 * sizeof(IntragraphOffset), " bits, and this fill would reserve ", increment,
              " of its values; pass seed= or an nspl_filler.Generator, or fill outside the capture");
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      generator, at::cuda::detail::getDefaultCUDAGenerator(self.device().index()));
  std::lock_guard<std::mutex> lock(gen->mutex_);
  if (!capturing) {
    const uint64_t offset = gen->philox_offset_per_thread();
    TORCH_CHECK(offset <= std::numeric_limits<uint64_t>::max() - increment, "nspl_filler: torch's CUDA generator is at offset ",
                offset, "; reserving ", increment, " more values for this fill would wrap past 2^64");
  }
  try {
    return gen->philox_cuda_state(increment);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "nspl_filler: torch's CUDA generator refused to reserve ", increment,
                " values for this fill", capturing ? " under CUDA-graph capture" : "", ": ", e.what_without_backtrace());
  }
}

// A CPU tensor reaches the CUDA kernels when a CUDA generator makes the dispatcher choose
// them.
inline void check_on_cuda(const at::Tensor& self) {
  TORCH_CHECK(self.is_cuda(), "nspl_filler: a CUDA generator cannot fill a tensor on ", self.device());
}

// Thread blocks of `kernel` (kThreads threads each) resident on one multiprocessor of the
// current device, from the occupancy API (registers decide it, and they change with the
// sampler and the compiler), asked once per kernel and device.
template <auto kernel>
int64_t resident_blocks() {
  static std::atomic<int> per_sm[C10_COMPILE_TIME_MAX_GPUS] = {};
  const c10::DeviceIndex device = c10::cuda::current_device();
  int blocks = per_sm[device].load(std::memory_order_relaxed);
  if (blocks == 0) {
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, 0));
    blocks = std::max(blocks, 1);
    per_sm[device].store(blocks, std::memory_order_relaxed);
  }
  return static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * blocks;
}

// One thread per unit up to what the device holds resident at once; past that the
// kernels' grid-stride loops take over.
template <auto kernel>
unsigned int grid_size(uint64_t units) {
  const uint64_t needed = (units + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<uint64_t>(1, std::min<uint64_t>(resident_blocks<kernel>(), needed)));
}

// One Philox block's outputs, stored with one instruction: 16 bytes for float32 and
// float64, 8 bytes for float16 and bfloat16.
template <typename scalar_t, int kCount>
struct alignas(sizeof(scalar_t) * kCount) Pack {
  scalar_t value[kCount];
};

// Stores a whole unit with one instruction: 32-bit words of the lanes' bits, written by
// one st.global.v4 (16 bytes) or .v2 (8 bytes). Written in PTX because the compiler, seeing
// through the bit casts, may split a vector store of the lanes into one store per lane.
template <typename scalar_t, int kCount>
__device__ __forceinline__ void store_vector(scalar_t* dst, const Pack<scalar_t, kCount>& pack) {
  using Bits = std::conditional_t<sizeof(scalar_t) == 8, uint64_t, std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint16_t>>;
  constexpr int kWords = static_cast<int>(sizeof(pack) / 4);
  uint32_t word[kWords] = {};
#pragma unroll
  for (int lane = 0; lane < kCount; ++lane) {
    Bits bits;
    memcpy(&bits, &pack.value[lane], sizeof bits);
    if constexpr (sizeof(Bits) == 8) {
      word[2 * lane] = static_cast<uint32_t>(bits);
      word[2 * lane + 1] = static_cast<uint32_t>(bits >> 32);
    } else if constexpr (sizeof(Bits) == 4) {
      word[lane] = bits;
    } else {
      word[lane / 2] |= static_cast<uint32_t>(bits) << (16 * (lane % 2));
    }
  }
  const size_t address = __cvta_generic_to_global(dst);
  if constexpr (kWords == 4) {
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(address), "r"(word[0]), "r"(word[1]), "r"(word[2]),
                 "r"(word[3])
                 : "memory");
  } else {
    static_assert(kWords == 2, "a unit is 8 or 16 bytes");
    asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(address), "r"(word[0]), "r"(word[1]) : "memory");
  }
}

// Samples the unit's lanes from its block and stores them: with one vector store when the
// unit is whole, its lanes adjacent and its first element on a vector boundary; otherwise
// lane by lane. Every lane is sampled before the store is chosen, so the sampling code is
// one and the vector store is not merged with the lane stores into narrower ones. Lanes are
// compile-time constants, so the block's words stay in registers.
// The values of a Philox block's lanes, in the output type.
template <typename scalar_t, typename acc_t, typename Sampler>
__device__ __forceinline__ Pack<scalar_t, Lanes<acc_t>::kPerBlock> sample_block(const PhiloxWords& words,
                                                                               const Sampler& sampler) {
  Pack<scalar_t, Lanes<acc_t>::kPerBlock> pack;
#pragma unroll
  for (int lane = 0; lane < Lanes<acc_t>::kPerBlock; ++lane) {
    pack.value[lane] = static_cast<scalar_t>(sampler(words, lane));
  }
  return pack;
}

template <typename scalar_t, typename acc_t, typename Sampler>
__device__ __forceinline__ void store_unit(scalar_t* data, const cuda_map::Unit& unit, const PhiloxWords& words,
                                           const Sampler& sampler) {
  constexpr int per = Lanes<acc_t>::kPerBlock;
  using Vector = Pack<scalar_t, per>;
  const Vector pack = sample_block<scalar_t, acc_t>(words, sampler);
  if (unit.lo == 0 && unit.hi == per && unit.step == 1 &&
      reinterpret_cast<uintptr_t>(data + unit.first) % sizeof(Vector) == 0) {
    store_vector(data + unit.first, pack);
    return;
  }
#pragma unroll
  for (int lane = 0; lane < per; ++lane) {
    if (lane >= unit.lo && lane < unit.hi) data[unit.first + lane * unit.step] = pack.value[lane];
  }
}

// A planned launch, run once the stream is known.
using Launch = std::function<void(const LaunchStream&)>;

// Plans the fill of one tensor (any strides; `view` places it in its global tensor) with
// the contiguous or the strided kernel: every check that can fail is made here. Defined in
// fill_cuda.cu; the bulk op sends the tensors its table does not take through it.
Launch plan_fill(const at::Tensor& self, const SampleSpec& spec, const ShardView& view);

}  // namespace nspl
