// The nspl_filler operators as C++ functions (the header is named like torch/nn/init.h).
// Each fills `tensor` in place (float16, bfloat16, float32 or float64; any strides; CPU or
// CUDA) and returns it, through the dispatcher (torch.ops.nspl_filler.*), so it runs the
// same checks and kernels as Python.
// Like torch::nn::init they run without recording autograd. Bad arguments raise
// c10::ValueError or c10::TypeError naming the argument before anything is written.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "nspl_filler/fans.h"
#include "nspl_filler/stream.h"

namespace nspl {

// The default power law (docs/spec.md §2) and gain (sqrt(2), He et al.).
constexpr double kDefaultAlpha = 1.0;
constexpr double kDefaultRatio = 100.0;
constexpr double kDefaultGain = 1.4142135623730951;

// Settings of the normalised fill.
struct NsplOptions {
  VarianceNorm mode = VarianceNorm::FanIn;  // which fan is n
  double alpha = kDefaultAlpha;             // exponent of the magnitude density, any finite value
  double ratio = kDefaultRatio;             // r = max |w| / min |w|, finite and > 1
  double gain = kDefaultGain;               // the variance is gain² / n
  std::optional<double> fan_in;             // replaces the tensor's fan_in (needed below 2 dims)
  std::optional<double> fan_out;            // replaces the tensor's fan_out
};

// NSPL: |w| = c·y with y on [1, r] of density ∝ y^-alpha, a fair random sign, and c such that
// Var[w] = gain² / n, n from the tensor's fans (torch's rule: 2 dims at least, or explicit fans).
at::Tensor nspl_(const at::Tensor& tensor, const NsplOptions& options = {}, const Stream& stream = {});

// The raw power law: |w| in [low, high] with density ∝ |w|^-alpha, a fair random sign.
at::Tensor symmetric_power_law_(const at::Tensor& tensor, double alpha, double low, double high,
                                const Stream& stream = {});

// Uniform on (-bound, bound), bound > 0: |v|·bound with |v| = ((w >> 8) | 1)·2^-24 (float64:
// ((v >> 11) | 1)·2^-53 of the element's 64 bits) and the sign from bit 0 (docs/sampling.md).
at::Tensor symmetric_uniform_(const at::Tensor& tensor, double bound, const Stream& stream = {});

// Normal with mean 0 and standard deviation `std` > 0, by inversion: std·sqrt(2)·erfinv(|v|), |v|
// as for symmetric_uniform_, with the sign from bit 0 of the word.
at::Tensor normal_(const at::Tensor& tensor, double std, const Stream& stream = {});

// The truncated normal's parameters, with torch.nn.init.trunc_normal_'s defaults: a and b
// are absolute bounds, not in units of std.
struct TruncNormalOptions {
  double mean = 0.0;  // finite
  double std = 1.0;   // finite, > 0
  double a = -2.0;    // lower bound, may be -infinity
  double b = 2.0;     // upper bound, > a, may be +infinity
};

// N(mean, std²) truncated to [a, b], by the exact inverse CDF (no rejection: each value is a
// function of its element's place in the stream), every value in [a, b] after rounding to the
// dtype (docs/spec.md §2b).
at::Tensor trunc_normal_(const at::Tensor& tensor, const TruncNormalOptions& options = {}, const Stream& stream = {});

}  // namespace nspl
