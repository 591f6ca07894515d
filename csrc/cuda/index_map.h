// Where the CUDA kernels' threads write: the walk of each kernel over its units (one Philox
// block's elements of one tensor each), written once for the device and the host. The
// kernels call these walks with a visitor that computes the block and stores its lanes;
// tests/index_map_model.cpp runs the same walks on the CPU for every thread of a launch,
// over thousands of shapes, strides, shards and launch sizes, and checks that every element
// is written exactly once with the value of its global index (docs/spec.md §4).
//
// No torch and no CUDA types here, so plain g++ compiles it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../mul_high.h"

#if defined(__CUDACC__)
#define NSPL_MAP_HD __host__ __device__ __forceinline__
#else
#define NSPL_MAP_HD inline
#endif

namespace nspl {
namespace cuda_map {

// Dims of the strided walk after size-1 dims are dropped and mergeable ones merged;
// TensorIterator's limit, which no real tensor reaches.
constexpr int kMaxDims = 25;

// ---------------------------------------------------------------------------------
// Note [Division by an invariant divisor]
// Index arithmetic divides unit numbers by the same sizes in every thread, and a 64-bit
// hardware division is a subroutine of some hundred instructions. With l = ceil(log2 d) and
// m = floor(2^N·(2^l − d) / d) + 1 (N = 32 or 64, computed once on the host),
//   q = (t + ((n − t) >> min(l, 1))) >> max(l − 1, 0),  t = high half of m·n,
// is floor(n / d) for every N-bit n and 1 <= d < 2^N (Granlund & Montgomery, PLDI'94, §4):
// one multiply-high (mul_high.h), two shifts and two adds. tests/index_map_model.cpp checks
// it against plain division at the edges of the range and on random operands.
// ---------------------------------------------------------------------------------
// The unsigned type twice as wide as T, in which the host works the magic number out.
template <typename T>
struct Wider;
template <>
struct Wider<uint32_t> {
  using type = uint64_t;
};
template <>
struct Wider<uint64_t> {
  using type = unsigned __int128;
};

template <typename T>
struct Divider {
  static constexpr int kBits = 8 * static_cast<int>(sizeof(T));
  T divisor = 1, magic = 1;
  uint8_t shift1 = 0, shift2 = 0;

