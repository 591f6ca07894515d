// What each op refuses: one check function per op (LawCheck's for an op whose parameters give
// its law alone), holding every rule of the contract that can turn a fill away (docs/spec.md
// §5). The op bodies (op_table.h, every backend) call it before they write; the fake kernels
// (nspl_filler/_extension.py, through bindings.cpp) call the same function, so a meta tensor
// or a traced program is refused exactly where eager is.
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
#include <tuple>
#include <utility>

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

// The check of nspl_, in argument order of its schema: its scale needs the fans.
std::optional<CheckedFill> check_nspl(const at::Tensor& self, c10::string_view variance_norm,
                                      double alpha, double ratio, double gain,
                                      std::optional<double> fan_in, std::optional<double> fan_out,
                                      const StreamArgs& stream, at::OptionalIntArrayRef global_shape,
                                      at::OptionalIntArrayRef global_start);
// The checks every op makes of its tensor and stream; std::nullopt when sizes are symbols,
// else the tensor's shard view. The blocks a fill consumes are those of the global tensor.
std::optional<ShardView> check_target(const at::Tensor& self, const StreamArgs& stream,
                                      at::OptionalIntArrayRef global_shape, at::OptionalIntArrayRef global_start);

// The fill of `spec` into `self` where `view` is its shard view, once `spec` fits the dtype
// (check_range); std::nullopt for symbolic sizes (no view), where the range is still checked.
std::optional<CheckedFill> with_spec(const at::Tensor& self, std::optional<ShardView> view, const SampleSpec& spec);

// The check of an op whose law its parameters give alone, through `spec_of(params...)` (the
// spec builders of sample_spec.h, which refuse out-of-domain values): the target's checks,
// then the law's range. Params is the op's std::tuple of parameter types.
template <auto spec_of, typename Params>
struct LawCheck;

template <auto spec_of, typename... Params>
struct LawCheck<spec_of, std::tuple<Params...>> {
  static std::optional<CheckedFill> check(const at::Tensor& self, Params... params, const StreamArgs& stream,
                                          at::OptionalIntArrayRef global_shape,
                                          at::OptionalIntArrayRef global_start) {
    std::optional<ShardView> view = check_target(self, stream, global_shape, global_start);
    return with_spec(self, std::move(view), spec_of(params...));
  }
};

// torch's rule for in-place writes to inference tensors (RuntimeError outside InferenceMode),
// made before anything is written.
void check_inplace_allowed(const at::Tensor& self);

}  // namespace nspl
