// CUDA backend. Like the CPU kernel, every element is computed from its logical (global)
// index alone, so the values do not depend on the launch configuration or the memory
// layout: with an explicit seed they are the CPU's, up to the last-ulp differences
// between the device's and the host's exp/log/log1p/erf (SPEC §4; tests/test_cuda.py
// gives the bounds).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../fill.h"
#include "../ops_impl.h"

namespace nspl {
namespace {

constexpr int kThreads = 256;
// Dims of the strided path after size-1 dims are dropped and mergeable ones merged;
// TensorIterator's limit, which no real tensor reaches.
constexpr int kMaxDims = 25;

// Note [Reserving torch's Philox counters]
// torch's CUDA generator keeps `philox_offset_per_thread` in 32-bit values: a kernel
// that reserves `increment` values at offset O gives thread t the curand Philox stream of
// key = seed, counter = (O/4 + k, t), k = 0 .. increment/4 - 1 (block number in counter
// words 0-1, subsequence t in words 2-3). torch keeps O a multiple of 4 and requires
// increments to be multiples of 4.
// A generator-driven fill here uses key = seed, first block = O/4, and blocks
// O/4 + g/per for global indices g < global_numel, all with counter words 2-3 = 0:
// exactly the counters of subsequence 0 that a torch kernel reserving
// 4 · blocks_for(global_numel) would own. Reserving that increment therefore makes
// every later torch draw start at block O/4 + blocks or beyond, so no counter is ever
// used twice. The reservation depends on the global shape alone, so every shard of a
// sharded tensor advances its generator by the same amount.
uint64_t torch_offset_increment(uint64_t blocks) { return 4 * blocks; }

// Where a launch's stream starts: an explicit (key, first block), or torch's generator
// state. Under CUDA-graph capture torch's seed and offset live in device memory and are
// only known at replay, so they are unpacked in the kernel, never on the host.
struct LaunchStream {
  at::PhiloxCudaState torch_state;
  StreamPosition explicit_position;
  bool from_torch = false;

