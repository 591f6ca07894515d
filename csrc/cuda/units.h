// The entry points of the CUDA translation units that hold the kernels, one unit per
// output dtype and op (fill_cuda_<dtype>.cu, fill_many_cuda_<dtype>.cu): each is compiled on
// its own, so a parallel build (MAX_JOBS) compiles them at once, where one unit holding
// every kernel compiled on one core. fill_cuda.cu and fill_many_cuda.cu dispatch on the
// dtype to these; every instantiation lives in exactly one unit.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "../fill_many.h"
#include "../sample_spec.h"
#include "index_map.h"

namespace nspl {

struct LaunchStream;
// A planned launch, run once the stream is known.
using Launch = std::function<void(const LaunchStream&)>;

// The launch that fills one tensor of dtype scalar_t (any strides; `dims` from merge_dims,
// `base` its first element's global index) with the contiguous or the strided kernel:
// every check that can fail is made here (fill_kernels.cuh, fill_cuda_<dtype>.cu).
template <typename scalar_t>
Launch plan_fill_dtype(const at::Tensor& self, const SampleSpec& spec, const std::vector<cuda_map::Dim>& dims,
                       int64_t base);

// The table launches of the bulk op for `group`, its batchable tensors of dtype scalar_t,
// appended to `launches` (bulk_kernel.cuh, fill_many_cuda_<dtype>.cu). slot_keys: the
// tensors' keys differ, so each slot brings its own.
template <typename scalar_t>
void plan_tables(const std::vector<const ManyFillItem*>& group, bool slot_keys, std::vector<Launch>* launches);

// Whether the bulk kernel's table (its kernel argument, up to 32 KiB where the toolkit
// and driver are CUDA 12.1 or later) can be launched on this machine; if not, the bulk op
// sends every tensor through the per-tensor kernels (fill_many_cuda.cu).
bool bulk_tables_supported();

#define NSPL_FOR_EACH_CUDA_DTYPE(_) \
  _(float)                          \
  _(double)                         \
  _(c10::Half)                      \
  _(c10::BFloat16)

#define NSPL_DECLARE_UNIT(scalar_t)                                                                            \
  extern template Launch plan_fill_dtype<scalar_t>(const at::Tensor&, const SampleSpec&,                       \
                                                   const std::vector<cuda_map::Dim>&, int64_t);                \
  extern template void plan_tables<scalar_t>(const std::vector<const ManyFillItem*>&, bool, std::vector<Launch>*);
NSPL_FOR_EACH_CUDA_DTYPE(NSPL_DECLARE_UNIT)
#undef NSPL_DECLARE_UNIT

}  // namespace nspl