  Divider() = default;
  explicit Divider(T d) : divisor(d) {
    using W = typename Wider<T>::type;
    int l = 0;
    while (l < kBits && (W(1) << l) < d) ++l;
    magic = static_cast<T>(((W(1) << kBits) * ((W(1) << l) - d)) / d + 1);
    shift1 = static_cast<uint8_t>(l < 1 ? l : 1);
    shift2 = static_cast<uint8_t>(l > 1 ? l - 1 : 0);
  }
  NSPL_MAP_HD T div(T n) const {
    const T t = mul_high(magic, n);
    return (t + ((n - t) >> shift1)) >> shift2;
  }
};

// One unit of work: the lanes [lo, hi) of stream block `block` (relative to the fill's
// first block), where lane i is the element at storage offset first + i·step (in
// elements, from the data pointer). Offsets of the lanes outside [lo, hi) may lie outside
// the tensor and are never formed into addresses.
struct Unit {
  uint64_t block;
  int64_t first;
  int64_t step;
  int32_t lo, hi;
};

// ---------------------------------------------------------------------------------
// Contiguous: local element i has global index base + i and sits at offset i. Unit u is
// block base / per + u; its lane 0 is local element u·per − base % per. The units whose
// lanes all lie in the tensor (all but at most the first and the last) are visited by
// `whole(block, first)`, with nothing to test per lane; the partial ones at the ends by
// `edge(unit)`, after them.
// ---------------------------------------------------------------------------------
NSPL_MAP_HD int64_t contiguous_units(int64_t numel, int64_t base, int per) {
  return (base % per + numel + per - 1) / per;
}

template <int per, typename Whole, typename Edge>
NSPL_MAP_HD void walk_contiguous(int64_t numel, int64_t base, int64_t thread, int64_t threads, Whole&& whole,
                                 Edge&& edge) {
  const int64_t head = base % per;
  const uint64_t first_block = static_cast<uint64_t>(base / per);
  const int64_t units = contiguous_units(numel, base, per);
  // Whole units: [whole_begin, whole_end); the head unit is partial when base is not on a
  // block boundary, the tail unit when the tensor ends inside a block.
  const int64_t whole_begin = head == 0 ? 0 : 1;
  const int64_t whole_end = (head + numel) / per;
  for (int64_t u = whole_begin + thread; u < whole_end; u += threads) {
    whole(first_block + static_cast<uint64_t>(u), u * per - head);
  }
  const int64_t tail_begin = whole_end > whole_begin ? whole_end : whole_begin;
  const int64_t edges = (units - tail_begin) + whole_begin;  // the tail unit (0 or 1), then the head (0 or 1)
  for (int64_t j = thread; j < edges; j += threads) {
    const int64_t u = j < units - tail_begin ? tail_begin + j : 0;
    const int64_t begin = u * per - head;
    const int64_t lo = begin < 0 ? -begin : 0;
    const int64_t hi = numel - begin < per ? numel - begin : per;
    edge(Unit{first_block + static_cast<uint64_t>(u), begin, 1, static_cast<int32_t>(lo), static_cast<int32_t>(hi)});
  }
}

// ---------------------------------------------------------------------------------
// Strided: any strides, any shard. A row runs along the dim whose global stride is 1
// (the last logical dim); unit k of a row covers the row's elements of stream block
// (global index of the row's element 0) / per + k.
//
// Note [Walking strided tensors in memory order]
// Threads that are neighbours in a warp should write neighbouring addresses. So the unit
// number is cut into digits, one per dim, the fastest-varying digit belonging to the dim
// of smallest storage stride: for a transposed or channels_last tensor, neighbouring
// threads take neighbouring rows, and lane i of each writes the element next to its
// neighbour's lane i, one coalesced store per lane. Only the order of the units depends on
// the strides; each unit's values depend on its global indices alone.
// ---------------------------------------------------------------------------------
struct Dim {
  int64_t size, stride, global_stride;
};

// Drops size-1 dims and merges dim d into d+1 wherever both its storage and its global
// stride are those of d+1 times size(d+1): fewer digits per unit, and a contiguous
// unsharded tensor (or a shard along dim 0) becomes one dim of stride 1. The last dim
// returned is the row: its global stride is 1 (a size-1 row is added when the last
// logical dim was dropped, a shard one wide in it).
// (Each argument any container of int64_t with size() and [].)
template <typename Sizes, typename Strides, typename GlobalStrides>
std::vector<Dim> merge_dims(const Sizes& sizes, const Strides& strides, const GlobalStrides& global_strides) {
  std::vector<Dim> dims;
  for (size_t d = 0; d < sizes.size(); ++d) {
    const Dim next{sizes[d], strides[d], global_strides[d]};
    if (next.size == 1) continue;
    if (!dims.empty() && dims.back().stride == next.stride * next.size &&
        dims.back().global_stride == next.global_stride * next.size) {
      dims.back() = {dims.back().size * next.size, next.stride, next.global_stride};
    } else {
      dims.push_back(next);
    }
  }
  if (dims.empty() || dims.back().global_stride != 1) dims.push_back({1, 1, 1});
  return dims;
}

inline bool is_contiguous_run(const std::vector<Dim>& dims) {
  return dims.size() == 1 && dims[0].stride == 1 && dims[0].global_stride == 1;
}

// The walk of a strided tensor, by value as a kernel argument. Dims in walk order,
// fastest first; the row's digit is its unit number k, with no stride of its own.
struct StridedGeometry {
  int32_t dims = 0;
  int32_t row_dim = 0;
  Divider<uint64_t> extent[kMaxDims];  // digits of the unit number
  int64_t stride[kMaxDims];            // storage offset per step of the digit (0 for the row)
  int64_t global_stride[kMaxDims];     // global index per step (0 for the row)
  int64_t row_length = 1;
  int64_t row_stride = 1;
  int64_t base = 0;
  uint64_t units = 0;
};

// `dims` from merge_dims, at most kMaxDims of them; `base` the global index of the
// element at offset 0.
inline StridedGeometry strided_geometry(const std::vector<Dim>& dims, int64_t base, int per) {
  StridedGeometry g;
  const Dim& row = dims.back();
  g.row_length = row.size;
  g.row_stride = row.stride;
  g.base = base;
  // Every row starts on a block boundary when base and every other global stride are
  // multiples of per; otherwise a row of n elements may touch one block more.
  bool rows_aligned = base % per == 0;
  for (size_t d = 0; d + 1 < dims.size(); ++d) rows_aligned = rows_aligned && dims[d].global_stride % per == 0;
  const int64_t units_per_row =
      rows_aligned ? (row.size + per - 1) / per : (row.size + per - 2) / per + 1;
  std::vector<size_t> order(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) order[d] = d;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return dims[a].stride < dims[b].stride; });
  g.dims = static_cast<int32_t>(dims.size());
  g.units = 1;
  for (size_t w = 0; w < order.size(); ++w) {
    const size_t d = order[w];
    const bool is_row = d + 1 == dims.size();
    const int64_t extent = is_row ? units_per_row : dims[d].size;
    if (is_row) g.row_dim = static_cast<int32_t>(w);
    g.extent[w] = Divider<uint64_t>(static_cast<uint64_t>(extent));
    g.stride[w] = is_row ? 0 : dims[d].stride;
    g.global_stride[w] = is_row ? 0 : dims[d].global_stride;
    g.units *= static_cast<uint64_t>(extent);
  }
  return g;
}

