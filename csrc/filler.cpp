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
#include <string>
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

// n of variance_norm from the tensor's Caffe fans.
double caffe_variance_fan(const FillerParameter& p, const at::Tensor& tensor) {
  TORCH_CHECK_VALUE(tensor.dim() >= 1, "nspl_filler: a Caffe filler needs a blob with at least one axis, got shape ",
                    tensor.sizes());
  const Fans fans = compute_fans(tensor.sizes(), std::nullopt, std::nullopt, p.variance_norm, /*caffe_1d=*/true);
  return variance_fan(fans, p.variance_norm);
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

double Filler::VarianceFan(const at::Tensor& tensor) const { return caffe_variance_fan(param_, tensor); }

namespace {

// ---------------------------------------------------------------------------------
// Caffe's family
// ---------------------------------------------------------------------------------
void check_constant(const FillerParameter& p) {
  check_dense(p);
  check_finite("value", p.value);
}

void fill_constant(const FillerParameter& p, const at::Tensor& tensor, const Stream&) {
  const double value = p.value;
  check_fits(std::fabs(value), tensor.scalar_type());
  tensor.fill_(value);
}

void check_uniform(const FillerParameter& p) {
  check_dense(p);
  check_finite("min", p.min);
  check_finite("max", p.max);
  TORCH_CHECK_VALUE(p.min <= p.max, "nspl_filler: the uniform filler needs min <= max, got min = ", p.min,
                    ", max = ", p.max);
}

void fill_uniform(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
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

void check_gaussian(const FillerParameter& p) {
  check_finite("mean", p.mean);
  check_positive("std", p.std);
  TORCH_CHECK_VALUE(p.sparse >= -1, "nspl_filler: sparse must be -1 (dense) or >= 0, got ", p.sparse);
}

uint64_t gaussian_blocks(const FillerParameter& p, const at::Tensor& tensor) {
  const uint64_t values = blocks_for(tensor.numel(), tensor.scalar_type());
  // The mask draws one float32 word per element.
  return p.sparse >= 0 ? values + blocks_for(tensor.numel(), c10::kFloat) : values;
}

void fill_gaussian(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
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

uint64_t positive_unitball_blocks(const FillerParameter&, const at::Tensor& tensor) {
  return blocks_for(tensor.numel(), c10::kFloat);
}

void fill_positive_unitball(const FillerParameter&, const at::Tensor& tensor, const Stream& stream) {
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

void fill_xavier(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
  const double n = tensor.numel() == 0 ? 1.0 : caffe_variance_fan(p, tensor);
  symmetric_uniform_(tensor, std::sqrt(3.0 / n), stream);
}

void fill_msra(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
  const double n = tensor.numel() == 0 ? 1.0 : caffe_variance_fan(p, tensor);
  normal_(tensor, std::sqrt(2.0 / n), stream);
}

void fill_bilinear(const FillerParameter&, const at::Tensor& tensor, const Stream&) {
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
void check_nspl_filler(const FillerParameter& p) {
  check_dense(p);
  check_power_law(p.alpha, p.ratio);
  check_positive("gain", p.gain);
}

void fill_nspl(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
  const double n = tensor.numel() == 0 ? 1.0 : caffe_variance_fan(p, tensor);
  nspl_(tensor, NsplOptions{VarianceNorm::FanIn, p.alpha, p.ratio, p.gain, n, n}, stream);
}

void check_symmetric_power_law_filler(const FillerParameter& p) {
  check_dense(p);
  TORCH_CHECK_VALUE(std::isfinite(p.min) && std::isfinite(p.max) && 0 < p.min && p.min < p.max,
                    "nspl_filler: the symmetric_power_law filler needs finite 0 < min < max (the bounds of |w|), "
                    "got min = ", p.min, ", max = ", p.max);
  power_law_spec(p.alpha, p.min, p.max);
}

void fill_symmetric_power_law(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
  symmetric_power_law_(tensor, p.alpha, p.min, p.max, stream);
}

void check_trunc_normal_filler(const FillerParameter& p) {
  check_dense(p);
  trunc_normal_spec(p.mean, p.std, p.min, p.max);
}

void fill_trunc_normal(const FillerParameter& p, const at::Tensor& tensor, const Stream& stream) {
  trunc_normal_(tensor, TruncNormalOptions{p.mean, p.std, p.min, p.max}, stream);
}

uint64_t no_blocks(const FillerParameter&, const at::Tensor&) { return 0; }

// The law of a filler type: its name in FillerParameter::type, the check of the parameters
// it reads, the blocks one fill consumes (nullptr: those of its values, Filler::BlocksFor)
// and the fill itself (a fill checks the tensor before it writes).
struct FillerLaw {
  FillerType type;
  const char* name;
  void (*check)(const FillerParameter&);
  uint64_t (*blocks)(const FillerParameter&, const at::Tensor&);
  void (*fill)(const FillerParameter&, const at::Tensor&, const Stream&);
};

// Every filler type's law, in FillerType's order (GetFiller's error lists them so).
constexpr FillerLaw kFillerLaws[] = {
    {FillerType::Nspl, "nspl", check_nspl_filler, nullptr, fill_nspl},
    {FillerType::SymmetricPowerLaw, "symmetric_power_law", check_symmetric_power_law_filler, nullptr,
     fill_symmetric_power_law},
    {FillerType::TruncNormal, "trunc_normal", check_trunc_normal_filler, nullptr, fill_trunc_normal},
    {FillerType::Constant, "constant", check_constant, no_blocks, fill_constant},
    {FillerType::Uniform, "uniform", check_uniform, nullptr, fill_uniform},
    {FillerType::Gaussian, "gaussian", check_gaussian, gaussian_blocks, fill_gaussian},
    {FillerType::PositiveUnitball, "positive_unitball", check_dense, positive_unitball_blocks, fill_positive_unitball},
    {FillerType::Xavier, "xavier", check_dense, nullptr, fill_xavier},
    {FillerType::Msra, "msra", check_dense, nullptr, fill_msra},
    {FillerType::Bilinear, "bilinear", check_dense, no_blocks, fill_bilinear},
};
constexpr size_t kFillerTypes = sizeof(kFillerLaws) / sizeof(kFillerLaws[0]);

constexpr bool laws_in_enum_order() {
  for (size_t k = 0; k < kFillerTypes; ++k) {
    if (static_cast<size_t>(kFillerLaws[k].type) != k) return false;
  }
  return true;
}
static_assert(laws_in_enum_order() && kFillerTypes == static_cast<size_t>(FillerType::Bilinear) + 1,
              "kFillerLaws holds one law per FillerType, in the enum's order");

const FillerLaw& law_of(FillerType type) {
  const auto k = static_cast<size_t>(type);
  TORCH_CHECK_VALUE(k < kFillerTypes, "nspl_filler: unknown FillerType ", static_cast<int>(type));
  return kFillerLaws[k];
}

// The FillerOf of `type`, so that GetFiller's filler is the class Caffe's name gives it.
template <size_t... K>
std::unique_ptr<Filler> make_filler(FillerType type, const FillerParameter& param, std::index_sequence<K...>) {
  std::unique_ptr<Filler> filler;
  ((static_cast<size_t>(type) == K ? (void)(filler = std::make_unique<FillerOf<static_cast<FillerType>(K)>>(param))
                                   : void()),
   ...);
  return filler;
}

}  // namespace

TypedFiller::TypedFiller(FillerType type, FillerParameter param) : Filler(std::move(param)), type_(type) {
  law_of(type_).check(filler_param());
}

uint64_t TypedFiller::BlocksFor(const at::Tensor& tensor) const {
  const FillerLaw& law = law_of(type_);
  return law.blocks != nullptr ? law.blocks(filler_param(), tensor) : Filler::BlocksFor(tensor);
}

void TypedFiller::FillWith(const at::Tensor& tensor, const Stream& stream) {
  law_of(type_).fill(filler_param(), tensor, stream);
}

std::unique_ptr<Filler> GetFiller(const FillerParameter& param) {
  for (const FillerLaw& law : kFillerLaws) {
    if (param.type == law.name) return make_filler(law.type, param, std::make_index_sequence<kFillerTypes>{});
  }
  std::string known;
  for (size_t k = 0; k < kFillerTypes; ++k) {
    known += std::string(k == 0 ? "'" : k + 1 == kFillerTypes ? " or '" : ", '") + kFillerLaws[k].name + "'";
  }
  TORCH_CHECK_VALUE(false, "nspl_filler: unknown filler type '", param.type, "' (expected ", known, ")");
}

}  // namespace nspl
