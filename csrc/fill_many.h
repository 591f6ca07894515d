// Host side of the bulk op nspl_many_: every tensor of one call checked, with its sample
// spec, shard view and place in the stream, before any backend writes anything.
//
// The stream of a bulk call (docs/spec.md §4, §4b): tensor k takes the blocks offsets[k],
// offsets[k] + 1, ... of its key, which is `seed` (one key for the call), keys[k] (one key per
// tensor: streams by name), or that of the position a backend reserves from the torch
// generator once for the whole call (its offsets then count from the reserved block). With one
// seed and offsets[k] = offsets[k-1] + blocks of tensor k-1 the call gives exactly the values
// of filling the tensors one by one from an nspl_filler.Generator; with keys[k] the key of
// tensor k's name and offsets[k] = 0, the values of its name alone.
//
// An explicit call (seed or keys) gives each item its key and draws no position; a call on a
// generator draws one position, whose key every item takes (items keep key 0).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/OptionalArrayRef.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "fill.h"

namespace nspl {

// One tensor of a bulk call.
struct ManyFillItem {
  at::Tensor tensor;
  PowerLawSpec spec;  // the bulk op fills with nspl_'s law alone
  ShardView view;
  uint64_t offset = 0;                // first block, relative to the call's stream position
  uint64_t key = 0;                   // the tensor's key in an explicit call, else 0
  bool writes() const { return tensor.numel() > 0 && !tensor.is_meta(); }
};

// The arguments of one nspl_many_ call, in the order of its schema (schemas.cpp).
// global_shapes / global_starts, when given, are the per-tensor global_shape / global_start
// of nspl_ concatenated: tensor k takes the next tensors[k].dim() entries.
struct ManyFillArgs {
  at::TensorList tensors;
  c10::string_view mode;
  double alpha;
  double ratio;
  at::ArrayRef<double> gains;
  std::optional<int64_t> seed;
  at::IntArrayRef offsets;
  std::optional<at::Generator> generator;
  at::OptionalIntArrayRef global_shapes;
  at::OptionalIntArrayRef global_starts;
  at::OptionalIntArrayRef keys;
};

// The kernel a backend registers for nspl_many_: the schema's arguments, gathered for the
// backend's `run`.
template <void (*run)(const ManyFillArgs&)>
void nspl_many_kernel(at::TensorList tensors, c10::string_view mode, double alpha, double ratio,
                      at::ArrayRef<double> gains, std::optional<int64_t> seed, at::IntArrayRef offsets,
                      std::optional<at::Generator> generator, at::OptionalIntArrayRef global_shapes,
                      at::OptionalIntArrayRef global_starts, at::OptionalIntArrayRef keys) {
  run(ManyFillArgs{tensors, mode, alpha, ratio, gains, seed, offsets, std::move(generator), global_shapes,
                   global_starts, keys});
}

// Checks every argument of nspl_many_ (the same checks as nspl_ for each tensor, plus: one
// device for all, one gain and one offset per tensor, one key per tensor when keys are given,
// at most one of seed, keys and generator, each tensor's blocks inside the stream, no two
// tensors sharing memory) and returns the items. Throws before anything is written.
std::vector<ManyFillItem> plan_nspl_many(const ManyFillArgs& args);

// True when a call's keys are its own (a seed or one key per tensor), so it draws nothing
// from a generator.
inline bool explicit_keys(const std::optional<int64_t>& seed, at::OptionalIntArrayRef keys) {
  return seed.has_value() || keys.has_value();
}

// Blocks of the stream a call spans from its stream position: max over items of
// offset + blocks of the item's global tensor (a shard advances the stream as far as the
// whole tensor, so every rank reserves the same range).
uint64_t stream_extent(const std::vector<ManyFillItem>& items);

// The checks of nspl_many_'s arguments other than the tensors (list lengths, seed, keys or
// generator, mode, alpha, ratio, gains, offsets).
void check_many_arguments(size_t n, c10::string_view mode, double alpha, double ratio,
                          at::ArrayRef<double> gains, bool has_seed, at::IntArrayRef offsets,
                          bool has_generator, at::OptionalIntArrayRef keys);

// The checks of plan_nspl_many without a plan, for the fake kernel (nspl_filler/_extension.py)
// and for bulk calls that check every device's group before writing any: all of them but
// those that need the sizes of a tensor whose sizes are symbols, and the one on memory only
// with check_memory (fake and meta tensors have none).
void check_nspl_many(at::TensorList tensors, c10::string_view mode, double alpha, double ratio,
                     at::ArrayRef<double> gains, bool has_seed, at::IntArrayRef offsets, bool has_generator,
                     at::OptionalIntArrayRef global_shapes, at::OptionalIntArrayRef global_starts,
                     at::OptionalIntArrayRef keys, bool check_memory);

}  // namespace nspl
