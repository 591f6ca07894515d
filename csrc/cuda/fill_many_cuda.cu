// CUDA backend of the bulk op nspl_many_: which tensors the table kernel takes
// (bulk_kernel.cuh, instantiated per dtype in fill_many_cuda_<dtype>.cu), the reservation of
// the call's stream and the launches. Tensors the table does not take (non-contiguous ones,
// shards along two inner dims, and large ones, which fill the device by themselves) go
// through the per-tensor kernels (fill_kernels.cuh), on the same stream position.
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

// The table is up to 32764 bytes of kernel argument where the toolkit is CUDA 12.1 or later
// (bulk_kernel.cuh), which the driver must support too: asked once, when the first bulk
// call is planned, before anything is reserved.
bool bulk_tables_supported() {
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12010
  static const bool supported = [] {
    int driver = 0;
    C10_CUDA_CHECK(cudaDriverGetVersion(&driver));
    return driver >= 12010;
  }();
  return supported;
#else
  return true;
#endif
}

namespace {

// From this size on a tensor takes the per-tensor kernel: at 2^22 elements it alone has
// more units than an H100 or H200 holds threads, so one launch of its own fills the device
// (and the bulk kernel's unit numbers stay far below 2^32).
constexpr int64_t kLargeTensor = int64_t(1) << 22;

bool global_runs(const ManyFillItem& item, int64_t* run, int64_t* run_stride) {
  return cuda_map::global_runs(item.view.local_sizes, item.view.global_sizes, item.view.global_strides, run,
                               run_stride);
}

bool batchable(const ManyFillItem& item) {
  int64_t run = 0, run_stride = 0;
  return item.tensor.numel() < kLargeTensor && item.tensor.is_contiguous() && global_runs(item, &run, &run_stride) &&
         bulk_tables_supported();
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

void nspl_many_cuda(const ManyFillArgs& args) {
  const std::vector<ManyFillItem> items = plan_nspl_many(args);
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
      explicit_keys(args.seed, args.keys)
          ? LaunchStream::from_seed(first_key, 0)
          : LaunchStream::from_torch_state(
                reserve_torch_stream(writing.front()->tensor, args.generator, stream_extent(items)));
  for (const Launch& launch : launches) launch(stream);
}

}  // namespace
}  // namespace nspl

// Only the bulk op: the per-tensor ops register their CUDA kernels in fill_cuda.cu.
TORCH_LIBRARY_IMPL(nspl_filler, CUDA, m) { m.impl("nspl_many_", &::nspl::nspl_many_kernel<&::nspl::nspl_many_cuda>); }
