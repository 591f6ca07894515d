// What each op refuses: one check function per op, holding every rule of the contract that
// can turn a fill away (docs/spec.md §5). The op bodies (op_table.h, every backend) call it before
// they write; the fake kernels (nspl_filler/_extension.py, through bindings.cpp) call the
// same function, so a meta tensor or a traced program is refused exactly where eager is.
//
// Tracing may give tensors whose sizes are symbols. The checks then make every test that
// does not depend on sizes (dtype, layout, arguments, stream) and return std::nullopt; with
// concrete sizes they make all of them and return what the fill samples and where.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/OptionalArrayRef.h>

#include <cstdint>
#include <optional>

#include "fill.h"

namespace nspl {

// A fill that passed its checks: the distribution and where the tensor sits in its global
// tensor.
struct CheckedFill {
  SampleSpec spec;
  ShardView view;
};

// How a fill chooses its stream: an explicit seed (with `offset`) or a generator (torch's or
// the device's default). `has_generator` is true for a defined torch generator.
struct StreamArgs {
  std::optional<int64_t> seed;
  int64_t offset = 0;
  bool has_generator = false;
};

// True when `self`'s sizes and strides are numbers (not symbols of a traced program).
bool has_concrete_shape(const at::Tensor& self);

// ValueError unless blocks [offset, offset + blocks) lie in the stream: offset >= 0, and the
// offset after them is still an int64, so a Generator that made the fill can carry on from it.
void check_stream_room(int64_t offset, uint64_t blocks, const char* what);
// Whether blocks [offset, offset + blocks) lie inside the stream (what check_stream_room checks).
bool stream_has_room(int64_t offset, uint64_t blocks);

// The checks of each op, in argument order of its schema.
std::optional<CheckedFill> check_nspl(const at::Tensor& self, c10::string_view variance_norm,
                                      double alpha, double ratio, double gain,
                                      std::optional<double> fan_in, std::optional<double> fan_out,
                                      const StreamArgs& stream, at::OptionalIntArrayRef global_shape,
                                      at::OptionalIntArrayRef global_start);
std::optional<CheckedFill> check_symmetric_power_law(const at::Tensor& self, double alpha, double low,
                                                     double high, const StreamArgs& stream,
                                                     at::OptionalIntArrayRef global_shape,
                                                     at::OptionalIntArrayRef global_start);
std::optional<CheckedFill> check_symmetric_uniform(const at::Tensor& self, double bound,
                                                   const StreamArgs& stream,
                                                   at::OptionalIntArrayRef global_shape,
                                                   at::OptionalIntArrayRef global_start);
std::optional<CheckedFill> check_normal(const at::Tensor& self, double std, const StreamArgs& stream,
                                        at::OptionalIntArrayRef global_shape,
                                        at::OptionalIntArrayRef global_start);

std::optional<CheckedFill> check_trunc_normal(const at::Tensor& self, double mean, double std, double a, double b,
                                              const StreamArgs& stream, at::OptionalIntArrayRef global_shape,
                                              at::OptionalIntArrayRef global_start);

// torch's rule for in-place writes to inference tensors (RuntimeError outside InferenceMode),
// made before anything is written.
void check_inplace_allowed(const at::Tensor& self);

}  // namespace nspl
