// CPU backend. Every element is computed from its logical (global) index alone, so
// chunks handed out by at::parallel_for give the same values for any thread count and
// any memory layout. Runs of a row go to the AVX-512 or AVX2 kernels (fill_cpu_simd.h) when
// cpu_capability.h says so; they give the portable kernel's values bit for bit.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <mutex>
#include <type_traits>

#include "../fill.h"
#include "../op_table.h"
#include "cpu_capability.h"
#include "fill_cpu_simd.h"
#include "fill_run.h"
#include "fill_many_cpu.h"

namespace nspl {
namespace {

// Each task gets at least this many elements: 5-20 µs of sampling (SIMD or scalar),
// above the few µs of waking a second thread; measured, 2^13 elements already fill
// faster on two threads than on one.
constexpr int64_t kGrainSize = 1 << 12;

// Fills `count` elements whose global indices are first, first + 1, ... at out,
// out + stride, ... with the kernels `capability` names.
template <typename scalar_t, typename Sampler>
void fill_run(scalar_t* out, int64_t stride, uint64_t first, int64_t count, const Sampler& sampler,
              const StreamPosition& pos, cpu::Capability capability) {
  if constexpr (kHasSimdKernel<scalar_t, decltype(sampler.k)>) {
    switch (capability) {
      case cpu::Capability::Avx512:
        avx512::fill_run(out, stride, first, count, sampler.k, pos);
        return;
      case cpu::Capability::Avx2:
        avx2::fill_run(out, stride, first, count, sampler.k, pos);
        return;
      case cpu::Capability::Scalar:
        break;
    }
  }
  fill_run_scalar(out, stride, first, count, sampler, pos);
}

// Walks local logical indices [begin, end) row by row (a row runs along the last dim,
// where global indices are consecutive) and fills each row with fill_run.
template <typename scalar_t, typename Sampler>
void fill_strided(const at::Tensor& self, const Sampler& sampler, const StreamPosition& pos,
                  const ShardView& view) {
  scalar_t* const data = self.data_ptr<scalar_t>();
  const int64_t numel = self.numel();
  const cpu::Capability capability = cpu::capability();
  // A contiguous, affine tensor is one long row: local index i is global index base + i.
  if ((self.is_contiguous() && view.affine) || self.dim() == 0) {
    at::parallel_for(0, numel, kGrainSize, [&](int64_t begin, int64_t end) {
      fill_run(data + begin, 1, static_cast<uint64_t>(view.base + begin), end - begin, sampler, pos, capability);
    });
    return;
  }
  const std::vector<int64_t> sizes = self.sizes().vec(), strides = self.strides().vec();
  const ShardView::Dims& gstrides = view.global_strides;
  const int64_t nd = static_cast<int64_t>(sizes.size());
  const int64_t row = sizes[nd - 1];

  at::parallel_for(0, numel, kGrainSize, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(nd);
    int64_t rest = begin;
    for (int64_t d = nd - 1; d >= 0; --d) {
      idx[d] = rest % sizes[d];
      rest /= sizes[d];
    }
    int64_t i = begin;
    while (i < end) {
      int64_t storage = 0;
      int64_t global = view.base;
      for (int64_t d = 0; d < nd; ++d) {
        storage += idx[d] * strides[d];
        global += idx[d] * gstrides[d];
      }
      const int64_t count = std::min(end - i, row - idx[nd - 1]);
      fill_run(data + storage, strides[nd - 1], static_cast<uint64_t>(global), count, sampler, pos, capability);
      i += count;
      idx[nd - 1] += count;
      for (int64_t d = nd - 1; d > 0 && idx[d] == sizes[d]; --d) {
        idx[d] = 0;
        ++idx[d - 1];
      }
    }
  });
}

template <typename scalar_t>
void fill_typed(const at::Tensor& self, const SampleSpec& spec, const StreamPosition& pos,
                const ShardView& view) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  visit_sampler<acc_t>(spec, self.scalar_type(),
                       [&](const auto& sampler) { fill_strided<scalar_t>(self, sampler, pos, view); });
}

// docs/spec.md §4: an explicit seed is the key and the caller's offset the first block; a torch
// generator gives a fresh 64-bit key (drawn under its lock) and offset 0.
StreamPosition cpu_stream(std::optional<int64_t> seed, int64_t offset,
                          const std::optional<at::Generator>& generator) {
  if (seed) return {static_cast<uint64_t>(*seed), static_cast<uint64_t>(offset)};
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(generator,
                                                                at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return {gen->random64(), 0};
}

void fill_cpu(const at::Tensor& self, const SampleSpec& spec, std::optional<int64_t> seed,
              int64_t offset, const std::optional<at::Generator>& generator, const ShardView& view) {
  const StreamPosition pos = cpu_stream(seed, offset, generator);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "nspl_filler_cpu",
                                  [&] { fill_typed<scalar_t>(self, spec, pos, view); });
}

}  // namespace
}  // namespace nspl

TORCH_LIBRARY_IMPL(nspl_filler, CPU, m) {
  ::nspl::register_backend<::nspl::fill_cpu>(m);
  m.impl("nspl_many_", &::nspl::nspl_many_kernel<&::nspl::nspl_many_cpu<::nspl::fill_cpu, ::nspl::cpu_stream>>);
}
