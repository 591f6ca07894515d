// CUDA backend of the per-tensor ops: checks, the stream (an explicit seed, or a position
// reserved from torch's CUDA generator) and the dispatch on the dtype to the unit that
// holds that dtype's kernels (fill_kernels.cuh, instantiated in fill_cuda_<dtype>.cu).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "../fill.h"
#include "../op_table.h"
#include "launch.cuh"

namespace nspl {
namespace {

// docs/spec.md §4: an explicit seed is the key and the caller's offset the first block;
// otherwise the stream is reserved from torch's CUDA generator (Note [Reserving torch's
// Philox counters] in launch.cuh), under its lock, without a host sync, after every check.
void fill_cuda(const at::Tensor& self, const SampleSpec& spec, std::optional<int64_t> seed, int64_t offset,
               const std::optional<at::Generator>& generator, const ShardView& view) {
  check_on_cuda(self);
  const c10::cuda::CUDAGuard device_guard(self.device());
  const Launch launch = plan_fill(self, spec, view);
  launch(seed ? LaunchStream::from_seed(static_cast<uint64_t>(*seed), static_cast<uint64_t>(offset))
              : LaunchStream::from_torch_state(reserve_torch_stream(
                    self, generator, blocks_for(view.global_numel(), self.scalar_type()))));
}

}  // namespace

Launch plan_fill(const at::Tensor& self, const SampleSpec& spec, const ShardView& view) {
  const std::vector<cuda_map::Dim> dims = cuda_map::merge_dims(self.sizes().vec(), self.strides().vec(),
                                                               view.global_strides);
  TORCH_CHECK_NOT_IMPLEMENTED(dims.size() <= static_cast<size_t>(cuda_map::kMaxDims),
                              "nspl_filler: CUDA fills tensors with at most ", cuda_map::kMaxDims,
                              " non-mergeable dims, got ", dims.size(), " (shape ", self.sizes(), ", strides ",
                              self.strides(), ")");
  Launch launch;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "nspl_filler_cuda",
                                  [&] { launch = plan_fill_dtype<scalar_t>(self, spec, dims, view.base); });
  return launch;
}

}  // namespace nspl

TORCH_LIBRARY_IMPL(nspl_filler, CUDA, m) { ::nspl::register_backend<::nspl::fill_cuda>(m); }
