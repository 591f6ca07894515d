// Host side of the bulk op nspl_many_: every tensor of one call checked, with its sample
// spec, shard view and place in the stream, before any backend writes anything.
//
// The stream of a bulk call (SPEC §4): tensor k takes the blocks offsets[k], offsets[k] + 1,
// ... of the call's stream position, which is (seed, 0) with an explicit seed, or the
// position a backend reserves from the torch generator once for the whole call. With
// offsets[k] = offsets[k-1] + blocks of tensor k-1 the call gives exactly the values of
// filling the tensors one by one from an nspl_filler.Generator.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/OptionalArrayRef.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "fill.h"

namespace nspl {

// One tensor of a bulk call.
struct ManyFillItem {
  at::Tensor tensor;
  SampleSpec spec;
  ShardView view;
  std::vector<int64_t> global_start;  // where the tensor sits in its global tensor
  uint64_t offset = 0;                // first block, relative to the call's stream position
  bool writes() const { return tensor.numel() > 0 && !tensor.is_meta(); }
};

// Checks every argument of nspl_many_ (the same checks as nspl_ for each tensor, plus: one
// device for all, one gain and one offset per tensor, each tensor's blocks inside the stream,
// no two tensors sharing memory) and returns the items. Throws before anything is written.
//
// global_shapes / global_starts, when given, are the per-tensor global_shape / global_start
// of nspl_ concatenated: tensor k takes the next tensors[k].dim() entries.
std::vector<ManyFillItem> plan_nspl_many(at::TensorList tensors, c10::string_view mode,
                                         double alpha, double ratio, at::ArrayRef<double> gains,
                                         std::optional<int64_t> seed, at::IntArrayRef offsets,
                                         const std::optional<at::Generator>& generator,
                                         at::OptionalIntArrayRef global_shapes,
                                         at::OptionalIntArrayRef global_starts);

// Blocks of the stream a call spans from its stream position: max over items of
// offset + blocks of the item's global tensor (a shard advances the stream as far as the
// whole tensor, so every rank reserves the same range).
uint64_t stream_extent(const std::vector<ManyFillItem>& items);

// The checks of nspl_many_'s arguments other than the tensors (list lengths, seed or
// generator, mode, alpha, ratio, gains, offsets).
void check_many_arguments(size_t n, c10::string_view mode, double alpha, double ratio,
                          at::ArrayRef<double> gains, bool has_seed, at::IntArrayRef offsets,
                          bool has_generator);
void check_many_arguments(size_t n, c10::string_view mode, double alpha, double ratio,
                          at::ArrayRef<double> gains, std::optional<int64_t> seed,
                          at::IntArrayRef offsets, const std::optional<at::Generator>& generator);

// The checks of plan_nspl_many without a plan, for the fake kernel (nspl_filler/_extension.py)
// and for bulk calls that check every device's group before writing any: all of them but
// those that need the sizes of a tensor whose sizes are symbols, and the one on memory only
// with check_memory (fake and meta tensors have none).
void check_nspl_many(at::TensorList tensors, c10::string_view mode, double alpha, double ratio,
                     at::ArrayRef<double> gains, bool has_seed, at::IntArrayRef offsets, bool has_generator,
                     at::OptionalIntArrayRef global_shapes, at::OptionalIntArrayRef global_starts,
                     bool check_memory);

}  // namespace nspl
