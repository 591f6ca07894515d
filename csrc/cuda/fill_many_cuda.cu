// CUDA kernel of the bulk op nspl_many_: many tensors per launch, in the manner of apex's
// multi_tensor_apply. The host writes a table, passed by value as the kernel argument, of
// one slot per tensor (its sampler, data pointer, key, place in the stream and in its
// global tensor) and cuts each tensor into tiles of kTileUnits Philox blocks; a grid sized to
// fill the device walks the tiles, each CUDA block one tile at a time, each thread
// kUnitsPerThread units of it. Tensors the table does not take (non-contiguous ones,
// shards along two inner dims, and large ones, which fill the device by themselves) go
// through the per-tensor kernels of fill_cuda.cu, on the same stream position.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../fill.h"
#include "../fill_many.h"
#include "launch.cuh"

namespace nspl {
namespace {

constexpr int kUnitsPerThread = 4;
constexpr uint32_t kTileUnits = kThreads * kUnitsPerThread;
// From this size on a tensor takes the per-tensor kernel: at 2^22 elements it alone has
// more units than an H100 or H200 holds threads, so one launch of its own fills the device
// (and the bulk kernel's unit numbers stay far below 2^32).
constexpr int64_t kLargeTensor = int64_t(1) << 22;
// The kernel argument (table and stream) stays within the 4 KiB that every CUDA version
// and driver accepts.
constexpr size_t kArgumentBytes = 4096;

template <typename Sampler>
struct BulkSlot {
  Sampler sampler;  // the tensor's own: its scale, and constants that may depend on its dtype
  void* data;
  uint64_t key;          // the tensor's key, read when the call has a key per tensor
  uint64_t first_block;  // the tensor's offset in the call's stream
  cuda_map::RunGeometry geometry;
  uint32_t tile_end;  // tiles of this slot and of the slots before it
};

template <typename Sampler>
struct BulkTable {
  static constexpr int kSlots =
      static_cast<int>((kArgumentBytes - sizeof(LaunchStream) - 2 * sizeof(uint32_t)) / sizeof(BulkSlot<Sampler>));
  BulkSlot<Sampler> slot[kSlots];
  uint32_t tiles;
};

// kSlotKeys: each tensor has a key of its own (streams by name), in its slot.
// kKeyOnDevice: the launch's key is torch's, known only at graph replay (launch.cuh).
template <typename scalar_t, typename acc_t, typename Sampler, bool kSlotKeys, bool kKeyOnDevice>
__global__ void __launch_bounds__(kThreads)
    nspl_many_kernel(const BulkTable<Sampler> table, const LaunchStream stream) {
  static_assert(sizeof(BulkTable<Sampler>) + sizeof(LaunchStream) <= kArgumentBytes, "kernel argument over 4 KiB");
  static_assert(!(kKeyOnDevice && kSlotKeys), "a call with a key per tensor draws nothing from torch's generator");
  constexpr int per = Lanes<acc_t>::kPerBlock;
  const StreamPosition pos = stream.position();
  const PhiloxRoundKeys launch_keys = stream.round_keys<kKeyOnDevice>(pos);
  // A slot's round keys are worked out when a thread's tile moves into another slot: a tile
  // lies in one slot, and a thread takes kUnitsPerThread units of it, so this is once per
  // tile, not once per Philox block.
  PhiloxRoundKeys slot_keys{};
  int keyed_slot = -1;
  const auto tile_end = [&](int slot) { return table.slot[slot].tile_end; };
  cuda_map::walk_tiles<kThreads, kUnitsPerThread>(
      table.tiles, tile_end, blockIdx.x, gridDim.x, threadIdx.x, [&](int slot, uint32_t u) {
        const BulkSlot<Sampler>& s = table.slot[slot];
        if constexpr (kSlotKeys) {
          if (slot != keyed_slot) {
            slot_keys = philox_round_keys(s.key);
            keyed_slot = slot;
          }
        }
        const PhiloxRoundKeys& keys = kSlotKeys ? slot_keys : launch_keys;
        cuda_map::Unit unit;
        if (u >= s.geometry.units || !cuda_map::run_unit<per>(s.geometry, u, &unit)) return;
        store_unit<scalar_t, acc_t>(static_cast<scalar_t*>(s.data), unit,
                                    philox_block(keys, pos.offset + s.first_block + unit.block), s.sampler);
      });
}

bool global_runs(const ManyFillItem& item, int64_t* run, int64_t* run_stride) {
  return cuda_map::global_runs(item.view.local_sizes, item.view.global_sizes, item.view.global_strides, run,
                               run_stride);
}

bool batchable(const ManyFillItem& item) {
  int64_t run = 0, run_stride = 0;
  return item.tensor.numel() < kLargeTensor && item.tensor.is_contiguous() && global_runs(item, &run, &run_stride);
}

template <auto kernel, typename Table>
void launch_table(const Table& table, const LaunchStream& stream) {
  kernel<<<grid_size<kernel>(uint64_t(table.tiles) * kThreads), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      table, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Tables of one dtype's batchable tensors, as launches. Every tensor of the call shares
// alpha and ratio, so one sampler type, but each has its own sampler value. slot_keys: the
// tensors' keys differ, so each slot brings its own.
template <typename scalar_t>
void plan_tables(const std::vector<const ManyFillItem*>& group, bool slot_keys, std::vector<Launch>* launches) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  constexpr int per = Lanes<acc_t>::kPerBlock;
  const c10::ScalarType dtype = group.front()->tensor.scalar_type();
  visit_sampler<acc_t>(group.front()->spec, dtype, [&](const auto& first) {
    using Sampler = std::decay_t<decltype(first)>;
    using Table = BulkTable<Sampler>;
    Table table{};
    int slots = 0;
    const auto flush = [&] {
      if (slots == 0) return;
      launches->push_back([table, slot_keys](const LaunchStream& stream) {
        if (slot_keys) {
          launch_table<nspl_many_kernel<scalar_t, acc_t, Sampler, true, false>>(table, stream);
          return;
        }
        with_key_source(stream, [&](auto key_on_device) {
          launch_table<nspl_many_kernel<scalar_t, acc_t, Sampler, false, decltype(key_on_device)::value>>(table,
                                                                                                           stream);
        });
      });
      table = Table{};
      slots = 0;
    };
    for (const ManyFillItem* item : group) {
      if (slots == Table::kSlots) flush();
      BulkSlot<Sampler>& slot = table.slot[slots];
      visit_sampler<acc_t>(item->spec, dtype, [&](const auto& sampler) {
        if constexpr (std::is_same_v<std::decay_t<decltype(sampler)>, Sampler>) {
          slot.sampler = sampler;
        } else {
          TORCH_INTERNAL_ASSERT(false, "nspl_filler: tensors of one bulk call need different sampler types");
        }
      });
      int64_t run = 0, run_stride = 0;
      global_runs(*item, &run, &run_stride);
      slot.data = item->tensor.data_ptr();
      slot.key = item->key;
      slot.first_block = item->offset;
      slot.geometry = cuda_map::run_geometry(item->tensor.numel(), item->view.base, run, run_stride, per);
      table.tiles += (slot.geometry.units + kTileUnits - 1) / kTileUnits;
      slot.tile_end = table.tiles;
      ++slots;
    }
    flush();
  });
}

// Every launch of the call, tables first, one group per dtype in the order the dtypes
// first appear; every check that can fail is made here.
std::vector<Launch> plan_launches(const std::vector<const ManyFillItem*>& writing, bool slot_keys) {
  std::vector<Launch> launches;
  std::vector<const ManyFillItem*> batched, single;
  for (const ManyFillItem* item : writing) (batchable(*item) ? batched : single).push_back(item);
  std::vector<bool> done(batched.size(), false);
  for (size_t j = 0; j < batched.size(); ++j) {
    if (done[j]) continue;
    const c10::ScalarType dtype = batched[j]->tensor.scalar_type();
    std::vector<const ManyFillItem*> group;
    for (size_t m = j; m < batched.size(); ++m) {
      if (batched[m]->tensor.scalar_type() != dtype) continue;
      group.push_back(batched[m]);
      done[m] = true;
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "nspl_many_cuda",
                                    [&] { plan_tables<scalar_t>(group, slot_keys, &launches); });
  }
  for (const ManyFillItem* item : single) {
    launches.push_back([fill = plan_fill(item->tensor, item->spec, item->view), key = item->key,
                        offset = item->offset](const LaunchStream& stream) {
      fill(stream.from_torch ? stream.shifted(offset) : LaunchStream::from_seed(key, offset));
    });
  }
  return launches;
}

void nspl_many_cuda(at::TensorList tensors, c10::string_view mode, double alpha, double ratio,
                    at::ArrayRef<double> gains, std::optional<int64_t> seed, at::IntArrayRef offsets,
                    std::optional<at::Generator> generator, at::OptionalIntArrayRef global_shapes,
                    at::OptionalIntArrayRef global_starts, at::OptionalIntArrayRef keys) {
  const std::vector<ManyFillItem> items = plan_nspl_many(
      tensors, mode, alpha, ratio, gains, seed, offsets, generator, global_shapes, global_starts, keys);
  std::vector<const ManyFillItem*> writing;
  for (const ManyFillItem& item : items) {
    if (item.writes()) writing.push_back(&item);
  }
  // Like nspl_, a call that writes nothing draws nothing from the generator.
  if (writing.empty()) return;
  for (const ManyFillItem* item : writing) check_on_cuda(item->tensor);
  const c10::cuda::CUDAGuard device_guard(writing.front()->tensor.device());
  // One key for the call (a seed, or keys that are all one) goes with the launch, which
  // brings its round keys worked out on the host; different keys go with the slots.
  const uint64_t first_key = writing.front()->key;
  const bool slot_keys = std::any_of(writing.begin(), writing.end(),
                                     [&](const ManyFillItem* item) { return item->key != first_key; });
  const std::vector<Launch> launches = plan_launches(writing, slot_keys);
  // See Note [Reserving torch's Philox counters] in launch.cuh: one reservation for the
  // whole call, as far as its furthest tensor reaches; every launch reads the same position.
  const LaunchStream stream =
      explicit_keys(seed, keys)
          ? LaunchStream::from_seed(first_key, 0)
          : LaunchStream::from_torch_state(reserve_torch_stream(writing.front()->tensor, generator, stream_extent(items)));
  for (const Launch& launch : launches) launch(stream);
}

}  // namespace
}  // namespace nspl

// Only the bulk op: the per-tensor ops register their CUDA kernels in fill_cuda.cu.
TORCH_LIBRARY_IMPL(nspl_filler, CUDA, m) { m.impl("nspl_many_", &::nspl::nspl_many_cuda); }
