// The CUDA kernels' index arithmetic (csrc/cuda/index_map.h), run on the CPU for every
// thread of a launch. For thousands of random shapes, strides, storage offsets, shards,
// element widths (4 or 2 elements per Philox block) and launch sizes it checks that each
// kernel's walk writes every element of the tensor exactly once, nothing else, and each
// element with the lane and block of its global index (docs/spec.md §4). tests/test_index_map.py
// compiles and runs it; exit status 0 and a last line "index map: N layouts ok" on
// success.
//
//   g++ -std=c++17 -O2 -I csrc tests/index_map_model.cpp -o /tmp/index_map_model && /tmp/index_map_model [cases]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cuda/index_map.h"

using namespace nspl::cuda_map;

namespace {

int failures = 0;

void fail(const std::string& what) {
  if (++failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

std::string show(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

void check_dividers(std::mt19937_64& rng) {
  std::vector<uint64_t> divisors = {1, 2, 3, 5, 7, 10, 64, 641, 65535, 65536, 65537, (1ull << 31) - 1,
                                    1ull << 31, (1ull << 31) + 1, (1ull << 32) - 1};
  for (int i = 0; i < 200; ++i) divisors.push_back(1 + rng() % 100000);
  for (int i = 0; i < 200; ++i) divisors.push_back(1 + (rng() >> (1 + rng() % 63)));
  for (uint64_t d : divisors) {
    std::vector<uint64_t> ns = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, ~uint64_t(0), ~uint64_t(0) - 1,
                                (1ull << 63) - 1, 1ull << 32, (1ull << 32) - 1};
    for (int i = 0; i < 300; ++i) ns.push_back(rng() >> (rng() % 64));
    const Divider<uint64_t> wide(d);
    for (uint64_t n : ns) {
      if (wide.div(n) != n / d) fail("64-bit divider " + std::to_string(n) + " / " + std::to_string(d));
    }
    if (d >> 32) continue;
    const Divider<uint32_t> narrow(static_cast<uint32_t>(d));
    for (uint64_t n64 : ns) {
      const uint32_t n = static_cast<uint32_t>(n64);
      if (narrow.div(n) != n / static_cast<uint32_t>(d)) {
        fail("32-bit divider " + std::to_string(n) + " / " + std::to_string(d));
      }
    }
  }
}

// A tensor to fill: for each local element (row-major local index order), its storage
// offset and its global index.
struct Case {
  std::vector<int64_t> local_sizes, strides, global_sizes, global_strides;
  int64_t base = 0;
  std::vector<int64_t> offsets;  // storage offset of local element i
  std::vector<int64_t> globals;  // global index of local element i
  int per = 4;
};

Case random_case(std::mt19937_64& rng, bool contiguous_storage) {
  Case c;
  const int nd = static_cast<int>(rng() % 5);  // 0 .. 4 dims
  auto pick = [&](int64_t hi) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(hi)); };
  for (int d = 0; d < nd; ++d) {
    const int64_t global = 1 + (pick(4) == 0 ? pick(40) : pick(9));
    const int64_t size = pick(3) == 0 ? global : 1 + pick(global);
    c.global_sizes.push_back(global);
    c.local_sizes.push_back(size);
  }
  c.per = pick(2) == 0 ? 2 : 4;
  c.global_strides.assign(nd, 1);
  for (int d = nd - 1; d > 0; --d) c.global_strides[d - 1] = c.global_strides[d] * c.global_sizes[d];
  std::vector<int64_t> starts(nd);
  for (int d = 0; d < nd; ++d) starts[d] = pick(c.global_sizes[d] - c.local_sizes[d] + 1);
  // Large bases too: the global tensor may be one of many in a stream.
  c.base = pick(4) == 0 ? pick(1 << 20) * c.per + pick(c.per) : 0;
  for (int d = 0; d < nd; ++d) c.base += starts[d] * c.global_strides[d];
  // Storage: a random permutation of the dims, each with a random gap (a slice or step),
  // unless contiguous.
  std::vector<int> order(nd);
  for (int d = 0; d < nd; ++d) order[d] = d;
  if (!contiguous_storage) std::shuffle(order.begin(), order.end(), rng);
  c.strides.assign(nd, 0);
  int64_t stride = contiguous_storage ? 1 : 1 + (pick(3) == 0 ? pick(3) : 0);
  for (int k = nd - 1; k >= 0; --k) {
    const int d = order[k];
    c.strides[d] = stride;
    stride *= c.local_sizes[d] + (contiguous_storage || pick(3) ? 0 : pick(3));
  }
  int64_t numel = 1;
  for (int64_t s : c.local_sizes) numel *= s;
  for (int64_t i = 0; i < numel; ++i) {
    int64_t rest = i, offset = 0, global = c.base;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t idx = rest % c.local_sizes[d];
      rest /= c.local_sizes[d];
      offset += idx * c.strides[d];
      global += idx * c.global_strides[d];
    }
    c.offsets.push_back(offset);
    c.globals.push_back(global);
  }
  return c;
}

