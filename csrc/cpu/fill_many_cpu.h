// CPU kernel of the bulk op nspl_many_, instantiated in fill_cpu.cpp with the CPU FillFn
// and the CPU stream so that every tensor goes through exactly the per-tensor CPU path.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../fill.h"
#include "../fill_many.h"

namespace nspl {

// Tensors dealt out whole go to threads in tasks of about this many elements: some tens of
// microseconds of sampling, far above the cost of handing out a task.
constexpr int64_t kElementsPerTask = 1 << 13;
// From this size on a tensor is split across threads on its own: its sampling (some
// hundreds of microseconds) dwarfs a parallel region, and splitting it keeps the threads
// evenly loaded, which dealing out a few large tensors whole would not.
constexpr int64_t kSplitElements = 1 << 16;

using StreamFn = StreamPosition (*)(std::optional<int64_t> seed, int64_t offset,
                                    const std::optional<at::Generator>& generator);

// One C++ call for the whole list. A call that brings its keys (a seed, or one key per
// tensor) fills tensor k from block offsets[k] of its key; otherwise one key is drawn from
// the torch generator for the whole call, and tensor k takes its blocks offsets[k], ...
//
// Threads: a large tensor is filled by `fill`, which splits it across threads itself. The
// small ones are dealt out whole across threads (a nested at::parallel_for runs inline):
// one by one, most would be below the grain at which `fill` splits and would run one after
// another on one thread. Values depend only on element indices, so neither the split nor
// the thread count changes them.
template <FillFn fill, StreamFn stream>
void nspl_many_cpu(const ManyFillArgs& args) {
  const std::vector<ManyFillItem> items = plan_nspl_many(args);
  int64_t total = 0;
  for (const auto& item : items) total += item.writes() ? item.tensor.numel() : 0;
  // Like nspl_, a call that writes nothing draws nothing from the generator.
  if (total == 0) return;
  const bool own_keys = explicit_keys(args.seed, args.keys);
  const StreamPosition drawn = own_keys ? StreamPosition{} : stream(std::nullopt, 0, args.generator);
  const auto fill_item = [&](const ManyFillItem& item) {
    fill(item.tensor, item.spec, static_cast<int64_t>(own_keys ? item.key : drawn.key),
         static_cast<int64_t>(drawn.offset + item.offset), std::nullopt, item.view);
  };

  std::vector<const ManyFillItem*> dealt;
  int64_t dealt_elements = 0;
  for (const auto& item : items) {
    if (!item.writes()) continue;
    if (item.tensor.numel() >= kSplitElements) {
      fill_item(item);
    } else {
      dealt.push_back(&item);
      dealt_elements += item.tensor.numel();
    }
  }
  if (dealt.empty()) return;
  // Together below the size at which one tensor is split, the small tensors run on this
  // thread: the parallel region would cost more than it saves, and on a machine whose cores
  // are busy its barrier can wait for a whole scheduler time slice.
  if (dealt_elements < kSplitElements) {
    for (const ManyFillItem* item : dealt) fill_item(*item);
    return;
  }
  const int64_t per_task = std::max<int64_t>(
      1, static_cast<int64_t>(dealt.size()) * kElementsPerTask / dealt_elements);
  at::parallel_for(0, static_cast<int64_t>(dealt.size()), per_task, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) fill_item(*dealt[j]);
  });
}

}  // namespace nspl
