// The checks of checks.h, shared by the ops' eager kernels (every backend) and their fake
// kernels.
#include "checks.h"

#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <limits>

namespace nspl {

bool has_concrete_shape(const at::Tensor& self) {
  return !self.unsafeGetTensorImpl()->has_symbolic_sizes_strides();
}

bool stream_has_room(int64_t offset, uint64_t blocks) {
  // Offsets travel through the ops as int64, so the stream of a key is the blocks below
  // 2^63 - 1: a fill may end there, and the next offset is still a valid argument.
  return offset >= 0 &&
         blocks <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - static_cast<uint64_t>(offset);
}

void check_stream_room(int64_t offset, uint64_t blocks, const char* what) {
  check_offset(offset);
  TORCH_CHECK_VALUE(stream_has_room(offset, blocks), "nspl_filler: ", what, " needs ", blocks, " blocks from offset ", offset,
                    ", past the end of the stream (offset + blocks must be <= 2^63 - 1); start from a "
                    "lower offset or another seed");
}

namespace {

void check_stream_args(const StreamArgs& stream) {
  TORCH_CHECK_VALUE(!(stream.seed && stream.has_generator), "nspl_filler: pass seed or generator, not both");
  check_offset(stream.offset);
}

}  // namespace

std::optional<ShardView> check_target(const at::Tensor& self, const StreamArgs& stream,
                                      at::OptionalIntArrayRef global_shape,
                                      at::OptionalIntArrayRef global_start) {
  check_fillable(self);
  check_stream_args(stream);
  if (!has_concrete_shape(self)) return std::nullopt;
  ShardView view = ShardView::make(self, global_shape, global_start);
  check_stream_room(stream.offset, blocks_for(view.global_numel(), self.scalar_type()), "the fill");
  return view;
}

std::optional<CheckedFill> with_spec(const at::Tensor& self, std::optional<ShardView> view,
                                     const SampleSpec& spec) {
  check_range(spec, self.scalar_type());
  if (!view) return std::nullopt;
  return CheckedFill{spec, std::move(*view)};
}

std::optional<CheckedFill> check_nspl(const at::Tensor& self, c10::string_view variance_norm,
                                      double alpha, double ratio, double gain,
                                      std::optional<double> fan_in, std::optional<double> fan_out,
                                      const StreamArgs& stream, at::OptionalIntArrayRef global_shape,
                                      at::OptionalIntArrayRef global_start) {
  std::optional<ShardView> view = check_target(self, stream, global_shape, global_start);
  if (!view) {
    // The scale needs the fans, which need the sizes; the rest can be checked now.
    parse_variance_norm(variance_norm);
    check_power_law(alpha, ratio);
    check_positive("gain", gain);
    if (fan_in) check_positive("fan_in", *fan_in);
    if (fan_out) check_positive("fan_out", *fan_out);
    return std::nullopt;
  }
  const PowerLawSpec spec =
      nspl_spec(view->global_sizes, variance_norm, alpha, ratio, gain, fan_in, fan_out, /*caffe_1d=*/false);
  return with_spec(self, std::move(view), spec);
}

void check_inplace_allowed(const at::Tensor& self) {
  // An inference tensor has no version counter, so no graph can see a write to it: torch
  // allows one only inside InferenceMode, where no graph is recorded.
  TORCH_CHECK(!self.is_inference() || c10::InferenceMode::is_enabled(),
              "Inplace update to inference tensor outside InferenceMode is not allowed. You can make a "
              "clone to get a normal tensor before doing inplace update (nspl_filler follows torch's rule "
              "for in-place ops).");
}

}  // namespace nspl
