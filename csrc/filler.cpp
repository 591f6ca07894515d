// The Caffe-style fillers of nspl_filler/filler.h. The random ones compose the ops
// (symmetric_uniform_, normal_, nspl_, symmetric_power_law_, trunc_normal_: one Philox stream, every backend)
// with ATen's element-wise ops, so no filler has a kernel of its own and each runs wherever
// the ops do; the deterministic ones (constant, bilinear) are ATen ops alone.
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "checks.h"
#include "fill.h"
#include "nspl_filler/filler.h"

namespace nspl {
namespace {

// Caffe refuses `sparse` in every filler but the gaussian.
void check_dense(const FillerParameter& p) {
  TORCH_CHECK_VALUE(p.sparse == -1, "nspl_filler: sparse applies to the 'gaussian' filler only; the '", p.type,
                    "' filler needs sparse = -1, got ", p.sparse);
}

// ValueError unless values of magnitude up to `largest` fit the dtype.
void check_fits(double largest, c10::ScalarType dtype) {
  if (largest > 0) check_range(uniform_spec(largest), dtype);
}

// Where a composed fill does its arithmetic: in the tensor itself when it is float32 or
// float64, else in a float32 tensor copied in at the end, so that a 16-bit result is rounded
// once. The ops give a 16-bit tensor its float32 values rounded and consume the same blocks
// (docs/spec.md §4), so the stream is the same either way.
at::Tensor working_tensor(const at::Tensor& tensor) {
  const auto dtype = tensor.scalar_type();
  if (dtype == c10::kFloat || dtype == c10::kDouble) return tensor;
  return at::empty(tensor.sizes(), tensor.options().dtype(c10::kFloat));
}

void commit(const at::Tensor& tensor, const at::Tensor& work) {
  if (!work.is_same(tensor)) tensor.copy_(work);
}

// The stream `blocks` further on: a seeded stream's offset moves, a generator moves itself.
Stream after(const Stream& stream, uint64_t blocks) {
  if (!stream.seed) return stream;
  return Stream::Seeded(*stream.seed, stream.offset + static_cast<int64_t>(blocks));
}

}  // namespace

// ---------------------------------------------------------------------------------
// Filler
// ---------------------------------------------------------------------------------
Filler::Filler(FillerParameter param) : param_(std::move(param)) {}

void Filler::Fill(const at::Tensor& tensor) {
  // The fans are read before the ops check the tensor: a nested or sparse one has none.
  check_fillable(tensor);
  check_inplace_allowed(tensor);
  const at::NoGradGuard no_grad;
  if (!param_.seed) {
    FillWith(tensor, Stream{});
    return;
  }
  // A meta tensor goes through the ops too: nothing is written, the checks are made, and
  // the stream advances, so positions in it depend on shapes alone.
  const std::lock_guard<std::mutex> lock(stream_mutex_);
  const uint64_t blocks = BlocksFor(tensor);
  // A filler that calls several ops must not write with the first and fail in the second.
  check_stream_room(static_cast<int64_t>(offset_), blocks, "the fill");
  FillWith(tensor, Stream::Seeded(*param_.seed, static_cast<int64_t>(offset_)));
  offset_ += blocks;
}

uint64_t Filler::offset() const {
  const std::lock_guard<std::mutex> lock(stream_mutex_);
  return offset_;
}

uint64_t Filler::BlocksFor(const at::Tensor& tensor) const { return blocks_for(tensor.numel(), tensor.scalar_type()); }

double Filler::VarianceFan(const at::Tensor& tensor) const {
  TORCH_CHECK_VALUE(tensor.dim() >= 1, "nspl_filler: a Caffe filler needs a blob with at least one axis, got shape ",
                    tensor.sizes());
  const Fans fans = compute_fans(tensor.sizes(), std::nullopt, std::nullopt, param_.variance_norm,
                                 /*caffe_1d=*/true);
  return variance_fan(fans, param_.variance_norm);
}

// ---------------------------------------------------------------------------------
// Caffe's family
// ---------------------------------------------------------------------------------
ConstantFiller::ConstantFiller(FillerParameter param) : Filler(std::move(param)) {
  check_dense(filler_param());
  check_finite("value", filler_param().value);
}

uint64_t ConstantFiller::BlocksFor(const at::Tensor&) const { return 0; }

void ConstantFiller::FillWith(const at::Tensor& tensor, const Stream&) {
  const double value = filler_param().value;
  check_fits(std::fabs(value), tensor.scalar_type());
  tensor.fill_(value);
}

UniformFiller::UniformFiller(FillerParameter param) : Filler(std::move(param)) {
  const auto& p = filler_param();
  check_dense(p);
  check_finite("min", p.min);
  check_finite("max", p.max);
  TORCH_CHECK_VALUE(p.min <= p.max, "nspl_filler: the uniform filler needs min <= max, got min = ", p.min,
                    ", max = ", p.max);
}

void UniformFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const auto& p = filler_param();
  const auto dtype = tensor.scalar_type();
  check_fits(std::max(std::fabs(p.min), std::fabs(p.max)), dtype);
  // Caffe's bounds are inclusive, and they hold for the values as stored: the clamp is to
  // the dtype's own values nearest to [min, max] from inside, and rounding the float32
  // work to a 16-bit dtype never crosses a value of that dtype.
  const auto [low, high] = dtype_values_within(p.min, p.max, dtype);
  TORCH_CHECK_VALUE(low <= high, "nspl_filler: the uniform filler's [min, max] = [", p.min, ", ", p.max,
                    "] holds no ", dtype, " value; widen it or use a wider dtype");
  const at::Tensor work = working_tensor(tensor);
  symmetric_uniform_(work, 1.0, stream);
  // v in (-1, 1) to mid + v·half; halved before adding so that no intermediate overflows.
  // The rounding of mid and half may step one ulp past a bound: the clamp repairs it.
  const double mid = 0.5 * p.min + 0.5 * p.max;
  const double half = 0.5 * p.max - 0.5 * p.min;
  work.mul_(half).add_(mid).clamp_(low, high);
  commit(tensor, work);
}

