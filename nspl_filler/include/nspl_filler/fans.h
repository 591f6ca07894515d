// Fans and variance_norm (docs/spec.md §3): which n a variance gain² / n is taken over.
#pragma once

#include <c10/util/ArrayRef.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>

namespace nspl {

// Caffe's FillerParameter.VarianceNorm: n = fan_in, fan_out, or their mean.
enum class VarianceNorm : int32_t { FanIn = 0, FanOut = 1, Average = 2 };

// The names variance_norm takes, in any case: each norm's own name, then the alias "fan_avg"
// (torch.nn.init's word for the mean). Python reads this table (nspl_filler._C.MODE_ALIASES).
struct VarianceNormName {
  const char* name;
  VarianceNorm norm;
};
inline constexpr VarianceNormName kVarianceNormNames[] = {
    {"fan_in", VarianceNorm::FanIn},
    {"fan_out", VarianceNorm::FanOut},
    {"average", VarianceNorm::Average},
    {"fan_avg", VarianceNorm::Average},
};

// A name of kVarianceNormNames, any case; ValueError for anything else.
VarianceNorm parse_variance_norm(c10::string_view mode);
// "fan_in", "fan_out" or "average".
const char* variance_norm_name(VarianceNorm norm);

// The fans of a tensor, in elements.
struct Fans {
  double fan_in;
  double fan_out;
};

// (fan_in, fan_out) of a shape, as torch.nn.init and Caffe compute them:
// receptive = prod(sizes[2:]), fan_in = sizes[1]·receptive, fan_out = sizes[0]·receptive.
// With fewer than two dims: Caffe's rule (fan_in = 1, fan_out = numel) when caffe_1d, else a
// ValueError unless the fan that `norm` needs is given explicitly. An explicit fan_in or
// fan_out replaces the computed one and must be finite and > 0.
Fans compute_fans(c10::IntArrayRef sizes, std::optional<double> fan_in, std::optional<double> fan_out,
                  VarianceNorm norm, bool caffe_1d);

// n of `norm`: fan_in, fan_out or (fan_in + fan_out) / 2.
double variance_fan(const Fans& fans, VarianceNorm norm);

}  // namespace nspl
