// Checks of the bulk op nspl_many_ (fill_many.h), shared by its CPU, CUDA and Meta kernels.
#include "fill_many.h"

#include "checks.h"

#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <string>
#include <utility>

namespace nspl {

namespace {

// [first byte, one past the last byte] that `t` can touch; strides are never negative.
std::pair<uintptr_t, uintptr_t> byte_span(const at::Tensor& t) {
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  const auto first = reinterpret_cast<uintptr_t>(t.data_ptr());
  return {first, first + static_cast<uintptr_t>((last + 1) * t.element_size())};
}

// The tensors of one call are written concurrently (across CPU threads, or within one
// CUDA launch), so two tensors that share memory would race where filling them one by one
// would not. After sorting by first byte, a span that begins before the furthest end seen
// so far may overlap an earlier tensor; at::get_overlap_status decides, and its "too hard
// to tell" (non-dense views) counts as sharing.
void check_disjoint(const std::vector<ManyFillItem>& items) {
  std::vector<size_t> order;
  std::vector<std::pair<uintptr_t, uintptr_t>> spans(items.size());
  for (size_t k = 0; k < items.size(); ++k) {
    if (!items[k].writes()) continue;
    spans[k] = byte_span(items[k].tensor);
    order.push_back(k);
  }
  const auto by_span = [&](size_t a, size_t b) { return spans[a] < spans[b]; };
  // Tensors allocated one after another, as a model's often are, come in order already.
  if (!std::is_sorted(order.begin(), order.end(), by_span)) std::sort(order.begin(), order.end(), by_span);
  // `reach` is the item, among those seen, whose span ends last.
  for (size_t j = 1, reach = 0; j < order.size(); ++j) {
    const size_t a = order[reach], b = order[j];
    if (spans[b].first < spans[a].second) {
      const auto status = at::get_overlap_status(items[a].tensor, items[b].tensor);
      TORCH_CHECK_VALUE(status == at::MemOverlapStatus::No, "nspl_filler: tensors ", std::min(a, b),
                        " and ", std::max(a, b),
                        " may share memory; a bulk fill writes its tensors concurrently, so pass "
                        "each tensor (and each memory region) once");
    }
    if (spans[b].second > spans[a].second) reach = j;
  }
}

}  // namespace

void check_many_arguments(size_t n, c10::string_view mode, double alpha, double ratio,
                          at::ArrayRef<double> gains, bool has_seed, at::IntArrayRef offsets,
                          bool has_generator, at::OptionalIntArrayRef keys) {
  TORCH_CHECK_VALUE(gains.size() == n && offsets.size() == n, "nspl_filler: ", n,
                    " tensors need one gain and one offset each, got ", gains.size(), " gains and ",
                    offsets.size(), " offsets");
  TORCH_CHECK_VALUE(!(has_seed && has_generator), "nspl_filler: pass seed or generator, not both");
  if (keys) {
    TORCH_CHECK_VALUE(!has_seed && !has_generator, "nspl_filler: keys give every tensor its key; pass them without ",
                      has_seed ? "seed" : "generator");
    TORCH_CHECK_VALUE(keys->size() == n, "nspl_filler: ", n, " tensors need one key each, got ", keys->size(),
                      " keys");
  }
  parse_variance_norm(mode);
  check_power_law(alpha, ratio);
  for (size_t k = 0; k < n; ++k) {
    check_positive("gain", gains[k]);
    TORCH_CHECK_VALUE(offsets[k] >= 0, "nspl_filler: offset of tensor ", k, " must be >= 0, got ",
                      offsets[k]);
  }
}

namespace {

// Every check of nspl_many_ but the one on memory; items only for tensors of concrete sizes
// (a tensor whose sizes are symbols gets the checks that do not need them).
std::vector<ManyFillItem> check_items(at::TensorList tensors, c10::string_view mode, double alpha,
                                      double ratio, at::ArrayRef<double> gains, bool has_seed,
                                      at::IntArrayRef offsets, bool has_generator,
                                      at::OptionalIntArrayRef global_shapes,
                                      at::OptionalIntArrayRef global_starts, at::OptionalIntArrayRef keys) {
  const size_t n = tensors.size();
  check_many_arguments(n, mode, alpha, ratio, gains, has_seed, offsets, has_generator, keys);
  TORCH_CHECK_VALUE(global_shapes.has_value() || !global_starts.has_value(),
                    "nspl_filler: global_starts needs global_shapes");
  int64_t total_dims = 0;
  for (const auto& t : tensors) total_dims += t.dim();
  TORCH_CHECK_VALUE(!global_shapes || static_cast<int64_t>(global_shapes->size()) == total_dims,
                    "nspl_filler: global_shapes must hold one entry per dimension of every tensor (",
                    total_dims, "), got ", global_shapes->size());
  TORCH_CHECK_VALUE(!global_starts || static_cast<int64_t>(global_starts->size()) == total_dims,
                    "nspl_filler: global_starts must hold one entry per dimension of every tensor (",
                    total_dims, "), got ", global_starts->size());

  std::vector<ManyFillItem> items;
  items.reserve(n);
  size_t dim_at = 0;
  size_t like_gain = 0;  // the index of the last item's gain
  for (size_t k = 0; k < n; ++k) {
    const at::Tensor& t = tensors[k];
    check_fillable(t);
    TORCH_CHECK_VALUE(t.device() == tensors[0].device(),
                      "nspl_filler: all tensors of one bulk fill must be on one device; tensor 0 is on ",
                      tensors[0].device(), ", tensor ", k, " on ", t.device());
    const size_t nd = static_cast<size_t>(t.dim());
    at::OptionalIntArrayRef shape, start;
    if (global_shapes) shape = global_shapes->slice(dim_at, nd);
    if (global_starts) start = global_starts->slice(dim_at, nd);
    dim_at += nd;
    if (!has_concrete_shape(t)) continue;
    ManyFillItem item;
    item.tensor = t;
    item.view = ShardView::make(t, shape, start);
    // The spec and its range check depend on (global sizes, gain, dtype) alone (mode, alpha
    // and ratio are the call's): a run of like tensors, as a model's repeated layers give,
    // works them out once.
    const ManyFillItem* like = items.empty() ? nullptr : &items.back();
    if (like != nullptr && like->view.global_sizes == item.view.global_sizes && gains[k] == gains[like_gain] &&
        like->tensor.scalar_type() == t.scalar_type()) {
      item.spec = like->spec;
    } else {
      item.spec = nspl_spec(item.view.global_sizes, mode, alpha, ratio, gains[k], std::nullopt,
                            std::nullopt, /*caffe_1d=*/false);
      check_range(item.spec, t.scalar_type());
    }
    like_gain = k;
    const uint64_t blocks = blocks_for(item.view.global_numel(), t.scalar_type());
    if (!stream_has_room(offsets[k], blocks)) check_stream_room(offsets[k], blocks, ("tensor " + std::to_string(k)).c_str());
    item.offset = static_cast<uint64_t>(offsets[k]);
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

std::vector<ManyFillItem> plan_nspl_many(const ManyFillArgs& args) {
  std::vector<ManyFillItem> items =
      check_items(args.tensors, args.mode, args.alpha, args.ratio, args.gains, args.seed.has_value(), args.offsets,
                  args.generator.has_value() && args.generator->defined(), args.global_shapes, args.global_starts,
                  args.keys);
  TORCH_INTERNAL_ASSERT(items.size() == args.tensors.size(),
                        "nspl_filler: an eager kernel got a tensor with symbolic sizes");
  check_disjoint(items);
  for (size_t k = 0; k < items.size(); ++k) {
    if (args.keys) {
      items[k].key = static_cast<uint64_t>((*args.keys)[k]);
    } else if (args.seed) {
      items[k].key = static_cast<uint64_t>(*args.seed);
    }
  }
  return items;
}

void check_nspl_many(at::TensorList tensors, c10::string_view mode, double alpha, double ratio,
                     at::ArrayRef<double> gains, bool has_seed, at::IntArrayRef offsets, bool has_generator,
                     at::OptionalIntArrayRef global_shapes, at::OptionalIntArrayRef global_starts,
                     at::OptionalIntArrayRef keys, bool check_memory) {
  const std::vector<ManyFillItem> items = check_items(tensors, mode, alpha, ratio, gains, has_seed, offsets,
                                                      has_generator, global_shapes, global_starts, keys);
  if (check_memory) check_disjoint(items);
}

uint64_t stream_extent(const std::vector<ManyFillItem>& items) {
  uint64_t extent = 0;
  for (const auto& item : items) {
    const uint64_t end = item.offset + blocks_for(item.view.global_numel(), item.tensor.scalar_type());
    extent = std::max(extent, end);
  }
  return extent;
}

}  // namespace nspl