GaussianFiller::GaussianFiller(FillerParameter param) : Filler(std::move(param)) {
  const auto& p = filler_param();
  check_finite("mean", p.mean);
  check_positive("std", p.std);
  TORCH_CHECK_VALUE(p.sparse >= -1, "nspl_filler: sparse must be -1 (dense) or >= 0, got ", p.sparse);
}

uint64_t GaussianFiller::BlocksFor(const at::Tensor& tensor) const {
  const uint64_t values = blocks_for(tensor.numel(), tensor.scalar_type());
  // The mask draws one float32 word per element.
  return filler_param().sparse >= 0 ? values + blocks_for(tensor.numel(), c10::kFloat) : values;
}

void GaussianFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const auto& p = filler_param();
  check_fits(std::fabs(p.mean) + normal_spec(p.std).magnitude_high(), tensor.scalar_type());
  double keep = 1.0;
  if (p.sparse >= 0) {
    TORCH_CHECK_VALUE(tensor.dim() >= 1, "nspl_filler: a sparse gaussian fill needs a tensor with at least one "
                      "dimension (its outputs), got shape ", tensor.sizes());
    const int64_t outputs = tensor.size(0);
    TORCH_CHECK_VALUE(tensor.numel() == 0 || p.sparse <= outputs, "nspl_filler: sparse = ", p.sparse,
                      " non-zeros per input cannot exceed the ", outputs, " outputs (shape(0)) of shape ",
                      tensor.sizes());
    if (outputs > 0) keep = static_cast<double>(p.sparse) / static_cast<double>(outputs);
  }
  const at::Tensor work = working_tensor(tensor);
  normal_(work, p.std, stream);
  work.add_(p.mean);
  if (p.sparse >= 0) {
    // |v| of a symmetric variate is uniform on (0, 1): a value stays where it is below keep.
    const at::Tensor draw = at::empty(tensor.sizes(), tensor.options().dtype(c10::kFloat));
    symmetric_uniform_(draw, 1.0, after(stream, blocks_for(tensor.numel(), tensor.scalar_type())));
    work.masked_fill_(draw.abs_().ge(keep), 0.0);
  }
  commit(tensor, work);
}