template <int per, typename Visit>
NSPL_MAP_HD void walk_strided(const StridedGeometry& g, uint64_t thread, uint64_t threads, Visit&& visit) {
  for (uint64_t u = thread; u < g.units; u += threads) {
    uint64_t rest = u;
    uint64_t k = 0;
    int64_t storage = 0;
    int64_t global = g.base;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int w = 0; w < kMaxDims; ++w) {
      if (w == g.dims) break;
      uint64_t digit = rest;
      if (w + 1 < g.dims) {
        rest = g.extent[w].div(rest);
        digit -= rest * g.extent[w].divisor;
      }
      k = w == g.row_dim ? digit : k;
      storage += static_cast<int64_t>(digit) * g.stride[w];
      global += static_cast<int64_t>(digit) * g.global_stride[w];
    }
    // Element j of the row has global index global + j; unit k holds j = begin + lane.
    const int64_t begin = static_cast<int64_t>(k) * per - global % per;
    if (begin >= g.row_length) continue;  // a row that starts late needs one unit fewer
    const int64_t lo = begin < 0 ? -begin : 0;
    const int64_t hi = g.row_length - begin < per ? g.row_length - begin : per;
    visit(Unit{static_cast<uint64_t>(global / per) + k, storage + begin * g.row_stride, g.row_stride,
               static_cast<int32_t>(lo), static_cast<int32_t>(hi)});
  }
}

// ---------------------------------------------------------------------------------
// Bulk: a contiguous tensor whose global indices come in runs, local element i having
// global index base + (i / run)·run_stride + i % run (one run for an unsharded tensor or a
// shard along dim 0). Unit u of the tensor is unit k of run r, u = r·units_per_run + k.
// A tensor of the bulk kernel has fewer than 2^32 units (larger ones take the contiguous
// or strided kernel), so the unit numbers are 32-bit.
// ---------------------------------------------------------------------------------
// (run, run_stride) of a contiguous tensor that is the block of its global tensor with
// sizes `local_sizes` (global row-major strides `global_strides`), when its global indices
// come in such runs: true when every dim but the first and the last partial one d is whole
// (any shard of a 1-D mesh, and row-and-column shards of 2-D tensors). Then run = local
// elements from dim d on, run_stride = global elements from dim d on. An unsharded tensor
// or a shard along dim 0 is one run.
// (Each of the sizes and strides any container of int64_t with size() and [].)
template <typename LocalSizes, typename GlobalSizes, typename GlobalStrides>
bool global_runs(const LocalSizes& local_sizes, const GlobalSizes& global_sizes, const GlobalStrides& global_strides,
                 int64_t* run, int64_t* run_stride) {
  int64_t numel = 1;
  for (int64_t s : local_sizes) numel *= s;
  const int64_t nd = static_cast<int64_t>(local_sizes.size());
  int64_t d = nd - 1;
  while (d > 0 && local_sizes[d] == global_sizes[d]) --d;
  *run = numel;
  *run_stride = numel;
  if (d <= 0) return true;
  for (int64_t e = 1; e < d; ++e) {
    if (local_sizes[e] != global_sizes[e]) return false;
  }
  *run = local_sizes[d] * global_strides[d];
  *run_stride = global_strides[d - 1];
  return true;
}

