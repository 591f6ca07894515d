// The op schemas of the nspl_filler library, defined once: the single-tensor ops from the op
// table (op_table.h), then the bulk op. Each backend registers its kernels in its own file
// (TORCH_LIBRARY_IMPL); the fake kernels are in Python (nspl_filler/_extension.py).
#include <torch/library.h>

#include "op_table.h"

TORCH_LIBRARY(nspl_filler, m) {
  ::nspl::for_each_op([&](auto op) { m.def(::nspl::op_schema<decltype(op)>().c_str()); });
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
