// The C++ functions of nspl_filler/init.h: each calls its op through the dispatcher, so C++
// callers get the kernels of every backend, the checks and the autograd/version-counter
// handling that Python gets.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>

#include "nspl_filler/init.h"

namespace nspl {
namespace {

using OptionalGenerator = std::optional<at::Generator>;
using OptionalShape = at::OptionalIntArrayRef;

// The typed handle of op `name`, found once: the schema is registered when this library loads.
template <typename Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// symmetric_uniform_ and normal_ share one signature: (self, width, seed, offset, ...).
using OneParameterSignature = void(const at::Tensor&, double, std::optional<int64_t>, int64_t, OptionalGenerator,
                                   OptionalShape, OptionalShape);

}  // namespace

at::Tensor nspl_(const at::Tensor& tensor, const NsplOptions& options, const Stream& stream) {
  static const auto op =
      op_handle<void(const at::Tensor&, c10::string_view, double, double, double, std::optional<double>,
                     std::optional<double>, std::optional<int64_t>, int64_t, OptionalGenerator, OptionalShape,
                     OptionalShape)>("nspl_filler::nspl_");
  const at::NoGradGuard no_grad;
  op.call(tensor, variance_norm_name(options.mode), options.alpha, options.ratio, options.gain, options.fan_in,
          options.fan_out, stream.seed, stream.offset, stream.generator, std::nullopt, std::nullopt);
  return tensor;
}

at::Tensor symmetric_power_law_(const at::Tensor& tensor, double alpha, double low, double high,
                                const Stream& stream) {
  static const auto op =
      op_handle<void(const at::Tensor&, double, double, double, std::optional<int64_t>, int64_t, OptionalGenerator,
                     OptionalShape, OptionalShape)>("nspl_filler::symmetric_power_law_");
  const at::NoGradGuard no_grad;
  op.call(tensor, alpha, low, high, stream.seed, stream.offset, stream.generator, std::nullopt, std::nullopt);
  return tensor;
}

at::Tensor symmetric_uniform_(const at::Tensor& tensor, double bound, const Stream& stream) {
  static const auto op = op_handle<OneParameterSignature>("nspl_filler::symmetric_uniform_");
  const at::NoGradGuard no_grad;
  op.call(tensor, bound, stream.seed, stream.offset, stream.generator, std::nullopt, std::nullopt);
  return tensor;
}

at::Tensor normal_(const at::Tensor& tensor, double std, const Stream& stream) {
  static const auto op = op_handle<OneParameterSignature>("nspl_filler::normal_");
  const at::NoGradGuard no_grad;
  op.call(tensor, std, stream.seed, stream.offset, stream.generator, std::nullopt, std::nullopt);
  return tensor;
}

at::Tensor trunc_normal_(const at::Tensor& tensor, const TruncNormalOptions& options, const Stream& stream) {
  static const auto op =
      op_handle<void(const at::Tensor&, double, double, double, double, std::optional<int64_t>, int64_t,
                     OptionalGenerator, OptionalShape, OptionalShape)>("nspl_filler::trunc_normal_");
  const at::NoGradGuard no_grad;
  op.call(tensor, options.mean, options.std, options.a, options.b, stream.seed, stream.offset, stream.generator,
          std::nullopt, std::nullopt);
  return tensor;
}

}  // namespace nspl