PositiveUnitballFiller::PositiveUnitballFiller(FillerParameter param) : Filler(std::move(param)) {
  check_dense(filler_param());
}

uint64_t PositiveUnitballFiller::BlocksFor(const at::Tensor& tensor) const {
  return blocks_for(tensor.numel(), c10::kFloat);
}

void PositiveUnitballFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  TORCH_CHECK_VALUE(tensor.dim() >= 1, "nspl_filler: the positive_unitball filler needs a blob with at least one "
                    "axis (its rows), got shape ", tensor.sizes());
  // Every value is at least the dtype's smallest normal number, which a row's mean 1/n
  // must therefore be too (float16: rows of at most 16384 values).
  const int64_t row = tensor.size(0) == 0 ? 0 : tensor.numel() / tensor.size(0);
  const double smallest = dtype_min_normal(tensor.scalar_type());
  TORCH_CHECK_VALUE(row == 0 || 1.0 / static_cast<double>(row) >= smallest, "nspl_filler: the positive_unitball "
                    "filler cannot fill rows of ", row, " values (shape ", tensor.sizes(), ") in ",
                    tensor.scalar_type(), ": their mean 1/", row, " is below its smallest normal number ", smallest,
                    "; use a wider dtype");
  // The uniforms are float32 |v| = (2j + 1)·2^-24 whatever the dtype (never 0, so no row sums
  // to 0), which makes a row's sum in float64 exact in any order for rows below 2^29
  // elements: the values do not depend on the layout, the threads or the device.
  const at::Tensor uniform = at::empty(tensor.sizes(), tensor.options().dtype(c10::kFloat));
  symmetric_uniform_(uniform, 1.0, stream).abs_();
  std::vector<int64_t> row_dims(static_cast<size_t>(tensor.dim() - 1));
  std::iota(row_dims.begin(), row_dims.end(), int64_t{1});
  // A 1-D blob has rows of one element, each its own sum.
  const at::Tensor sums =
      row_dims.empty() ? uniform.to(c10::kDouble) : uniform.sum(row_dims, /*keepdim=*/true, c10::kDouble);
  // The quotient in float64, rounded to float32 unless the tensor is float64.
  const at::Tensor work = tensor.scalar_type() == c10::kDouble ? tensor.copy_(uniform) : uniform;
  work.div_(sums);
  // In 16-bit dtypes the smallest quotients would round to subnormals or to 0: raised to
  // the dtype's smallest normal (a float32 value too, and rounding never crosses it), so
  // every value is strictly positive and normal.
  work.clamp_min_(smallest);
  commit(tensor, work);
}

XavierFiller::XavierFiller(FillerParameter param) : Filler(std::move(param)) { check_dense(filler_param()); }

void XavierFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const double n = tensor.numel() == 0 ? 1.0 : VarianceFan(tensor);
  symmetric_uniform_(tensor, std::sqrt(3.0 / n), stream);
}

MSRAFiller::MSRAFiller(FillerParameter param) : Filler(std::move(param)) { check_dense(filler_param()); }

void MSRAFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const double n = tensor.numel() == 0 ? 1.0 : VarianceFan(tensor);
  normal_(tensor, std::sqrt(2.0 / n), stream);
}

BilinearFiller::BilinearFiller(FillerParameter param) : Filler(std::move(param)) { check_dense(filler_param()); }

uint64_t BilinearFiller::BlocksFor(const at::Tensor&) const { return 0; }

