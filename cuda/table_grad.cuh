// Table gradients of a grid read: the reduction that the backward of grid modulation spends
// its time in, written without contention and, on request, in a fixed order.
//
// Given per-point gradients `ddelta` (N, W2) of the deltas that a layer reads from table columns
// [column, column + W2), and the corners (index, weight) (N, P, K) of each point,
//   grad_table[index[n, p, k], column + j] += weight[n, p, k] * factor_p(n, j) * ddelta[n, j]
// where factor_p = 1 when the P groups are summed and prod_{q != p} (1 + s_q(n, j)) when they
// are multiplied (s_q: group q's interpolated value of column j). Three strategies, chosen on
// the host by camfields.ops.table_grad.plan_table_grad (its torch twin replays each one):
//   shared  tables whose column tile fits in shared memory: blocks own (column tile, point chunk)
//           pairs and accumulate in shared memory, then add each entry to global memory once
//           (default) or write a per-chunk partial table that reduce_partials_kernel sums in
//           chunk order (deterministic: one shared copy per warp, equal addresses within a warp
//           summed in lane order, copies summed in warp order);
//   global  larger tables: one thread per (point, column), equal addresses within a warp summed
//           before a single atomic;
//   sorted  larger tables, deterministic: corners sorted by row (stable), one thread per (row,
//           column) sums its corners in point order.
#pragma once

#include <cstdint>

#include "device_math.cuh"
#include "modulate.h"

namespace camfields {

constexpr int kTableGradThreads = kWarp * kTableGradWarps;
constexpr int kMaxProductGroups = 8;

struct CornerArgs {
  const int64_t* index;  // (N, P, K) table rows
  int groups_p;          // P
  int corners_k;         // K
  int features;          // F, the table's row length
  int column;            // first table column of the layer
  int product;           // 1: groups multiply, 0: they add
};

// Group sum s_p of table column `col` at `point`.
template <typename table_t>
__device__ __forceinline__ table_t corner_group_sum(const table_t* table, const table_t* weight, const CornerArgs& a,
                                                    int64_t point, int p, int col) {
  const int64_t base = (point * a.groups_p + p) * a.corners_k;
  table_t s = 0;
  for (int k = 0; k < a.corners_k; ++k) s += weight[base + k] * table[a.index[base + k] * a.features + col];
  return s;
}

// factor[p] = d delta / d s_p at (point, table column col): 1 for a sum, prod_{q != p} (1 + s_q).
template <typename table_t>
__device__ __forceinline__ void group_factors(const table_t* table, const table_t* weight, const CornerArgs& a,
                                              int64_t point, int col, table_t* factor) {
  if (!a.product) {
    for (int p = 0; p < a.groups_p; ++p) factor[p] = 1;
    return;
  }
  table_t one_plus_s[kMaxProductGroups];
  for (int p = 0; p < a.groups_p; ++p) one_plus_s[p] = table_t(1) + corner_group_sum(table, weight, a, point, p, col);
  table_t prefix = 1, suffix = 1;
  for (int p = 0; p < a.groups_p; ++p) {  // prod_{q < p}, then times prod_{q > p}
    factor[p] = prefix;
    prefix *= one_plus_s[p];
  }
  for (int p = a.groups_p - 1; p >= 0; --p) {
    factor[p] *= suffix;
    suffix *= one_plus_s[p];
  }
}

// Sum of `value` over the lanes whose `addr` equals this lane's, in lane order; every lane of the
// warp must call it. Lanes with addr < 0 take part in the exchange only.
template <typename T>
__device__ __forceinline__ T sum_equal_addresses(int64_t addr, T value, unsigned& peers) {
  peers = __match_any_sync(0xffffffffu, static_cast<unsigned long long>(addr));
  if (__all_sync(0xffffffffu, __popc(peers) == 1)) return value;  // no two lanes share an address
  T sum = 0;
  for (int src = 0; src < kWarp; ++src) {
    const T v = __shfl_sync(0xffffffffu, value, src);
    if ((peers >> src) & 1u) sum += v;
  }
  return sum;
}

// Adds the contributions of item (point, j) to table rows, calling add(row, value) for each corner.
template <typename table_t, typename Add>
__device__ __forceinline__ void item_contributions(const table_t* ddelta, const table_t* table,
                                                   const table_t* weight, const CornerArgs& a, int64_t point, int j,
                                                   int width2, bool active, Add add) {
  table_t factor[kMaxProductGroups];
  const table_t grad = active ? ddelta[point * width2 + j] : table_t(0);
  if (active && a.product) group_factors(table, weight, a, point, a.column + j, factor);
  for (int p = 0; p < a.groups_p; ++p) {
    const table_t grad_s = a.product ? grad * factor[p] : grad;
    for (int k = 0; k < a.corners_k; ++k) {
      const int64_t at = (point * a.groups_p + p) * a.corners_k + k;
      add(active ? a.index[at] : int64_t{-1}, active ? weight[at] * grad_s : table_t(0));
    }
  }
}

template <typename table_t, bool kDeterministic>
__global__ void table_grad_shared_kernel(const table_t* __restrict__ ddelta, const table_t* __restrict__ table,
                                         const table_t* __restrict__ weight, CornerArgs a, int64_t n, int width2,
                                         int64_t rows, int tile_width, int tiles, int64_t chunk_points,
                                         table_t* grad_table, table_t* partials) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  table_t* acc = reinterpret_cast<table_t*>(shared_bytes);
  const int tile = blockIdx.x % tiles;
  const int64_t chunk = blockIdx.x / tiles;
  const int col0 = tile * tile_width;
  const int tw = min(tile_width, width2 - col0);
  const int copies = kDeterministic ? kTableGradWarps : 1;
  const int64_t copy_size = rows * tw;
  for (int64_t e = threadIdx.x; e < copies * copy_size; e += blockDim.x) acc[e] = 0;
  __syncthreads();
  table_t* mine = acc + (kDeterministic ? (threadIdx.x / kWarp) * copy_size : 0);
  const int64_t first = chunk * chunk_points;
  const int64_t items = (min(n, first + chunk_points) - first) * tw;
  for (int64_t start = 0; start < items; start += blockDim.x) {  // block-uniform rounds
    const int64_t i = start + threadIdx.x;
    const bool active = i < items;
    const int64_t point = first + (active ? i / tw : 0);
    const int j = col0 + (active ? static_cast<int>(i % tw) : 0);
    item_contributions(ddelta, table, weight, a, point, j, width2, active, [&](int64_t row, table_t value) {
      const int64_t addr = row < 0 ? -1 : row * tw + (j - col0);
      if (kDeterministic) {
        unsigned peers;
        const table_t sum = sum_equal_addresses(addr, value, peers);
        if (addr >= 0 && (threadIdx.x % kWarp) == __ffs(peers) - 1) mine[addr] += sum;  // one writer per address
        __syncwarp();  // the next round's reads see this write
      } else if (addr >= 0) {
        atomicAdd(mine + addr, value);
      }
    });
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < copy_size; e += blockDim.x) {
    table_t s = 0;
    for (int c = 0; c < copies; ++c) s += acc[c * copy_size + e];  // warp order
    const int64_t row = e / tw;
    const int j = col0 + static_cast<int>(e % tw);
    if (kDeterministic) {
      partials[(chunk * rows + row) * width2 + j] = s;
    } else if (s != table_t(0)) {
      atomicAdd(grad_table + row * a.features + a.column + j, s);
    }
  }
}

