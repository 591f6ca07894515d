// A Caffe-style filler API over the nspl_filler ops: FillerParameter, a Filler base with
// Fill(tensor), NsplFiller, XavierFiller, MSRAFiller and the GetFiller factory.
//
// Fans follow Caffe exactly (fan_in = count / shape(0), fan_out = count / shape(1), and a
// 1-D blob of n has fan_in = 1, fan_out = n). A seeded filler is a stream of its own: each
// Fill consumes the blocks it uses, so successive fills differ and a filler re-created with
// the same seed repeats them. An unseeded filler draws from torch's default generator.
// Fill runs without recording autograd (as torch::nn::init does) and may be called from
// several threads: each fill of a seeded filler takes its own blocks of the stream.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "fill.h"

namespace nspl {

struct FillerParameter {
  std::string type = "nspl";  // "nspl", "symmetric_power_law", "xavier", "msra"
  VarianceNorm variance_norm = VarianceNorm::FanIn;
  double alpha = 1.0;             // nspl, symmetric_power_law
  double ratio = 100.0;           // nspl: r = high / low
  double min = 0.01;              // symmetric_power_law: low
  double max = 1.0;               // symmetric_power_law: high
  double gain = 1.4142135623730951;  // nspl: target variance gain² / n (sqrt(2): He et al.)
  std::optional<int64_t> seed;    // absent: torch's default generator
};

class Filler {
 public:
  explicit Filler(FillerParameter param);
  virtual ~Filler() = default;
  Filler(const Filler&) = delete;
  Filler& operator=(const Filler&) = delete;

  // Fills `tensor` in place (float16/bfloat16/float32/float64, CPU or CUDA). A fill that
  // raises writes nothing and consumes no blocks.
  void Fill(const at::Tensor& tensor);
  const FillerParameter& filler_param() const { return param_; }
  // Blocks of the stream consumed so far (seeded fillers).
  uint64_t offset() const;

 protected:
  // n of variance_norm from the tensor's Caffe fans.
  double VarianceFan(const at::Tensor& tensor) const;

 private:
  virtual void FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) = 0;

  FillerParameter param_;
  // Held from reading offset_ until the fill that uses it has advanced it, so fills from
  // several threads take consecutive, distinct blocks and a fill that raises takes none.
  mutable std::mutex stream_mutex_;
  uint64_t offset_ = 0;
};

// NSPL: symmetric truncated power law with variance gain² / n (SPEC §2).
class NsplFiller final : public Filler {
 public:
  using Filler::Filler;

 private:
  void FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) override;
};

// |w| in [min, max] with density ∝ |w|^-alpha, no normalisation.
class SymmetricPowerLawFiller final : public Filler {
 public:
  using Filler::Filler;

 private:
  void FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) override;
};

// Caffe's XavierFiller: uniform on ±sqrt(3 / n).
class XavierFiller final : public Filler {
 public:
  using Filler::Filler;

 private:
  void FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) override;
};

// Caffe's MSRAFiller: gaussian with std sqrt(2 / n).
class MSRAFiller final : public Filler {
 public:
  using Filler::Filler;

 private:
  void FillWith(const at::Tensor& tensor, std::optional<int64_t> seed, int64_t offset) override;
};

// The filler named by param.type; ValueError for an unknown type or a bad parameter.
std::unique_ptr<Filler> GetFiller(const FillerParameter& param);

}  // namespace nspl
