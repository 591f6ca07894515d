// A Caffe-style filler API: FillerParameter, a Filler base with Fill(tensor), one filler per
// type and the GetFiller factory. Caffe's family (constant, uniform, gaussian,
// positive_unitball, xavier, msra, bilinear) with Caffe's laws, and nspl_filler's own (nspl,
// symmetric_power_law), all on the Philox stream of the ops (nspl_filler/init.h).
//
// Fans follow Caffe exactly (fan_in = count / shape(0), fan_out = count / shape(1), and a
// 1-D blob of n has fan_in = 1, fan_out = n). A seeded filler is a stream of its own: each
// Fill consumes the blocks it uses (BlocksFor), so successive fills differ and a filler
// re-created with the same seed repeats them; constant and bilinear use none. An unseeded
// filler draws from the default generator of the tensor's device. Fill runs without
// recording autograd (as torch::nn::init does) and may be called from several threads: each
// fill of a seeded filler takes its own blocks of the stream. A bad parameter raises
// c10::ValueError when the filler is made; a tensor the filler cannot fill raises before
// anything is written and consumes no blocks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "nspl_filler/fans.h"
#include "nspl_filler/init.h"

namespace nspl {

// Caffe's FillerParameter fields, with Caffe's defaults, and nspl_filler's (alpha, ratio, gain,
// seed). Each filler reads only its own fields.
struct FillerParameter {
  // "nspl" (the default here; Caffe's is "constant"), "symmetric_power_law", "trunc_normal",
  // "constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra" or "bilinear".
  std::string type = "nspl";
  double value = 0.0;  // constant: the value
  double min = 0.0;    // uniform, trunc_normal: lower bound; symmetric_power_law: smallest |w| (> 0)
  double max = 1.0;    // uniform, trunc_normal: upper bound; symmetric_power_law: largest |w|
  double mean = 0.0;   // gaussian, trunc_normal
  double std = 1.0;    // gaussian, trunc_normal: standard deviation, > 0
  // gaussian: -1 for a dense fill; k >= 0 keeps each value with probability k / shape(0), so
  // each column of an InnerProduct weight (outputs × inputs) has k non-zeros on average.
  int64_t sparse = -1;
  VarianceNorm variance_norm = VarianceNorm::FanIn;  // xavier, msra, nspl: which fan is n
  double alpha = kDefaultAlpha;  // nspl, symmetric_power_law: exponent of the magnitude density
  double ratio = kDefaultRatio;  // nspl: r = max |w| / min |w|
  double gain = kDefaultGain;    // nspl: the variance is gain² / n
  std::optional<int64_t> seed;   // the stream's key; absent: torch's default generator
};

class Filler {
 public:
  explicit Filler(FillerParameter param);
  virtual ~Filler() = default;
  Filler(const Filler&) = delete;
  Filler& operator=(const Filler&) = delete;

  // Fills `tensor` in place (float16/bfloat16/float32/float64, any strides, CPU or CUDA;
  // meta tensors are checked and advance the stream, and nothing is written). A fill that
  // raises writes nothing and consumes no blocks.
  void Fill(const at::Tensor& tensor);
  const FillerParameter& filler_param() const { return param_; }
  // Blocks of the stream consumed so far (seeded fillers).
  uint64_t offset() const;
  // Blocks one fill of `tensor` consumes.
  virtual uint64_t BlocksFor(const at::Tensor& tensor) const;

 protected:
  // n of variance_norm from the tensor's Caffe fans.
  double VarianceFan(const at::Tensor& tensor) const;

 private:
  // Checks `tensor` against the filler's rules, then fills it from `stream`.
  virtual void FillWith(const at::Tensor& tensor, const Stream& stream) = 0;

