// The backend-independent host code of fill.h: argument checks, fans and the
// normalised spec, the shard view and run_fill.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <utility>
#include <vector>

#include "fill.h"

namespace nspl {


// ---------------------------------------------------------------------------------
// Argument checks
// ---------------------------------------------------------------------------------
void check_finite(const char* name, double value) {
  TORCH_CHECK_VALUE(std::isfinite(value), "nspl_filler: ", name, " must be finite, got ", value);
}

void check_positive(const char* name, double value) {
  TORCH_CHECK_VALUE(std::isfinite(value) && value > 0, "nspl_filler: ", name,
                    " must be finite and > 0, got ", value);
}

void check_power_law(double alpha, double ratio) {
  check_finite("alpha", alpha);
  TORCH_CHECK_VALUE(std::isfinite(ratio) && ratio > 1, "nspl_filler: ratio must be finite and > 1, got ",
                    ratio);
}

void check_offset(int64_t offset) {
  TORCH_CHECK_VALUE(offset >= 0, "nspl_filler: offset must be >= 0, got ", offset);
}

// Note [A sufficient test for distinct elements]
// Sort the dims of size > 1 by stride. If each stride exceeds the furthest that the dims of
// smaller stride reach together (the sum of their stride·(size - 1)), no two elements share
// memory: two index tuples that differ first, from the largest stride down, in dim k differ
// in memory by at least stride_k minus what the smaller dims reach, which is > 0.
// Every view that slicing, stepping, transposing or permuting makes of a dense tensor passes:
// its dims keep their dense order (a step cannot carry a dim's stride past the next larger
// dense stride while the dim keeps two elements), and each reaches less than the next larger
// dense stride. channels_last is such a permutation and the storage offset plays no part.
// A layout that fails may still be free of overlap (an exotic as_strided); it is refused,
// since the backends write elements concurrently and a shared one would be a race.
bool elements_are_distinct(c10::IntArrayRef sizes, c10::IntArrayRef strides) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (|stride|, size)
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 0) return true;
    if (sizes[d] > 1) dims.emplace_back(strides[d] < 0 ? -strides[d] : strides[d], sizes[d]);
  }
  std::sort(dims.begin(), dims.end());
  int64_t reach = 0;  // furthest element offset reachable by the dims seen so far
  for (const auto& [stride, size] : dims) {
    if (stride <= reach) return false;
    int64_t span = 0;
    if (c10::mul_overflows(stride, size - 1, &span) || c10::add_overflows(reach, span, &reach)) return false;
  }
  return true;
}

void check_fillable(const at::Tensor& self) {
  TORCH_CHECK_TYPE(self.defined(), "nspl_filler: tensor must be defined");
  TORCH_CHECK_TYPE(self.layout() == c10::kStrided && !self.is_quantized() && !self.is_nested(),
                   "nspl_filler: tensor must have a strided layout (not sparse, quantized or nested), got ",
                   self.is_quantized() ? std::string("quantized")
                   : self.is_nested()  ? std::string("nested")
                                       : c10::str(self.layout()));
  const auto dtype = self.scalar_type();
  TORCH_CHECK_TYPE(dtype == c10::kHalf || dtype == c10::kBFloat16 || dtype == c10::kFloat ||
                       dtype == c10::kDouble,
                   "nspl_filler: tensor dtype must be float16, bfloat16, float32 or float64, got ",
                   dtype);
  // Symbolic strides (a traced program) are checked when the program runs.
  if (self.unsafeGetTensorImpl()->has_symbolic_sizes_strides()) return;
  TORCH_CHECK_VALUE(elements_are_distinct(self.sizes(), self.strides()),
                    "nspl_filler: tensor of shape ", self.sizes(), " and strides ", self.strides(),
                    " may have elements that share memory (e.g. from expand(), unfold() or "
                    "as_strided()); fill a tensor whose elements are distinct, e.g. tensor.clone()");
}


// ---------------------------------------------------------------------------------
// Fans, variance_norm, scale
// ---------------------------------------------------------------------------------
VarianceNorm parse_variance_norm(c10::string_view mode) {
  std::string m(mode.data(), mode.size());
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& entry : kVarianceNormNames) {
    if (m == entry.name) return entry.norm;
  }
  TORCH_CHECK_VALUE(false, "nspl_filler: mode must be 'fan_in', 'fan_out' or 'average' (alias 'fan_avg'), got '",
                    std::string(mode.data(), mode.size()), "'");
}

const char* variance_norm_name(VarianceNorm norm) {
  for (const auto& entry : kVarianceNormNames) {
    if (entry.norm == norm) return entry.name;  // each norm's own name comes before its aliases
  }
  return "?";
}

