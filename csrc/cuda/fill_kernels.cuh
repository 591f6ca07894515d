// The per-tensor CUDA kernels of nspl_ (and of the tensors the bulk op's table does not
// take): their definitions and the planning of one launch, included by the translation
// units that instantiate them for one output dtype each (fill_cuda_<dtype>.cu), so a
// parallel build compiles the dtypes at once. fill_cuda.cu dispatches to them.
//
// Like the CPU kernel, every element is computed from its logical (global) index alone, so
// the values do not depend on the launch configuration or the memory layout. The samplers
// and the package's own exp/log are those of nspl_math.h, compiled without contraction
// (--fmad=false) like the CPU code (-ffp-contract=off), so both devices perform the same
// IEEE operations and, with an explicit seed, give the CPU's values (docs/spec.md §4;
// tests/test_cuda.py asserts the bounds).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../fill.h"
#include "launch.cuh"
#include "units.h"

namespace nspl {
namespace {

// A contiguous tensor whose local index i has global index base + i: unit u is one Philox
// block. The whole units are stored with one vector instruction each when `aligned` (the
// element of every block-aligned global index sits on a vector boundary: launch-uniform,
// so the test is made once), the partial units at the ends lane by lane.
template <typename scalar_t, typename acc_t, typename Sampler, bool kKeyOnDevice>
__global__ void __launch_bounds__(kThreads)
    fill_contiguous_kernel(scalar_t* data, int64_t numel, int64_t base, bool aligned, const Sampler sampler,
                           const __grid_constant__ LaunchStream stream) {
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
// memory order] in index_map.h). The geometry (some 600 bytes) is read where the launch
// put it, in the kernel's parameter space (__grid_constant__), not copied per thread.
template <typename scalar_t, typename acc_t, typename Sampler, bool kKeyOnDevice>
__global__ void __launch_bounds__(kThreads)
    fill_strided_kernel(scalar_t* data, const __grid_constant__ cuda_map::StridedGeometry geometry,
                        const Sampler sampler, const __grid_constant__ LaunchStream stream) {
  constexpr int per = Lanes<acc_t>::kPerBlock;
  const StreamPosition pos = stream.position();
  const uint64_t thread = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t threads = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const PhiloxRoundKeys keys = stream.round_keys<kKeyOnDevice>(pos);
  cuda_map::walk_strided<per>(geometry, thread, threads, [&](const cuda_map::Unit& unit) {
    store_unit<scalar_t, acc_t>(data, unit, philox_block(keys, pos.offset + unit.block), sampler);
  });
}

// The launch of one tensor with one sampler. Grids are sized here, for both instantiations
// (the key known on the host, or only at graph replay), so the occupancy query, which can
// fail, runs before the stream is reserved; the launch itself only picks one.
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
    const uint64_t units = static_cast<uint64_t>(cuda_map::contiguous_units(numel, base, per));
    const KeySourceGrids grids{grid_size<fill_contiguous_kernel<scalar_t, acc_t, Sampler, false>>(units),
                               grid_size<fill_contiguous_kernel<scalar_t, acc_t, Sampler, true>>(units)};
    return [=](const LaunchStream& stream) {
      with_key_source(stream, [&](auto key_on_device) {
        constexpr auto kernel = fill_contiguous_kernel<scalar_t, acc_t, Sampler, decltype(key_on_device)::value>;
        kernel<<<grids.get(key_on_device), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(data, numel, base, aligned,
                                                                                           sampler, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    };
  }
  const cuda_map::StridedGeometry geometry = cuda_map::strided_geometry(dims, base, per);
  const KeySourceGrids grids{grid_size<fill_strided_kernel<scalar_t, acc_t, Sampler, false>>(geometry.units),
                             grid_size<fill_strided_kernel<scalar_t, acc_t, Sampler, true>>(geometry.units)};
  return [=](const LaunchStream& stream) {
    with_key_source(stream, [&](auto key_on_device) {
      constexpr auto kernel = fill_strided_kernel<scalar_t, acc_t, Sampler, decltype(key_on_device)::value>;
      kernel<<<grids.get(key_on_device), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(data, geometry, sampler,
                                                                                         stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  };
}

}  // namespace

template <typename scalar_t>
Launch plan_fill_dtype(const at::Tensor& self, const SampleSpec& spec, const std::vector<cuda_map::Dim>& dims,
                       int64_t base) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  Launch launch;
  visit_sampler<acc_t>(spec, self.scalar_type(), [&](const auto& sampler) {
    launch = plan_typed<scalar_t, acc_t>(self, sampler, dims, base);
  });
  return launch;
}

}  // namespace nspl

// The explicit instantiation of one dtype's kernels, in its own translation unit.
#define NSPL_INSTANTIATE_FILL_DTYPE(scalar_t)                                                                \
  template ::nspl::Launch nspl::plan_fill_dtype<scalar_t>(const at::Tensor&, const ::nspl::SampleSpec&, \
                                                          const std::vector<::nspl::cuda_map::Dim>&, int64_t);
