// The op schemas of the nspl_filler library, defined once; each backend registers its
// kernels in its own file (TORCH_LIBRARY_IMPL), the fake kernels are in Python.
#include <torch/library.h>

#include <charconv>
#include <string>

#include "nspl_filler/init.h"

namespace {

// A float default in a schema: the shortest decimal that reads back as `value`, with a point.
std::string schema_float(double value) {
  char digits[32];
  const auto result = std::to_chars(digits, digits + sizeof digits, value);
  std::string text(digits, result.ptr);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

TORCH_LIBRARY(nspl_filler, m) {
  // nspl_'s defaults are NsplOptions' (nspl_filler/init.h), which Python reads from _C too.
  const nspl::NsplOptions defaults;
  const std::string nspl_schema =
      std::string("nspl_(Tensor(a!) self, str variance_norm=\"") + nspl::variance_norm_name(defaults.mode) +
      "\", float alpha=" + schema_float(defaults.alpha) + ", float ratio=" + schema_float(defaults.ratio) +
      ", float gain=" + schema_float(defaults.gain) +
      ", float? fan_in=None, float? fan_out=None, int? seed=None, int offset=0, Generator? generator=None, "
      "int[]? global_shape=None, int[]? global_start=None) -> ()";
  m.def(nspl_schema.c_str());
  m.def(
      "symmetric_power_law_(Tensor(a!) self, float alpha, float low, float high, int? seed=None, "
      "int offset=0, Generator? generator=None, int[]? global_shape=None, "
      "int[]? global_start=None) -> ()");
  m.def(
      "symmetric_uniform_(Tensor(a!) self, float bound, int? seed=None, int offset=0, "
      "Generator? generator=None, int[]? global_shape=None, int[]? global_start=None) -> ()");
  m.def(
      "normal_(Tensor(a!) self, float std, int? seed=None, int offset=0, "
      "Generator? generator=None, int[]? global_shape=None, int[]? global_start=None) -> ()");
  // Bulk nspl_ over a list (fill_many.h): one gain and one first block per tensor, and the
  // keys of one seed for all, or of `keys`, one per tensor (streams by name, docs/spec.md §4b), or of
  // the generator; global_shapes / global_starts are the per-tensor global_shape /
  // global_start concatenated.
  // The mode argument is named variance_norm (Caffe's name): torch's auto_functionalized,
  // which torch.compile wraps mutating ops in, takes a parameter `mode` of its own.
  m.def(
      "nspl_many_(Tensor(a!)[] tensors, str variance_norm, float alpha, float ratio, float[] gains, "
      "int? seed, int[] offsets, Generator? generator=None, int[]? global_shapes=None, "
      "int[]? global_starts=None, int[]? keys=None) -> ()");
}
// Meta and fake tensors: nspl_filler/_extension.py registers the fake kernels, which check
// the arguments that do not depend on (possibly symbolic) shapes and write nothing.