// grad_table[row, column + j] = sum over chunks, in chunk order, of partials[chunk, row, j].
template <typename table_t>
__global__ void reduce_partials_kernel(const table_t* __restrict__ partials, int64_t chunks, int64_t rows,
                                       int width2, CornerArgs a, table_t* grad_table) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= rows * width2) return;
  table_t s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += partials[c * rows * width2 + e];
  grad_table[(e / width2) * a.features + a.column + e % width2] = s;
}

template <typename table_t>
__global__ void table_grad_global_kernel(const table_t* __restrict__ ddelta, const table_t* __restrict__ table,
                                         const table_t* __restrict__ weight, CornerArgs a, int64_t n, int width2,
                                         table_t* grad_table) {
  const int64_t items = n * width2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  // warp-uniform rounds: every lane calls sum_equal_addresses the same number of times
  for (int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x; start < items; start += stride) {
    const int64_t i = start + threadIdx.x;
    const bool active = i < items;
    const int64_t point = active ? i / width2 : 0;
    const int j = active ? static_cast<int>(i % width2) : 0;
    item_contributions(ddelta, table, weight, a, point, j, width2, active, [&](int64_t row, table_t value) {
      const int64_t addr = row < 0 ? -1 : row * a.features + a.column + j;
      unsigned peers;
      const table_t sum = sum_equal_addresses(addr, value, peers);
      if (addr >= 0 && (threadIdx.x % kWarp) == __ffs(peers) - 1) atomicAdd(grad_table + addr, sum);
    });
  }
}

// One thread per (row segment, column): the corners of one row, sorted stably by row, summed in
// point order. order (N*P*K) are flat corner positions; segment s ends (exclusive) at ends[s] and
// holds counts[s] of them.
template <typename table_t>
__global__ void table_grad_sorted_kernel(const table_t* __restrict__ ddelta, const table_t* __restrict__ table,
                                         const table_t* __restrict__ weight, CornerArgs a, int width2,
                                         const int64_t* __restrict__ order, const int64_t* __restrict__ segment_rows,
                                         const int64_t* __restrict__ ends, const int64_t* __restrict__ counts,
                                         int64_t segments, table_t* grad_table) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= segments * width2) return;
  const int64_t segment = i / width2;
  const int j = static_cast<int>(i % width2);
  const int64_t corners = static_cast<int64_t>(a.groups_p) * a.corners_k;
  table_t factor[kMaxProductGroups];
  table_t s = 0;
  for (int64_t t = ends[segment] - counts[segment]; t < ends[segment]; ++t) {
    const int64_t at = order[t];
    const int64_t point = at / corners;
    const int p = static_cast<int>((at % corners) / a.corners_k);
    table_t grad = ddelta[point * width2 + j];
    if (a.product) {
      group_factors(table, weight, a, point, a.column + j, factor);
      grad *= factor[p];
    }
    s += weight[at] * grad;
  }
  grad_table[segment_rows[segment] * a.features + a.column + j] = s;
}

}  // namespace camfields
