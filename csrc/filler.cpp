#include "filler.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <utility>

namespace nspl {
namespace {

// The ops are called through the dispatcher, so a Filler works on every device the
// library has a kernel for.
using OptGen = std::optional<at::Generator>;
using OptShape = at::OptionalIntArrayRef;

const auto& nspl_op_handle() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("nspl_filler::nspl_", "")
          .typed<void(const at::Tensor&, c10::string_view, double, double, double,
                      std::optional<double>, std::optional<double>, std::optional<int64_t>,
                      int64_t, OptGen, OptShape, OptShape)>();
  return op;
}

const auto& power_law_op_handle() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("nspl_filler::symmetric_power_law_", "")
          .typed<void(const at::Tensor&, double, double, double, std::optional<int64_t>, int64_t,
                      OptGen, OptShape, OptShape)>();
  return op;
}

// symmetric_uniform_ and normal_ share one signature: (self, width, seed, offset, ...).
using OneParamSignature = void(const at::Tensor&, double, std::optional<int64_t>, int64_t, OptGen,
                               OptShape, OptShape);
using OneParamOp = c10::TypedOperatorHandle<OneParamSignature>;

OneParamOp one_param_op(const char* qualified_name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(qualified_name, "").typed<OneParamSignature>();
}

}  // namespace

Filler::Filler(FillerParameter param) : param_(std::move(param)) {}

void Filler::Fill(const at::Tensor& tensor) {
  // The fans are read before the op checks the tensor: a nested or sparse one has none.
  check_fillable(tensor);
  const at::NoGradGuard no_grad;
  if (!param_.seed) {
    FillWith(tensor, std::nullopt, 0);
    return;
  }
  // A meta tensor goes through the op too: nothing is written, the op's checks are made, and
  // the stream advances, so positions in it depend on shapes alone.
  const std::lock_guard<std::mutex> lock(stream_mutex_);
  FillWith(tensor, param_.seed, static_cast<int64_t>(offset_));
  offset_ += blocks_for(tensor.numel(), tensor.scalar_type());
}

uint64_t Filler::offset() const {
  const std::lock_guard<std::mutex> lock(stream_mutex_);
  return offset_;
}

double Filler::VarianceFan(const at::Tensor& tensor) const {
  TORCH_CHECK_VALUE(tensor.dim() >= 1, "nspl_filler: a Caffe filler needs a blob with at least one axis, got shape ",
                    tensor.sizes());
  const Fans fans = compute_fans(tensor.sizes(), std::nullopt, std::nullopt, param_.variance_norm,
                                 /*caffe_1d=*/true);
  return variance_fan(fans, param_.variance_norm);
}

void NsplFiller::FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) {
  const double n = tensor.numel() == 0 ? 1.0 : VarianceFan(tensor);
  const auto& p = filler_param();
  nspl_op_handle().call(tensor, variance_norm_name(VarianceNorm::FanIn), p.alpha, p.ratio, p.gain, n, n,
                        seed, offset, std::nullopt, std::nullopt, std::nullopt);
}

void SymmetricPowerLawFiller::FillWith(const at::Tensor& tensor, std::optional<int64_t> seed,
                                       int64_t offset) {
  const auto& p = filler_param();
  power_law_op_handle().call(tensor, p.alpha, p.min, p.max, seed, offset, std::nullopt, std::nullopt,
                             std::nullopt);
}

void XavierFiller::FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) {
  const double n = tensor.numel() == 0 ? 1.0 : VarianceFan(tensor);
  static const OneParamOp op = one_param_op("nspl_filler::symmetric_uniform_");
  op.call(tensor, std::sqrt(3.0 / n), seed, offset, std::nullopt, std::nullopt, std::nullopt);
}

void MSRAFiller::FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) {
  const double n = tensor.numel() == 0 ? 1.0 : VarianceFan(tensor);
  static const OneParamOp op = one_param_op("nspl_filler::normal_");
  op.call(tensor, std::sqrt(2.0 / n), seed, offset, std::nullopt, std::nullopt, std::nullopt);
}

std::unique_ptr<Filler> GetFiller(const FillerParameter& param) {
  if (param.type == "nspl") {
    check_power_law(param.alpha, param.ratio);
    check_positive("gain", param.gain);
    return std::make_unique<NsplFiller>(param);
  }
  if (param.type == "symmetric_power_law") {
    power_law_spec(param.alpha, param.min, param.max);
    return std::make_unique<SymmetricPowerLawFiller>(param);
  }
  if (param.type == "xavier") return std::make_unique<XavierFiller>(param);
  if (param.type == "msra") return std::make_unique<MSRAFiller>(param);
  TORCH_CHECK_VALUE(false, "nspl_filler: unknown filler type '", param.type,
                    "' (expected 'nspl', 'symmetric_power_law', 'xavier' or 'msra')");
}

}  // namespace nspl
