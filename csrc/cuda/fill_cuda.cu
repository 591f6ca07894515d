// CUDA backend. Like the CPU kernel, every element is computed from its logical (global)
// index alone, so the values do not depend on the launch configuration or the memory
// layout. The samplers and the package's own exp/log are those of nspl_math.h, compiled
// without contraction (--fmad=false) like the CPU code (-ffp-contract=off), so both devices
// perform the same IEEE operations and, with an explicit seed, give the CPU's values
// (docs/spec.md §4; tests/test_cuda.py asserts its bounds).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../fill.h"
#include "../ops_impl.h"
#include "launch.cuh"

namespace nspl {
namespace {

// A contiguous tensor whose local index i has global index base + i: unit u is one Philox
// block. The whole units are stored with one vector instruction each when `aligned` (the
// element of every block-aligned global index sits on a vector boundary: launch-uniform,
// so the test is made once), the partial units at the ends lane by lane.
template <typename scalar_t, typename acc_t, typename Sampler, bool kKeyOnDevice>
__global__ void __launch_bounds__(kThreads)
    fill_contiguous_kernel(scalar_t* data, int64_t numel, int64_t base, bool aligned, Sampler sampler,
                           LaunchStream stream) {
  constexpr int per = Lanes<acc_t>::kPerBlock;
  const StreamPosition pos = stream.position();
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t threads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const PhiloxRoundKeys keys = stream.round_keys<kKeyOnDevice>(pos);
  const auto edge = [&](const cuda_map::Unit& unit) {
    store_unit<scalar_t, acc_t>(data, unit, philox_block(keys, pos.offset + unit.block), sampler);
  };
  if (aligned) {
    cuda_map::walk_contiguous<per>(numel, base, thread, threads, [&](uint64_t block, int64_t first) {
      store_vector(data + first, sample_block<scalar_t, acc_t>(philox_block(keys, pos.offset + block), sampler));
    }, edge);
  } else {
    cuda_map::walk_contiguous<per>(numel, base, thread, threads, [&](uint64_t block, int64_t first) {
      store_unit<scalar_t, acc_t>(data, cuda_map::Unit{block, first, 1, 0, per}, philox_block(keys, pos.offset + block),
                                  sampler);
    }, edge);
  }
}

// Any strides and any shard, walked in memory order (Note [Walking strided tensors in
// memory order] in index_map.h).
template <typename scalar_t, typename acc_t, typename Sampler, bool kKeyOnDevice>
__global__ void __launch_bounds__(kThreads)
    fill_strided_kernel(scalar_t* data, const cuda_map::StridedGeometry geometry, Sampler sampler, LaunchStream stream) {
  constexpr int per = Lanes<acc_t>::kPerBlock;
  const StreamPosition pos = stream.position();
  const uint64_t thread = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t threads = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const PhiloxRoundKeys keys = stream.round_keys<kKeyOnDevice>(pos);
  cuda_map::walk_strided<per>(geometry, thread, threads, [&](const cuda_map::Unit& unit) {
    store_unit<scalar_t, acc_t>(data, unit, philox_block(keys, pos.offset + unit.block), sampler);
  });
}

template <typename scalar_t, typename acc_t, typename Sampler>
Launch plan_typed(const at::Tensor& self, const Sampler& sampler, const std::vector<cuda_map::Dim>& dims,
                  int64_t base) {
  constexpr int per = Lanes<acc_t>::kPerBlock;
  scalar_t* const data = self.data_ptr<scalar_t>();
  if (cuda_map::is_contiguous_run(dims)) {
    const int64_t numel = dims[0].size;
    // Where global index 0 would sit: every whole block starts on a vector boundary exactly
    // when it does.
    const uintptr_t origin = reinterpret_cast<uintptr_t>(data) - static_cast<uintptr_t>(base) * sizeof(scalar_t);
    const bool aligned = origin % sizeof(Pack<scalar_t, per>) == 0;
    return [=](const LaunchStream& stream) {
      with_key_source(stream, [&](auto key_on_device) {
        constexpr auto kernel = fill_contiguous_kernel<scalar_t, acc_t, Sampler, decltype(key_on_device)::value>;
        const uint64_t units = static_cast<uint64_t>(cuda_map::contiguous_units(numel, base, per));
        kernel<<<grid_size<kernel>(units), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(data, numel, base,
                                                                                             aligned, sampler, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    };
  }
  const cuda_map::StridedGeometry geometry = cuda_map::strided_geometry(dims, base, per);
  return [=](const LaunchStream& stream) {
    with_key_source(stream, [&](auto key_on_device) {
      constexpr auto kernel = fill_strided_kernel<scalar_t, acc_t, Sampler, decltype(key_on_device)::value>;
      kernel<<<grid_size<kernel>(geometry.units), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(data, geometry,
                                                                                                   sampler, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  };
}

// docs/spec.md §4: an explicit seed is the key and the caller's offset the first block; otherwise
// the stream is reserved from torch's CUDA generator (Note [Reserving torch's Philox
// counters] in launch.cuh), under its lock, without a host sync, after every check.
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "nspl_filler_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    visit_sampler<acc_t>(spec, self.scalar_type(), [&](const auto& sampler) {
      launch = plan_typed<scalar_t, acc_t>(self, sampler, dims, view.base);
    });
  });
  return launch;
}

}  // namespace nspl

TORCH_LIBRARY_IMPL(nspl_filler, CUDA, m) { NSPL_REGISTER_BACKEND(m, ::nspl::fill_cuda); }