void BilinearFiller::FillWith(const at::Tensor& tensor, const Stream&) {
  TORCH_CHECK_VALUE(tensor.dim() == 4 && tensor.size(2) == tensor.size(3),
                    "nspl_filler: the bilinear filler needs a 4-D weight (outputs, inputs, K, K) with a square "
                    "kernel, got shape ", tensor.sizes());
  const int64_t k = tensor.size(3);
  if (tensor.numel() == 0) return;
  // With f = ceil(K / 2) and c = (K - 1) / (2f), 1 - |x / f - c| = (2f - |2x - (K - 1)|) / (2f):
  // integer numerators, so each weight is one correctly rounded division of two integers.
  const int64_t two_f = 2 * ((k + 1) / 2);
  const at::Tensor x = at::arange(k, tensor.options().dtype(c10::kLong));
  const at::Tensor numerator = x.mul(2).sub_(k - 1).abs_().neg_().add_(two_f);
  const at::Tensor kernel =
      numerator.unsqueeze(1).mul(numerator.unsqueeze(0)).to(c10::kDouble).div_(static_cast<double>(two_f * two_f));
  tensor.copy_(kernel.expand_as(tensor));
}

// ---------------------------------------------------------------------------------
// nspl_filler's own
// ---------------------------------------------------------------------------------
NsplFiller::NsplFiller(FillerParameter param) : Filler(std::move(param)) {
  const auto& p = filler_param();
  check_dense(p);
  check_power_law(p.alpha, p.ratio);
  check_positive("gain", p.gain);
}

void NsplFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const double n = tensor.numel() == 0 ? 1.0 : VarianceFan(tensor);
  const auto& p = filler_param();
  nspl_(tensor, NsplOptions{VarianceNorm::FanIn, p.alpha, p.ratio, p.gain, n, n}, stream);
}

SymmetricPowerLawFiller::SymmetricPowerLawFiller(FillerParameter param) : Filler(std::move(param)) {
  const auto& p = filler_param();
  check_dense(p);
  TORCH_CHECK_VALUE(std::isfinite(p.min) && std::isfinite(p.max) && 0 < p.min && p.min < p.max,
                    "nspl_filler: the symmetric_power_law filler needs finite 0 < min < max (the bounds of |w|), "
                    "got min = ", p.min, ", max = ", p.max);
  power_law_spec(p.alpha, p.min, p.max);
}

void SymmetricPowerLawFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const auto& p = filler_param();
  symmetric_power_law_(tensor, p.alpha, p.min, p.max, stream);
}

TruncNormalFiller::TruncNormalFiller(FillerParameter param) : Filler(std::move(param)) {
  const auto& p = filler_param();
  check_dense(p);
  trunc_normal_spec(p.mean, p.std, p.min, p.max);
}

void TruncNormalFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  const auto& p = filler_param();
  trunc_normal_(tensor, TruncNormalOptions{p.mean, p.std, p.min, p.max}, stream);
}

std::unique_ptr<Filler> GetFiller(const FillerParameter& param) {
  const std::string& type = param.type;
  if (type == "nspl") return std::make_unique<NsplFiller>(param);
  if (type == "symmetric_power_law") return std::make_unique<SymmetricPowerLawFiller>(param);
  if (type == "trunc_normal") return std::make_unique<TruncNormalFiller>(param);
  if (type == "constant") return std::make_unique<ConstantFiller>(param);
  if (type == "uniform") return std::make_unique<UniformFiller>(param);
  if (type == "gaussian") return std::make_unique<GaussianFiller>(param);
  if (type == "positive_unitball") return std::make_unique<PositiveUnitballFiller>(param);
  if (type == "xavier") return std::make_unique<XavierFiller>(param);
  if (type == "msra") return std::make_unique<MSRAFiller>(param);
  if (type == "bilinear") return std::make_unique<BilinearFiller>(param);
  TORCH_CHECK_VALUE(false, "nspl_filler: unknown filler type '", type,
                    "' (expected 'nspl', 'symmetric_power_law', 'trunc_normal', 'constant', 'uniform', 'gaussian', "
                    "'positive_unitball', 'xavier', 'msra' or 'bilinear')");
}

}  // namespace nspl