struct RunGeometry {
  int64_t base = 0;
  int64_t run = 1;
  int64_t run_stride = 1;
  Divider<uint32_t> units_per_run;
  uint32_t units = 0;
};

inline RunGeometry run_geometry(int64_t numel, int64_t base, int64_t run, int64_t run_stride, int per) {
  RunGeometry g;
  g.base = base;
  g.run = run;
  g.run_stride = run_stride;
  const int64_t runs = numel / run;
  const bool runs_aligned = runs == 1 ? true : (base % per == 0 && run_stride % per == 0);
  const int64_t units_per_run = runs == 1                ? (base % per + run + per - 1) / per
                                : runs_aligned ? (run + per - 1) / per
                                               : (run + per - 2) / per + 1;
  g.units_per_run = Divider<uint32_t>(static_cast<uint32_t>(units_per_run));
  g.units = static_cast<uint32_t>(runs * units_per_run);
  return g;
}

// Unit u (< g.units) of a bulk tensor; false when it holds no element (a run that starts
// late needs one unit fewer).
template <int per>
NSPL_MAP_HD bool run_unit(const RunGeometry& g, uint32_t u, Unit* unit) {
  const uint32_t r = g.units_per_run.div(u);
  const uint32_t k = u - r * g.units_per_run.divisor;
  const int64_t global = g.base + static_cast<int64_t>(r) * g.run_stride;
  const int64_t begin = static_cast<int64_t>(k) * per - global % per;
  if (begin >= g.run) return false;
  const int64_t lo = begin < 0 ? -begin : 0;
  const int64_t hi = g.run - begin < per ? g.run - begin : per;
  *unit = Unit{static_cast<uint64_t>(global / per) + k, static_cast<int64_t>(r) * g.run + begin, 1,
               static_cast<int32_t>(lo), static_cast<int32_t>(hi)};
  return true;
}

// The bulk kernel's walk: tiles of kCtaThreads·kUnitsPerThread units, each within one
// tensor slot (slot t holds the tiles below tile_end(t) and from tile_end(t − 1) on);
// CUDA block `cta` takes tiles cta, cta + ctas, ...; its thread `thread` takes the units
// thread, thread + kCtaThreads, ... of a tile, so neighbouring threads take neighbouring
// units. Calls visit(slot, unit number within the slot's tensor).
template <uint32_t kCtaThreads, int kUnitsPerThread, typename TileEnd, typename Visit>
NSPL_MAP_HD void walk_tiles(uint32_t tiles, const TileEnd& tile_end, uint32_t cta, uint32_t ctas, uint32_t thread,
                            Visit&& visit) {
  // A block's tiles increase, so its slot only moves forward.
  int slot = 0;
  for (uint32_t tile = cta; tile < tiles; tile += ctas) {
    while (tile >= tile_end(slot)) ++slot;
    const uint32_t tile_begin = slot == 0 ? 0 : tile_end(slot - 1);
    const uint32_t first_unit = (tile - tile_begin) * (kCtaThreads * kUnitsPerThread) + thread;
#if defined(__CUDA_ARCH__)
#pragma unroll 1
#endif
    for (int j = 0; j < kUnitsPerThread; ++j) visit(slot, first_unit + j * kCtaThreads);
  }
}

}  // namespace cuda_map
}  // namespace nspl