Fans compute_fans(c10::IntArrayRef sizes, std::optional<double> fan_in,
                  std::optional<double> fan_out, VarianceNorm norm, bool caffe_1d) {
  if (fan_in) check_positive("fan_in", *fan_in);
  if (fan_out) check_positive("fan_out", *fan_out);
  Fans fans{0.0, 0.0};
  if (sizes.size() >= 2) {
    double receptive = 1.0;
    for (size_t d = 2; d < sizes.size(); ++d) receptive *= static_cast<double>(sizes[d]);
    fans.fan_in = static_cast<double>(sizes[1]) * receptive;
    fans.fan_out = static_cast<double>(sizes[0]) * receptive;
  } else if (caffe_1d && sizes.size() == 1) {
    fans.fan_in = 1.0;
    fans.fan_out = static_cast<double>(sizes[0]);
  } else {
    const bool need_in = norm != VarianceNorm::FanOut;
    const bool need_out = norm != VarianceNorm::FanIn;
    TORCH_CHECK_VALUE((!need_in || fan_in) && (!need_out || fan_out),
                      "nspl_filler: fans cannot be computed for a tensor with ", sizes.size(),
                      " dimension(s) (shape ", sizes, "); pass ",
                      norm == VarianceNorm::FanIn ? "fan_in=" : norm == VarianceNorm::FanOut ? "fan_out=" : "fan_in= and fan_out=",
                      " explicitly");
  }
  if (fan_in) fans.fan_in = *fan_in;
  if (fan_out) fans.fan_out = *fan_out;
  return fans;
}

double variance_fan(const Fans& fans, VarianceNorm norm) {
  switch (norm) {
    case VarianceNorm::FanIn:
      return fans.fan_in;
    case VarianceNorm::FanOut:
      return fans.fan_out;
    case VarianceNorm::Average:
      return 0.5 * (fans.fan_in + fans.fan_out);
  }
  return fans.fan_in;
}


PowerLawSpec nspl_spec(c10::IntArrayRef global_sizes, c10::string_view mode, double alpha,
                       double ratio, double gain, std::optional<double> fan_in,
                       std::optional<double> fan_out, bool caffe_1d) {
  const VarianceNorm norm = parse_variance_norm(mode);
  check_power_law(alpha, ratio);
  check_positive("gain", gain);
  int64_t numel = 1;
  for (auto s : global_sizes) numel *= s;
  PowerLawSpec spec{alpha, ratio};
  if (numel == 0 && !(fan_in && fan_out)) {
    // Nothing will be written; fans of an empty shape may be zero, which is not an error.
    if (fan_in) check_positive("fan_in", *fan_in);
    if (fan_out) check_positive("fan_out", *fan_out);
    return spec;
  }
  const Fans fans = compute_fans(global_sizes, fan_in, fan_out, norm, caffe_1d);
  const double n = variance_fan(fans, norm);
  TORCH_CHECK_VALUE(n > 0, "nspl_filler: ", variance_norm_name(norm), " must be > 0, got ", n,
                    " for shape ", global_sizes);
  spec.scale = normalised_scale(alpha, ratio, gain, n);
  return spec;
}


// ---------------------------------------------------------------------------------
// Shard view
// ---------------------------------------------------------------------------------
ShardView ShardView::make(const at::Tensor& self, at::OptionalIntArrayRef global_shape,
                          at::OptionalIntArrayRef global_start) {
  ShardView v;
  v.local_sizes.assign(self.sizes().begin(), self.sizes().end());
  const size_t nd = v.local_sizes.size();
  TORCH_CHECK_VALUE(global_shape.has_value() || !global_start.has_value(),
                    "nspl_filler: global_start needs global_shape");
  if (global_shape) {
    v.global_sizes.assign(global_shape->begin(), global_shape->end());
  } else {
    v.global_sizes = v.local_sizes;
  }
  ShardView::Dims starts;
  if (global_start) {
    starts.assign(global_start->begin(), global_start->end());
  } else {
    starts.assign(nd, 0);
  }
  TORCH_CHECK_VALUE(v.global_sizes.size() == nd && starts.size() == nd,
                    "nspl_filler: global_shape ", c10::IntArrayRef(v.global_sizes), " and global_start ",
                    c10::IntArrayRef(starts), " must each have one entry per dimension of the tensor ",
                    self.sizes());
  for (size_t d = 0; d < nd; ++d) {
    TORCH_CHECK_VALUE(starts[d] >= 0 && v.global_sizes[d] >= 0 &&
                          starts[d] + v.local_sizes[d] <= v.global_sizes[d],
                      "nspl_filler: the tensor of shape ", self.sizes(), " at global_start ",
                      c10::IntArrayRef(starts), " does not lie inside global_shape ",
                      c10::IntArrayRef(v.global_sizes));
  }
  v.global_strides.assign(nd, 1);
  for (size_t d = nd; d-- > 1;) v.global_strides[d - 1] = v.global_strides[d] * v.global_sizes[d];
  v.base = 0;
  for (size_t d = 0; d < nd; ++d) v.base += starts[d] * v.global_strides[d];
  // Consecutive local indices stay consecutive globally when every dim but the first
  // is whole (an unsharded tensor, or a shard along dim 0).
  v.affine = true;
  for (size_t d = 1; d < nd; ++d) v.affine = v.affine && v.local_sizes[d] == v.global_sizes[d];
  return v;
}

int64_t ShardView::global_numel() const {
  int64_t n = 1;
  for (auto s : global_sizes) n *= s;
  return n;
}

void run_fill(FillFn fill, const at::Tensor& self, const SampleSpec& spec,
              std::optional<int64_t> seed, int64_t offset,
              const std::optional<at::Generator>& generator, const ShardView& view) {
  if (self.numel() == 0 || self.is_meta()) return;
  fill(self, spec, seed, offset, generator, view);
}

}  // namespace nspl