  FillerParameter param_;
  // Held from reading offset_ until the fill that uses it has advanced it, so fills from
  // several threads take consecutive, distinct blocks and a fill that raises takes none.
  mutable std::mutex stream_mutex_;
  uint64_t offset_ = 0;
};

// The filler types, each with its law:
//   Nspl              NSPL (docs/spec.md §2): the symmetric truncated power law with variance
//                     gain² / n.
//   SymmetricPowerLaw |w| in [min, max] with density ∝ |w|^-alpha and a fair random sign, not
//                     normalised.
//   TruncNormal       N(mean, std²) truncated to [min, max] (torch.nn.init.trunc_normal_ with
//                     a = min, b = max: absolute bounds), by the exact inverse CDF; every value
//                     lies in [min, max] after rounding.
//   Constant          every value is `value`; consumes no blocks.
//   Uniform           uniform on [min, max] (min <= max; min == max gives min everywhere):
//                     Caffe's UniformFiller.
//   Gaussian          gaussian with `mean` and `std`; with sparse = k >= 0, each value is kept
//                     with probability k / shape(0) and the rest are 0 (the mask takes blocks
//                     of its own, after the gaussian's).
//   PositiveUnitball  uniform on (0, 1), then each of the shape(0) rows divided by its sum:
//                     every row is a point of the positive part of the unit L1 sphere. The
//                     uniforms have float32 resolution whatever the dtype, so that the row sums
//                     are exact and the values the same for every layout and device.
//   Xavier            Caffe's XavierFiller: uniform on ±sqrt(3 / n).
//   Msra              Caffe's MSRAFiller: gaussian with mean 0 and std sqrt(2 / n).
//   Bilinear          the kernel of bilinear upsampling for a deconvolution with a (C, 1, K, K)
//                     weight (K square): with f = ceil(K / 2) and c = (K - 1) / (2f),
//                     w[.., y, x] = (1 - |x / f - c|)·(1 - |y / f - c|). A 4-D tensor with equal
//                     last two sizes; consumes no blocks.
// FillerParameter::type names them in snake case ("nspl", "symmetric_power_law", ...,
// "positive_unitball", "msra").
enum class FillerType : int {
  Nspl,
  SymmetricPowerLaw,
  TruncNormal,
  Constant,
  Uniform,
  Gaussian,
  PositiveUnitball,
  Xavier,
  Msra,
  Bilinear,
};

// A filler of one of the types above, by the law its type names; checks the parameters it
// reads when it is made.
class TypedFiller : public Filler {
 public:
  TypedFiller(FillerType type, FillerParameter param);
  FillerType type() const { return type_; }
  uint64_t BlocksFor(const at::Tensor& tensor) const override;

 private:
  void FillWith(const at::Tensor& tensor, const Stream& stream) override;

  FillerType type_;
};

// The filler of type `kType` under a name of its own, as Caffe names its fillers:
// `nspl::XavierFiller filler(param); filler.Fill(weight);`.
template <FillerType kType>
class FillerOf final : public TypedFiller {
 public:
  explicit FillerOf(FillerParameter param) : TypedFiller(kType, std::move(param)) {}
};

using NsplFiller = FillerOf<FillerType::Nspl>;
using SymmetricPowerLawFiller = FillerOf<FillerType::SymmetricPowerLaw>;
using TruncNormalFiller = FillerOf<FillerType::TruncNormal>;
using ConstantFiller = FillerOf<FillerType::Constant>;
using UniformFiller = FillerOf<FillerType::Uniform>;
using GaussianFiller = FillerOf<FillerType::Gaussian>;
using PositiveUnitballFiller = FillerOf<FillerType::PositiveUnitball>;
using XavierFiller = FillerOf<FillerType::Xavier>;
using MSRAFiller = FillerOf<FillerType::Msra>;
using BilinearFiller = FillerOf<FillerType::Bilinear>;

// The filler named by param.type; ValueError for an unknown type or a bad parameter.
std::unique_ptr<Filler> GetFiller(const FillerParameter& param);

}  // namespace nspl
