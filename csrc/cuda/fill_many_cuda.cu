// CUDA kernel of the bulk op nspl_many_: many tensors per launch, in the manner of apex's
// multi_tensor_apply. The host cuts every tensor into chunks of kChunk elements and writes
// a table, passed by value as the kernel argument, of per-tensor metadata (data pointer,
// numel, place in the stream and in the global tensor, scale) and of one (tensor, chunk)
// pair per CUDA block; it launches whenever the table is full, once per dtype at the least.
// The per-element math is the sampler of nspl_math.h, shared with the CPU kernel.
#include <ATen/Dispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../fill.h"
#include "../fill_many.h"
#include "../nspl_math.h"

namespace nspl {
namespace {

constexpr int kThreads = 256;
// Elements of one (tensor, chunk) pair, i.e. of one CUDA block: 16 strips of 4 per thread,
// enough work to hide a block's start-up. A multiple of 4, so chunks and strips start on
// block boundaries of the stream (see the kernel).
constexpr int64_t kChunk = 16 * 4 * kThreads;
// Table sizes: the whole kernel argument (table and PhiloxCudaState) must stay within the
// 4 KiB that every CUDA version accepts; the float64 table is the larger one.
constexpr int kMaxTensors = 28;
constexpr int kMaxChunks = 256;

template <typename acc_t>
struct LaunchTable {
  PowerLawSampler<acc_t> shape;  // constants of (alpha, ratio), shared by the call
  // Per tensor slot.
  void* data[kMaxTensors];
  int64_t numel[kMaxTensors];
  uint64_t first_block[kMaxTensors];  // the tensor's offset in the call's stream
  // Global index of local element i: base + (i / run) * run_stride + i % run (see global_runs).
  int64_t base[kMaxTensors];
  int64_t run[kMaxTensors];
  int64_t run_stride[kMaxTensors];
  acc_t scale[kMaxTensors], low[kMaxTensors], high[kMaxTensors];
  // Per CUDA block: which tensor slot, which chunk of it.
  uint8_t chunk_tensor[kMaxChunks];
  int32_t chunk_index[kMaxChunks];
};
static_assert(sizeof(LaunchTable<double>) + sizeof(at::PhiloxCudaState) <= 4096,
              "kernel argument over 4 KiB");
static_assert(kMaxTensors <= 256, "chunk_tensor is a uint8_t");

// Note [Stream position from a torch generator]
// philox_cuda_state(increment) reserves `increment` values of the generator's Philox offset.
// torch's kernels turn offset o into the counter (o / 4 + j, thread id), j = 0, 1, ...,
// so a reservation of 4·E covers their counters o/4 ... o/4 + E - 1 in words 0-1. The bulk
// op uses blocks o/4 ... o/4 + E - 1 with words 2-3 zero, E = stream_extent of the call:
// inside its own reservation, so torch's later draws (and earlier ones) never reuse them.
// 4·E is also the multiple of 4 that the generator requires. Under CUDA-graph capture the
// key and offset live on the device; the kernel reads them with philox::unpack. Several
// launches share one reservation: each reads the same position and uses its own blocks.

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    nspl_many_kernel(const LaunchTable<acc_t> table, const at::PhiloxCudaState philox) {
  constexpr int per_block = Lanes<acc_t>::kPerBlock;
  const int t = table.chunk_tensor[blockIdx.x];
  const int64_t chunk = table.chunk_index[blockIdx.x];
  const auto position = at::cuda::philox::unpack(philox);
  const uint64_t key = std::get<0>(position);
  const uint64_t first_block = std::get<1>(position) / 4 + table.first_block[t];

  PowerLawSampler<acc_t> sampler = table.shape;
  sampler.scale = table.scale[t];
  sampler.low = table.low[t];
  sampler.high = table.high[t];
  scalar_t* const out = static_cast<scalar_t*>(table.data[t]);
  const int64_t numel = table.numel[t];
  const int64_t base = table.base[t];
  const int64_t run = table.run[t];
  const int64_t run_stride = table.run_stride[t];

  // Work in v = i + shift: a strip of per_block consecutive v then holds the elements of
  // one stream block (in the first run of a sharded tensor, every run of an unsharded
  // one), so a thread computes one Philox block per strip, not one per element.
  const int64_t shift = base % per_block;
  const int64_t chunk_begin = chunk * kChunk;
  const int64_t v_begin = chunk_begin > shift ? chunk_begin : shift;
  const int64_t v_end = chunk_begin + kChunk < numel + shift ? chunk_begin + kChunk : numel + shift;
  for (int64_t strip = chunk_begin + threadIdx.x * per_block; strip < v_end;
       strip += kThreads * per_block) {
    uint64_t cached = ~uint64_t(0);
    PhiloxWords words{};
#pragma unroll
    for (int e = 0; e < per_block; ++e) {
      const int64_t v = strip + e;
      if (v < v_begin || v >= v_end) continue;
      const int64_t i = v - shift;
      const int64_t g = run == numel ? base + i : base + (i / run) * run_stride + i % run;
      const uint64_t block = first_block + static_cast<uint64_t>(g) / per_block;
      if (block != cached) {
        words = philox_block(key, block);
        cached = block;
      }
      out[i] = static_cast<scalar_t>(sampler(words, static_cast<int>(g % per_block)));
    }
  }
}

// (run, run_stride) for the table, when the view's global indices are
// base + (i / run) * run_stride + i % run: true when every dim but the first and the last
// partial one d is whole (any shard of a 1-D mesh, and row-and-column shards of 2-D
// tensors). Then run = local elements from dim d on, run_stride = global elements from
// dim d on. An unsharded tensor or a shard along dim 0 is one run.
bool global_runs(const ShardView& view, int64_t numel, int64_t* run, int64_t* run_stride) {
  const int64_t nd = static_cast<int64_t>(view.local_sizes.size());
  int64_t d = nd - 1;
  while (d > 0 && view.local_sizes[d] == view.global_sizes[d]) --d;
  *run = numel;
  *run_stride = numel;
  if (d <= 0) return true;
  for (int64_t e = 1; e < d; ++e) {
    if (view.local_sizes[e] != view.global_sizes[e]) return false;
  }
  *run = view.local_sizes[d] * view.global_strides[d];
  *run_stride = view.global_strides[d - 1];
  return true;
}

bool launchable(const ManyFillItem& item) {
  int64_t run = 0, run_stride = 0;
  return item.tensor.is_contiguous() && global_runs(item.view, item.tensor.numel(), &run, &run_stride);
}

template <typename scalar_t>
void launch_group(const std::vector<const ManyFillItem*>& group, const at::PhiloxCudaState& philox,
                  cudaStream_t stream) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  constexpr int per_block = Lanes<acc_t>::kPerBlock;
  LaunchTable<acc_t> table{};
  // alpha and ratio are the call's, so every item's sampler shares these constants.
  table.shape = make_power_law_sampler<acc_t>(group.front()->spec);
  int tensors = 0;
  int chunks = 0;
  const auto launch = [&] {
    if (chunks > 0) {
      nspl_many_kernel<scalar_t, acc_t><<<chunks, kThreads, 0, stream>>>(table, philox);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    tensors = 0;
    chunks = 0;
  };
  const auto set_slot = [&](int slot, const ManyFillItem& item) {
    const PowerLawSampler<acc_t> sampler = make_power_law_sampler<acc_t>(item.spec);
    table.data[slot] = item.tensor.data_ptr();
    table.numel[slot] = item.tensor.numel();
    table.first_block[slot] = item.offset;
    table.base[slot] = item.view.base;
    global_runs(item.view, item.tensor.numel(), &table.run[slot], &table.run_stride[slot]);
    table.scale[slot] = sampler.scale;
    table.low[slot] = sampler.low;
    table.high[slot] = sampler.high;
  };
  for (const ManyFillItem* item : group) {
    if (tensors == kMaxTensors) launch();
    int slot = tensors++;
    set_slot(slot, *item);
    const int64_t shift = item->view.base % per_block;
    const int64_t count = (item->tensor.numel() + shift + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < count; ++c) {
      if (chunks == kMaxChunks) {
        // The table is full in the middle of this tensor: launch, and carry the tensor on
        // as slot 0 of the next table.
        launch();
        slot = tensors++;
        set_slot(slot, *item);
      }
      table.chunk_tensor[chunks] = static_cast<uint8_t>(slot);
      table.chunk_index[chunks] = static_cast<int32_t>(c);
      ++chunks;
    }
  }
  launch();
}

// Tensors the table cannot describe (non-contiguous, or sharded along two inner dims) go
// through the per-tensor CUDA kernel of nspl_, called below the autograd and functionalize
// layers since this kernel already runs there.
void fill_one(const ManyFillItem& item, c10::string_view mode, double alpha, double ratio, double gain,
              uint64_t key, uint64_t offset) {
  static const auto nspl = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("nspl_filler::nspl_", "")
                               .typed<void(const at::Tensor&, c10::string_view, double, double, double,
                                           std::optional<double>, std::optional<double>,
                                           std::optional<int64_t>, int64_t, std::optional<at::Generator>,
                                           at::OptionalIntArrayRef, at::OptionalIntArrayRef)>();
  nspl.redispatch(c10::DispatchKeySet(c10::DispatchKey::CUDA), item.tensor, mode, alpha, ratio, gain,
                  std::nullopt, std::nullopt, static_cast<int64_t>(key), static_cast<int64_t>(offset),
                  std::nullopt, at::IntArrayRef(item.view.global_sizes), at::IntArrayRef(item.global_start));
}

void nspl_many_cuda(at::TensorList tensors, c10::string_view mode, double alpha, double ratio,
                    at::ArrayRef<double> gains, std::optional<int64_t> seed, at::IntArrayRef offsets,
                    std::optional<at::Generator> generator, at::OptionalIntArrayRef global_shapes,
                    at::OptionalIntArrayRef global_starts) {
  const std::vector<ManyFillItem> items = plan_nspl_many(
      tensors, mode, alpha, ratio, gains, seed, offsets, generator, global_shapes, global_starts);
  std::vector<size_t> batched, single;
  for (size_t k = 0; k < items.size(); ++k) {
    if (!items[k].writes()) continue;
    (launchable(items[k]) ? batched : single).push_back(k);
  }
  if (batched.empty() && single.empty()) return;
  const c10::cuda::CUDAGuard device_guard(items.front().tensor.device());

  at::PhiloxCudaState philox;
  if (seed) {
    philox = at::PhiloxCudaState(static_cast<uint64_t>(*seed), 0);
  } else {
    auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
        generator, at::cuda::detail::getDefaultCUDAGenerator(items.front().tensor.device().index()));
    // See Note [Stream position from a torch generator].
    std::lock_guard<std::mutex> lock(gen->mutex_);
    philox = gen->philox_cuda_state(4 * stream_extent(items));
  }
  TORCH_CHECK(single.empty() || !philox.captured_,
              "nspl_filler: under CUDA-graph capture with a torch generator, a bulk fill needs "
              "contiguous tensors (tensor ", single.front(),
              " is not, or is sharded along two inner dims); pass seed= or an nspl_filler.Generator");

  // One group per dtype, in the order the dtypes first appear.
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  std::vector<bool> done(items.size(), false);
  for (size_t j = 0; j < batched.size(); ++j) {
    if (done[batched[j]]) continue;
    const c10::ScalarType dtype = items[batched[j]].tensor.scalar_type();
    std::vector<const ManyFillItem*> group;
    for (size_t m = j; m < batched.size(); ++m) {
      if (items[batched[m]].tensor.scalar_type() != dtype) continue;
      group.push_back(&items[batched[m]]);
      done[batched[m]] = true;
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "nspl_many_cuda",
                                    [&] { launch_group<scalar_t>(group, philox, stream); });
  }
  if (!single.empty()) {
    const uint64_t key = philox.seed_.val;
    const uint64_t start = philox.offset_.val / 4;
    for (size_t k : single) fill_one(items[k], mode, alpha, ratio, gains[k], key, start + items[k].offset);
  }
}

}  // namespace
}  // namespace nspl

// Only the bulk op: the per-tensor ops register their CUDA kernels in fill_cuda.cu.
TORCH_LIBRARY_IMPL(nspl_filler, CUDA, m) { m.impl("nspl_many_", &::nspl::nspl_many_cuda); }
