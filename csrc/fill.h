// Host-side pieces shared by every backend: what to sample (SampleSpec), where each
// element sits in the random stream (ShardView; blocks_for is in nspl_filler/stream.h, the
// fans in nspl_filler/fans.h), argument checking and the op bodies. A backend provides one
// function, FillFn, and registers the op bodies instantiated with it (see op_table.h).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/OptionalArrayRef.h>
#include <c10/util/SmallVector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nspl_filler/fans.h"
#include "nspl_filler/stream.h"
#include "nspl_math.h"
#include "sample_spec.h"

namespace nspl {

// Maps each element of the tensor being filled to its logical row-major index in a
// (possibly larger) global tensor: the tensor is the block of `global_sizes` that starts
// at `starts`. Unsharded, global_sizes are the tensor's own sizes and starts are zero.
struct ShardView {
  // Inline for up to 6 dims: a bulk fill makes a view per tensor, and 10^5 of them would
  // otherwise cost 10^5 trips to the heap each.
  using Dims = c10::SmallVector<int64_t, 6>;
  Dims local_sizes;
  Dims global_sizes;
  Dims global_strides;  // row-major strides of global_sizes
  int64_t base = 0;                     // global index of local element (0, ..., 0)
  // True when local logical index i maps to global index base + i.
  bool affine = true;

  static ShardView make(const at::Tensor& self, at::OptionalIntArrayRef global_shape,
                        at::OptionalIntArrayRef global_start);
  int64_t global_numel() const;
};

// A backend: fill `self` (already checked, non-empty, not meta) with `spec`. With a seed
// the stream is (seed, offset); without, it comes from `generator` or the default
// generator of self's device.
using FillFn = void (*)(const at::Tensor& self, const SampleSpec& spec,
                        std::optional<int64_t> seed, int64_t offset,
                        const std::optional<at::Generator>& generator, const ShardView& view);

// Argument checks: ValueError naming the argument and value.
void check_finite(const char* name, double value);
void check_positive(const char* name, double value);
void check_power_law(double alpha, double ratio);
void check_offset(int64_t offset);
// TypeError for unsupported dtypes and layouts, ValueError for elements that may share
// memory (see Note [A sufficient test for distinct elements] in fill.cpp).
void check_fillable(const at::Tensor& self);
// Whether a tensor of these sizes and strides has no two elements at one memory offset,
// by a sufficient test that every slice, step, transpose and permute of a dense tensor passes.
bool elements_are_distinct(c10::IntArrayRef sizes, c10::IntArrayRef strides);

// The power law of nspl_: its c from the gain and the fans of `global_sizes`.
PowerLawSpec nspl_spec(c10::IntArrayRef global_sizes, c10::string_view mode, double alpha,
                       double ratio, double gain, std::optional<double> fan_in,
                       std::optional<double> fan_out, bool caffe_1d);

// Fills a tensor that passed its op's checks (checks.h), unless there is nothing to write.
void run_fill(FillFn fill, const at::Tensor& self, const SampleSpec& spec,
              std::optional<int64_t> seed, int64_t offset,
              const std::optional<at::Generator>& generator, const ShardView& view);

}  // namespace nspl
