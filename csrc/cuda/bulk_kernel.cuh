// CUDA kernel of the bulk op nspl_many_: many tensors per launch, in the manner of apex's
// multi_tensor_apply. The host writes a table, passed by value as the kernel argument, of
// one slot per tensor (its sampler, data pointer, key, place in the stream and in its
// global tensor) and cuts each tensor into tiles of kTileUnits Philox blocks; a grid sized to
// fill the device walks the tiles, each CUDA block one tile at a time, each thread
// kUnitsPerThread units of it. Included by the units that instantiate it for one dtype each
// (fill_many_cuda_<dtype>.cu); fill_many_cuda.cu decides which tensors the table takes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../fill.h"
#include "../fill_many.h"
#include "launch.cuh"
#include "units.h"

namespace nspl {
namespace {

constexpr int kUnitsPerThread = 4;
constexpr uint32_t kTileUnits = kThreads * kUnitsPerThread;

// The kernel argument (table and stream): CUDA 12.1 raised the limit from 4 KiB to 32764
// bytes (toolkit and driver 12.1 or later, any architecture from Volta on). A transformer's
// parameter list then takes a few launches per dtype rather than tens. Built with an older
// toolkit, the table stays within 4 KiB; run on an older driver, the bulk op uses no table
// (bulk_tables_supported()).
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12010
constexpr size_t kArgumentBytes = 32764;
#else
constexpr size_t kArgumentBytes = 4096;
#endif

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
// The table is read where the launch put it, in the kernel's parameter space
// (__grid_constant__): a slot indexed at run time would otherwise be copied to each
// thread's local memory.
template <typename scalar_t, typename acc_t, typename Sampler, bool kSlotKeys, bool kKeyOnDevice>
__global__ void __launch_bounds__(kThreads)
    nspl_many_kernel(const __grid_constant__ BulkTable<Sampler> table, const __grid_constant__ LaunchStream stream) {
  static_assert(sizeof(BulkTable<Sampler>) + sizeof(LaunchStream) <= kArgumentBytes, "kernel argument too large");
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

template <auto kernel>
unsigned int table_grid(uint32_t tiles) {
  return grid_size<kernel>(uint64_t(tiles) * kThreads);
}

template <auto kernel, typename Table>
void launch_table(const Table& table, unsigned int grid, const LaunchStream& stream) {
  kernel<<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(table, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

bool global_runs(const ManyFillItem& item, int64_t* run, int64_t* run_stride) {
  return cuda_map::global_runs(item.view.local_sizes, item.view.global_sizes, item.view.global_strides, run,
                               run_stride);
}

}  // namespace

// Tables of one dtype's batchable tensors, as launches. Every tensor of the call shares
// alpha and ratio, so one sampler type, but each has its own sampler value. Grids are
// sized here, before the stream is reserved (launch.cuh).
template <typename scalar_t>
void plan_tables(const std::vector<const ManyFillItem*>& group, bool slot_keys, std::vector<Launch>* launches) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  constexpr int per = Lanes<acc_t>::kPerBlock;
  const c10::ScalarType dtype = group.front()->tensor.scalar_type();
  // The items' specs are power laws (ManyFillItem), so their samplers are the power law's
  // forms: the log-uniform one and the general ones, the only samplers with a table kernel.
  visit_sampler<acc_t>(group.front()->spec, dtype, [&](const auto& first) {
    using Sampler = std::decay_t<decltype(first)>;
    using Table = BulkTable<Sampler>;
    Table table{};
    int slots = 0;
    const auto flush = [&] {
      if (slots == 0) return;
      if (slot_keys) {
        constexpr auto kernel = nspl_many_kernel<scalar_t, acc_t, Sampler, true, false>;
        launches->push_back([table, grid = table_grid<kernel>(table.tiles)](const LaunchStream& stream) {
          launch_table<kernel>(table, grid, stream);
        });
      } else {
        const KeySourceGrids grids{table_grid<nspl_many_kernel<scalar_t, acc_t, Sampler, false, false>>(table.tiles),
                                   table_grid<nspl_many_kernel<scalar_t, acc_t, Sampler, false, true>>(table.tiles)};
        launches->push_back([table, grids](const LaunchStream& stream) {
          with_key_source(stream, [&](auto key_on_device) {
            launch_table<nspl_many_kernel<scalar_t, acc_t, Sampler, false, decltype(key_on_device)::value>>(
                table, grids.get(key_on_device), stream);
          });
        });
      }
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

}  // namespace nspl

// The explicit instantiation of one dtype's bulk kernels, in its own translation unit.
#define NSPL_INSTANTIATE_BULK_DTYPE(scalar_t)                                                             \
  template void nspl::plan_tables<scalar_t>(const std::vector<const ::nspl::ManyFillItem*>&, bool, \
                                            std::vector<::nspl::Launch>*);