  __device__ __forceinline__ StreamPosition position() const {
    if (!from_torch) return explicit_position;
    const auto seed_and_offset = at::cuda::philox::unpack(torch_state);
    return {std::get<0>(seed_and_offset), std::get<1>(seed_and_offset) / 4};
  }
};

// One Philox block's outputs, stored with one instruction: 16 bytes for float32 and
// float64, 8 bytes for float16 and bfloat16.
template <typename scalar_t, int kCount>
struct alignas(sizeof(scalar_t) * kCount) Pack {
  scalar_t value[kCount];
};

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Contiguous tensor whose local index i has global index base + i. Each thread takes
// whole Philox blocks; a block whose elements all lie in the tensor is written with one
// vector store when `vector_aligned` (the element of every block-aligned global index
// sits on a vector boundary), otherwise, and for the partial blocks at the head and tail,
// element by element.
template <typename scalar_t, typename acc_t, typename Sampler>
__global__ void __launch_bounds__(kThreads)
    fill_contiguous_kernel(scalar_t* data, int64_t numel, int64_t base, bool vector_aligned,
                           Sampler sampler, LaunchStream stream) {
  constexpr int per_block = Lanes<acc_t>::kPerBlock;
  const StreamPosition pos = stream.position();
  const int64_t first_block = base / per_block;
  const int64_t blocks = (base + numel - 1) / per_block - first_block + 1;
  for (int64_t unit = thread_index(); unit < blocks; unit += thread_count()) {
    const int64_t block = first_block + unit;
    const PhiloxWords words = philox_block(pos.key, pos.offset + static_cast<uint64_t>(block));
    // Local index of the block's first element; negative in a head block when base is
    // not block-aligned.
    const int64_t begin = block * per_block - base;
    if (vector_aligned && begin >= 0 && begin + per_block <= numel) {
      Pack<scalar_t, per_block> pack;
#pragma unroll
      for (int lane = 0; lane < per_block; ++lane) pack.value[lane] = static_cast<scalar_t>(sampler(words, lane));
      *reinterpret_cast<Pack<scalar_t, per_block>*>(data + begin) = pack;
    } else {
#pragma unroll
      for (int lane = 0; lane < per_block; ++lane) {
        const int64_t i = begin + lane;
        if (i >= 0 && i < numel) data[i] = static_cast<scalar_t>(sampler(words, lane));
      }
    }
  }
}

// Sizes, storage strides and global strides of the strided path, by value as a kernel
// argument so the launch needs no device memory.
struct StridedLayout {
  int32_t dims = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxDims];
  int64_t global_strides[kMaxDims];
  int64_t base = 0;
};

// Any strides and any shard. A row runs along the last dim, where global indices are
// consecutive; a unit is the part of one row that falls in one Philox block, so each
// block is computed once per row. Rows are cut into the same number of units, enough
// for the worst alignment; units past a row's end are empty.
template <typename scalar_t, typename acc_t, typename Sampler>
__global__ void __launch_bounds__(kThreads)
    fill_strided_kernel(scalar_t* data, StridedLayout layout, int64_t units_per_row, int64_t units,
                        Sampler sampler, LaunchStream stream) {
  constexpr int per_block = Lanes<acc_t>::kPerBlock;
  const StreamPosition pos = stream.position();
  const int last = layout.dims - 1;
  const int64_t row_length = layout.sizes[last];
  const int64_t row_stride = layout.strides[last];
  for (int64_t unit = thread_index(); unit < units; unit += thread_count()) {
    int64_t row = unit / units_per_row;
    const int64_t k = unit - row * units_per_row;
    int64_t storage = 0;
    int64_t global = layout.base;
    for (int d = last - 1; d >= 0; --d) {
      const int64_t idx = row % layout.sizes[d];
      row /= layout.sizes[d];
      storage += idx * layout.strides[d];
      global += idx * layout.global_strides[d];
    }
    // Element j of the row has global index global + j, so unit k covers the row's
    // elements j = block_begin + lane of block global / per_block + k; block_begin is
    // negative in the first unit of a row that starts mid-block.
    const int64_t block_begin = k * per_block - global % per_block;
    if (block_begin >= row_length) continue;
    const PhiloxWords words =
        philox_block(pos.key, pos.offset + static_cast<uint64_t>(global / per_block + k));
    // Lanes unrolled so the words stay in registers.
#pragma unroll
    for (int lane = 0; lane < per_block; ++lane) {
      const int64_t j = block_begin + lane;
      if (j >= 0 && j < row_length) data[storage + j * row_stride] = static_cast<scalar_t>(sampler(words, lane));
    }
  }
}

// Drops size-1 dims and merges dim d into d+1 wherever both its storage and its global
// stride are those of d+1 times size(d+1): fewer index divisions per unit, and a
// contiguous unsharded tensor (or a shard along dim 0) becomes one dim of stride 1.
StridedLayout make_layout(const at::Tensor& self, const ShardView& view) {
  struct Dim {
    int64_t size, stride, global_stride;
  };
  std::vector<Dim> dims;
  for (int64_t d = 0; d < self.dim(); ++d) {
    const Dim next{self.size(d), self.stride(d), view.global_strides[d]};
    if (next.size == 1) continue;
    if (!dims.empty() && dims.back().stride == next.stride * next.size &&
        dims.back().global_stride == next.global_stride * next.size) {
      dims.back() = {dims.back().size * next.size, next.stride, next.global_stride};
    } else {
      dims.push_back(next);
    }
  }
  // Rows need consecutive global indices; when the last dim was dropped for being size 1
  // (a shard one wide in it), each element is a row of its own.
  if (dims.empty() || dims.back().global_stride != 1) dims.push_back({1, 1, 1});
  TORCH_CHECK_NOT_IMPLEMENTED(dims.size() <= static_cast<size_t>(kMaxDims),
                              "nspl_filler: CUDA fills tensors with at most ", kMaxDims,
                              " non-mergeable dims, got ", dims.size(), " (shape ", self.sizes(),
                              ", strides ", self.strides(), ")");
  StridedLayout layout;
  layout.dims = static_cast<int32_t>(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    layout.sizes[d] = dims[d].size;
    layout.strides[d] = dims[d].stride;
    layout.global_strides[d] = dims[d].global_stride;
  }
  layout.base = view.base;
  return layout;
}

// One thread per unit up to what the device holds resident at once; past that the
// grid-stride loops take over.
unsigned int grid_size(int64_t units) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int64_t resident =
      static_cast<int64_t>(prop->multiProcessorCount) * (prop->maxThreadsPerMultiProcessor / kThreads);
  const int64_t needed = (units + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min(resident, needed));
}