// Records a walk's writes and compares them with the case.
struct Writes {
  const Case& c;
  std::map<int64_t, int64_t> global_of_offset;
  std::map<int64_t, int> count;
  std::string label;
  explicit Writes(const Case& c_, std::string label_) : c(c_), label(std::move(label_)) {
    for (size_t i = 0; i < c.offsets.size(); ++i) global_of_offset[c.offsets[i]] = c.globals[i];
  }
  std::string where() const {
    return label + " sizes " + show(c.local_sizes) + " strides " + show(c.strides) + " global " +
           show(c.global_sizes) + " base " + std::to_string(c.base) + " per " + std::to_string(c.per);
  }
  void unit(const Unit& u, int64_t block_offset) {
    if (u.lo < 0 || u.hi > c.per || u.lo >= u.hi) {
      fail("empty or out-of-range lanes in " + where());
      return;
    }
    for (int lane = u.lo; lane < u.hi; ++lane) {
      const int64_t offset = u.first + lane * u.step;
      const auto it = global_of_offset.find(offset);
      if (it == global_of_offset.end()) {
        fail("write outside the tensor at offset " + std::to_string(offset) + " in " + where());
        continue;
      }
      const int64_t global = it->second + block_offset * c.per;
      if (static_cast<int64_t>(u.block) != global / c.per || lane != global % c.per) {
        fail("element at offset " + std::to_string(offset) + " gets block " + std::to_string(u.block) +
             " lane " + std::to_string(lane) + ", wants global index " + std::to_string(global) + " in " + where());
      }
      ++count[offset];
    }
  }
  void finish() {
    for (int64_t offset : c.offsets) {
      if (count[offset] != 1) {
        fail("element at offset " + std::to_string(offset) + " written " + std::to_string(count[offset]) +
             " times in " + where());
      }
    }
  }
};

template <int per>
void run_per_tensor(const Case& c, int64_t threads) {
  const std::vector<Dim> dims = merge_dims(c.local_sizes, c.strides, c.global_strides);
  if (dims.size() > static_cast<size_t>(kMaxDims)) return;
  Writes writes(c, is_contiguous_run(dims) ? "contiguous" : "strided");
  const auto visit = [&](const Unit& u) { writes.unit(u, 0); };
  if (is_contiguous_run(dims)) {
    const auto whole = [&](uint64_t block, int64_t first) { writes.unit(Unit{block, first, 1, 0, per}, 0); };
    for (int64_t t = 0; t < threads; ++t) walk_contiguous<per>(dims[0].size, c.base, t, threads, whole, visit);
  } else {
    const StridedGeometry g = strided_geometry(dims, c.base, per);
    for (int64_t t = 0; t < threads; ++t) walk_strided<per>(g, static_cast<uint64_t>(t), static_cast<uint64_t>(threads), visit);
  }
  writes.finish();
}

// The bulk kernel: several contiguous tensors in one table, each at its own offset in the
// call's stream; only tensors whose global indices come in runs.
template <int per, uint32_t kCtaThreads, int kUnitsPerThread>
void run_bulk(const std::vector<Case>& cases, uint32_t ctas) {
  constexpr uint32_t kTileUnits = kCtaThreads * kUnitsPerThread;
  std::vector<RunGeometry> geometry;
  std::vector<uint32_t> tile_end;
  std::vector<int64_t> block_offset;
  std::vector<Writes> writes;
  uint32_t tiles = 0;
  int64_t next_block = 0;
  for (const Case& c : cases) {
    int64_t run = 0, run_stride = 0;
    if (!global_runs(c.local_sizes, c.global_sizes, c.global_strides, &run, &run_stride) || c.offsets.empty()) continue;
    geometry.push_back(run_geometry(static_cast<int64_t>(c.offsets.size()), c.base, run, run_stride, per));
    tiles += (geometry.back().units + kTileUnits - 1) / kTileUnits;
    tile_end.push_back(tiles);
    block_offset.push_back(next_block);
    next_block += 1000003;
    writes.emplace_back(c, "bulk");
  }
  if (geometry.empty()) return;
  const auto end = [&](int slot) { return tile_end[slot]; };
  for (uint32_t cta = 0; cta < ctas; ++cta) {
    for (uint32_t thread = 0; thread < kCtaThreads; ++thread) {
      walk_tiles<kCtaThreads, kUnitsPerThread>(tiles, end, cta, ctas, thread, [&](int slot, uint32_t u) {
        Unit unit;
        if (u >= geometry[slot].units || !run_unit<per>(geometry[slot], u, &unit)) return;
        unit.block += static_cast<uint64_t>(block_offset[slot]);
        writes[slot].unit(unit, block_offset[slot]);
      });
    }
  }
  for (Writes& w : writes) w.finish();
}

}  // namespace

int main(int argc, char** argv) {
  const int cases = argc > 1 ? std::atoi(argv[1]) : 4000;
  std::mt19937_64 rng(20261201);
  check_dividers(rng);
  for (int i = 0; i < cases; ++i) {
    const Case c = random_case(rng, i % 3 == 0);
    const int64_t threads = 1 + static_cast<int64_t>(rng() % (i % 2 ? 7 : 300));
    if (c.per == 4) {
      run_per_tensor<4>(c, threads);
    } else {
      run_per_tensor<2>(c, threads);
    }
  }
  // Bulk: tables of 1 to 6 contiguous tensors of one element width, with small CUDA blocks
  // and tiles so tensors span several tiles and blocks loop over tiles.
  for (int i = 0; i < cases / 4; ++i) {
    std::vector<Case> table;
    const int per = rng() % 2 ? 4 : 2;
    const int n = 1 + static_cast<int>(rng() % 6);
    while (static_cast<int>(table.size()) < n) {
      Case c = random_case(rng, true);
      if (c.per == per) table.push_back(std::move(c));
    }
    const uint32_t ctas = 1 + static_cast<uint32_t>(rng() % 5);
    if (per == 4) {
      run_bulk<4, 8, 3>(table, ctas);
    } else {
      run_bulk<2, 8, 3>(table, ctas);
    }
  }
  if (failures) {
    std::fprintf(stderr, "index map: %d failures\n", failures);
    return 1;
  }
  std::printf("index map: %d layouts ok\n", cases + cases / 4);
  return 0;
}