template <typename scalar_t, typename acc_t, typename Sampler>
void launch(const at::Tensor& self, const Sampler& sampler, const LaunchStream& stream,
            const StridedLayout& layout) {
  constexpr int per_block = Lanes<acc_t>::kPerBlock;
  scalar_t* const data = self.data_ptr<scalar_t>();
  const cudaStream_t cuda_stream = at::cuda::getCurrentCUDAStream();
  if (layout.dims == 1 && layout.strides[0] == 1 && layout.global_strides[0] == 1) {
    const int64_t numel = layout.sizes[0];
    const int64_t blocks = (layout.base + numel - 1) / per_block - layout.base / per_block + 1;
    // Address that global index 0 would have: every block starts on a vector boundary
    // exactly when it does.
    const uintptr_t origin = reinterpret_cast<uintptr_t>(data) -
                             static_cast<uintptr_t>(layout.base) * sizeof(scalar_t);
    const bool vector_aligned = origin % sizeof(Pack<scalar_t, per_block>) == 0;
    fill_contiguous_kernel<scalar_t, acc_t><<<grid_size(blocks), kThreads, 0, cuda_stream>>>(
        data, numel, layout.base, vector_aligned, sampler, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const int64_t row_length = layout.sizes[layout.dims - 1];
  const int64_t rows = self.numel() / row_length;
  // A row of n elements starting at any lane touches at most (n + per_block - 2) / per_block + 1 blocks.
  const int64_t units_per_row = (row_length + per_block - 2) / per_block + 1;
  const int64_t units = rows * units_per_row;
  fill_strided_kernel<scalar_t, acc_t><<<grid_size(units), kThreads, 0, cuda_stream>>>(
      data, layout, units_per_row, units, sampler, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void fill_typed(const at::Tensor& self, const SampleSpec& spec, const LaunchStream& stream,
                const StridedLayout& layout) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  visit_sampler<acc_t>(spec, self.scalar_type(),
                       [&](const auto& sampler) { launch<scalar_t, acc_t>(self, sampler, stream, layout); });
}

// SPEC §4: an explicit seed is the key and the caller's offset the first block; otherwise
// the stream is reserved from torch's CUDA generator (Note [Reserving torch's Philox
// counters]), under its lock, without a host sync.
LaunchStream cuda_stream(const at::Tensor& self, const ShardView& view, std::optional<int64_t> seed,
                         int64_t offset, const std::optional<at::Generator>& generator) {
  LaunchStream stream;
  if (seed) {
    stream.explicit_position = {static_cast<uint64_t>(*seed), static_cast<uint64_t>(offset)};
    return stream;
  }
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      generator, at::cuda::detail::getDefaultCUDAGenerator(self.device().index()));
  const uint64_t blocks = blocks_for(view.global_numel(), self.scalar_type());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  stream.torch_state = gen->philox_cuda_state(torch_offset_increment(blocks));
  stream.from_torch = true;
  return stream;
}

void fill_cuda(const at::Tensor& self, const SampleSpec& spec, std::optional<int64_t> seed,
               int64_t offset, const std::optional<at::Generator>& generator, const ShardView& view) {
  // A CPU tensor gets here when a CUDA generator makes the dispatcher choose this kernel.
  TORCH_CHECK(self.is_cuda(), "nspl_filler: a CUDA generator cannot fill a tensor on ", self.device());
  const c10::cuda::CUDAGuard device_guard(self.device());
  // Before the generator is advanced: a tensor that cannot be filled consumes nothing.
  const StridedLayout layout = make_layout(self, view);
  const LaunchStream stream = cuda_stream(self, view, seed, offset, generator);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "nspl_filler_cuda",
                                  [&] { fill_typed<scalar_t>(self, spec, stream, layout); });
}

}  // namespace
}  // namespace nspl

TORCH_LIBRARY_IMPL(nspl_filler, CUDA, m) { NSPL_REGISTER_BACKEND(m, ::nspl::fill_cuda); }
