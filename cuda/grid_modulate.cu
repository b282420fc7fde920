// Fused grid modulation: read gamma and beta from a grid table at each point's corners,
// then out = act(norm(h) * gamma + beta); forward and backward in one pass per layer.
//
// Same semantics as camfields.ops.grid_modulate.grid_modulate (PyTorch reference):
//   h       (N, C)      pre-activations (float, half, bfloat16 or double)
//   table   (T, F)      grid values (float; double when h is double)
//   index   (N, P, K)   int64 rows of `table`: P groups of K corners
//   weight  (N, P, K)   interpolation weights (dtype of table)
//   column  first table column of this layer; width W = 1 (shared scalar) or C (per channel)
//           delta_j(m) = combine_p( sum_k weight[p, k] * table[index[p, k], column + j * W + m] )
//           combine 0: sum over p; 1: prod_p (1 + s_p) - 1
//           gamma = 1 + delta_0, beta = delta_1
// gamma and beta are recomputed where needed and never written to memory; the backward
// accumulates table gradients with atomicAdd (order-dependent rounding: not bitwise
// deterministic) and, when asked, writes the weight gradients the coordinates need.
// Small tables read by many points would serialise those atomics on a few cache lines, so
// blocks then spread them over `copies` private gradient tables, summed after the kernel.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <type_traits>

#include "device_math.cuh"
#include "modulate.h"

namespace camfields {
namespace {

struct GridArgs {
  const int64_t* index;
  int groups_p;   // P
  int corners_k;  // K
  int features;   // F, the table's row length
  int column;
  int width;
  int product;
};

// Group sum s_p for column `col` of point `point`.
template <typename table_t>
__device__ __forceinline__ table_t group_sum(const table_t* table, const table_t* weight, const GridArgs& g,
                                             int64_t point, int p, int col) {
  const int64_t base = (point * g.groups_p + p) * g.corners_k;
  table_t s = 0;
  for (int k = 0; k < g.corners_k; ++k) s += weight[base + k] * table[g.index[base + k] * g.features + col];
  return s;
}

// delta(col) = combine_p s_p
template <typename table_t>
__device__ __forceinline__ table_t grid_delta(const table_t* table, const table_t* weight, const GridArgs& g,
                                              int64_t point, int col) {
  table_t prod = 1, total = 0;
  for (int p = 0; p < g.groups_p; ++p) {
    const table_t s = group_sum(table, weight, g, point, p, col);
    if (g.product) prod *= table_t(1) + s; else total += s;
  }
  return g.product ? prod - table_t(1) : total;
}

// d delta / d s_p: 1 for a sum, prod_{q != p} (1 + s_q) for a product.
template <typename table_t>
__device__ __forceinline__ table_t group_factor(const table_t* table, const table_t* weight, const GridArgs& g,
                                                int64_t point, int p, int col) {
  if (!g.product) return table_t(1);
  table_t f = 1;
  for (int q = 0; q < g.groups_p; ++q)
    if (q != p) f *= table_t(1) + group_sum(table, weight, g, point, q, col);
  return f;
}

// gamma = 1 + delta_0 and beta = delta_1 of channel c (c = 0 for the shared scalar pair).
template <typename table_t, typename acc_t>
__device__ __forceinline__ void channel_gamma_beta(const table_t* table, const table_t* weight, const GridArgs& g,
                                                   int64_t point, int c, acc_t& gamma, acc_t& beta) {
  gamma = acc_t(1) + static_cast<acc_t>(grid_delta(table, weight, g, point, g.column + c));
  beta = static_cast<acc_t>(grid_delta(table, weight, g, point, g.column + g.width + c));
}

template <typename scalar_t, typename table_t>
__global__ void grid_modulate_forward_kernel(const scalar_t* __restrict__ h, const table_t* __restrict__ table,
                                             const table_t* __restrict__ weight, GridArgs g,
                                             scalar_t* __restrict__ out, int64_t n, int channels, int norm,
                                             int groups, int act, float eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t point = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (point >= n) return;
  const scalar_t* row = h + point * channels;
  scalar_t* out_row = out + point * channels;
  acc_t shared_gamma = 0, shared_beta = 0;
  if (g.width == 1) channel_gamma_beta(table, weight, g, point, 0, shared_gamma, shared_beta);
  const int group_size = channels / groups;
  for (int grp = 0; grp < groups; ++grp) {
    const int begin = grp * group_size;
    acc_t mean = 0, rstd = 1;
    if (norm) group_stats<scalar_t, acc_t>(row, begin, group_size, static_cast<acc_t>(eps), lane, mean, rstd);
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      acc_t gam = shared_gamma, bet = shared_beta;
      if (g.width != 1) channel_gamma_beta(table, weight, g, point, c, gam, bet);
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      out_row[c] = static_cast<scalar_t>(activate(x * gam + bet, act));
    }
  }
}

// Shared scalar pair: scatter d(loss)/d(delta_j) of one table column into the table and weight
// gradients, the lanes splitting the corners (so each weight gradient has one writer).
template <typename table_t>
__device__ __forceinline__ void scatter_shared_grad(const table_t* table, const table_t* weight, const GridArgs& g,
                                                    int64_t point, int col, table_t grad_delta,
                                                    table_t* grad_table, table_t* grad_weight, int lane) {
  for (int pk = lane; pk < g.groups_p * g.corners_k; pk += kWarp) {
    const int p = pk / g.corners_k;
    const int64_t at = point * g.groups_p * g.corners_k + pk;
    const table_t grad_s = grad_delta * group_factor(table, weight, g, point, p, col);
    const int64_t cell = g.index[at] * g.features + col;
    atomicAdd(grad_table + cell, weight[at] * grad_s);
    if (grad_weight != nullptr) atomicAdd(grad_weight + at, table[cell] * grad_s);
  }
}

// Per-channel variant: every lane of the warp owns one channel (`active` false past the last
// one) and all lanes run together, so the weight gradient of each corner, a sum over the
// channels, is reduced across the warp and added once by lane 0 instead of by 32 lanes
// contending for one address.
template <typename table_t>
__device__ __forceinline__ void scatter_channel_grad(const table_t* table, const table_t* weight, const GridArgs& g,
                                                     int64_t point, int col, bool active, table_t grad_delta,
                                                     table_t* grad_table, table_t* grad_weight, int lane) {
  for (int pk = 0; pk < g.groups_p * g.corners_k; ++pk) {
    const int p = pk / g.corners_k;
    const int64_t at = point * g.groups_p * g.corners_k + pk;
    const int64_t cell = g.index[at] * g.features + col;
    table_t to_weight = 0;
    if (active) {
      const table_t grad_s = grad_delta * group_factor(table, weight, g, point, p, col);
      atomicAdd(grad_table + cell, weight[at] * grad_s);
      to_weight = table[cell] * grad_s;
    }
    if (grad_weight != nullptr) {
      to_weight = warp_sum(to_weight);
      if (lane == 0) grad_weight[at] += to_weight;  // this warp alone owns the point
    }
  }
}

template <typename scalar_t, typename table_t>
__global__ void grid_modulate_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ h,
                                              const table_t* __restrict__ table, const table_t* __restrict__ weight,
                                              GridArgs g, scalar_t* __restrict__ grad_h, table_t* grad_tables,
                                              int64_t table_numel, int copies, table_t* grad_weight, int64_t n,
                                              int channels, int norm, int groups, int act, float eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t point = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (point >= n) return;
  table_t* grad_table = grad_tables + static_cast<int64_t>(blockIdx.x % copies) * table_numel;
  const scalar_t* row = h + point * channels;
  const scalar_t* go_row = grad_out + point * channels;
  scalar_t* gh_row = grad_h + point * channels;
  acc_t shared_gamma = 0, shared_beta = 0, shared_dgamma = 0, shared_dbeta = 0;
  if (g.width == 1) channel_gamma_beta(table, weight, g, point, 0, shared_gamma, shared_beta);
  const int group_size = channels / groups;
  for (int grp = 0; grp < groups; ++grp) {
    const int begin = grp * group_size;
    acc_t mean = 0, rstd = 1;
    if (norm) group_stats<scalar_t, acc_t>(row, begin, group_size, static_cast<acc_t>(eps), lane, mean, rstd);
    acc_t sum_dn = 0, sum_dn_x = 0;
    for (int c0 = begin; c0 < begin + group_size; c0 += kWarp) {  // the whole warp runs every round
      const int c = c0 + lane;
      const bool active = c < begin + group_size;
      acc_t x = 0, dz = 0;
      if (active) {
        acc_t gam = shared_gamma, bet = shared_beta;
        if (g.width != 1) channel_gamma_beta(table, weight, g, point, c, gam, bet);
        x = (static_cast<acc_t>(row[c]) - mean) * rstd;
        dz = static_cast<acc_t>(go_row[c]) * activate_grad(x * gam + bet, act);
        sum_dn += dz * gam;
        sum_dn_x += dz * gam * x;
      }
      if (g.width == 1) {
        shared_dgamma += dz * x;
        shared_dbeta += dz;
      } else {  // each lane scatters the gamma and beta gradients of its channel over all corners
        const int col = g.column + (active ? c : 0);
        scatter_channel_grad(table, weight, g, point, col, active, static_cast<table_t>(dz * x), grad_table,
                             grad_weight, lane);
        scatter_channel_grad(table, weight, g, point, col + g.width, active, static_cast<table_t>(dz), grad_table,
                             grad_weight, lane);
      }
    }
    if (norm) {
      sum_dn = warp_sum(sum_dn) / group_size;
      sum_dn_x = warp_sum(sum_dn_x) / group_size;
    }
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      acc_t gam = shared_gamma, bet = shared_beta;
      if (g.width != 1) channel_gamma_beta(table, weight, g, point, c, gam, bet);
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      const acc_t dn = static_cast<acc_t>(go_row[c]) * activate_grad(x * gam + bet, act) * gam;
      gh_row[c] = static_cast<scalar_t>(norm ? rstd * (dn - sum_dn - x * sum_dn_x) : dn);
    }
  }
  if (g.width == 1) {  // lanes split the corners of the shared scalar pair
    shared_dgamma = warp_sum(shared_dgamma);
    shared_dbeta = warp_sum(shared_dbeta);
    scatter_shared_grad(table, weight, g, point, g.column, static_cast<table_t>(shared_dgamma), grad_table,
                        grad_weight, lane);
    scatter_shared_grad(table, weight, g, point, g.column + 1, static_cast<table_t>(shared_dbeta), grad_table,
                        grad_weight, lane);
  }
}

// Private gradient tables for the backward: about one per 64 corner reads that land on a
// table row, at most 64 copies and 2^22 values in all (one copy for large tables).
int gradient_copies(int64_t reads, int64_t rows, int64_t numel) {
  const int64_t by_reads = reads / (64 * rows);
  const int64_t by_memory = (int64_t{1} << 22) / std::max<int64_t>(numel, 1);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({64, by_reads, by_memory})));
}

GridArgs make_args(const at::Tensor& table, const at::Tensor& index, int64_t column, int64_t width,
                   int64_t product) {
  return GridArgs{index.data_ptr<int64_t>(), static_cast<int>(index.size(1)), static_cast<int>(index.size(2)),
                  static_cast<int>(table.size(1)), static_cast<int>(column), static_cast<int>(width),
                  static_cast<int>(product)};
}

}  // namespace

at::Tensor grid_modulate_forward(const at::Tensor& h, const at::Tensor& table, const at::Tensor& index,
                                 const at::Tensor& weight, int64_t column, int64_t width, int64_t product,
                                 int64_t norm, int64_t groups, int64_t act, double eps) {
  const c10::cuda::CUDAGuard guard(h.device());
  auto out = at::empty_like(h);
  const int64_t n = h.size(0);
  if (n == 0) return out;
  const GridArgs args = make_args(table, index, column, width, product);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "grid_modulate_forward", [&] {
    using table_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    grid_modulate_forward_kernel<scalar_t, table_t>
        <<<num_blocks(n), kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            h.data_ptr<scalar_t>(), table.data_ptr<table_t>(), weight.data_ptr<table_t>(), args,
            out.data_ptr<scalar_t>(), n, static_cast<int>(h.size(1)), static_cast<int>(norm),
            static_cast<int>(groups), static_cast<int>(act), static_cast<float>(eps));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> grid_modulate_backward(const at::Tensor& grad_out, const at::Tensor& h,
                                               const at::Tensor& table, const at::Tensor& index,
                                               const at::Tensor& weight, int64_t column, int64_t width,
                                               int64_t product, int64_t norm, int64_t groups, int64_t act,
                                               double eps, bool need_weight_grad) {
  const c10::cuda::CUDAGuard guard(h.device());
  auto grad_h = at::empty_like(h);
  auto grad_weight = need_weight_grad ? at::zeros_like(weight) : at::Tensor();
  const int64_t n = h.size(0);
  const int copies = gradient_copies(n * index.size(1) * index.size(2), table.size(0), table.numel());
  auto grad_tables = at::zeros({copies, table.size(0), table.size(1)}, table.options());
  if (n == 0) return {grad_h, grad_tables[0], grad_weight};
  const GridArgs args = make_args(table, index, column, width, product);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "grid_modulate_backward", [&] {
    using table_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    grid_modulate_backward_kernel<scalar_t, table_t>
        <<<num_blocks(n), kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            grad_out.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), table.data_ptr<table_t>(),
            weight.data_ptr<table_t>(), args, grad_h.data_ptr<scalar_t>(), grad_tables.data_ptr<table_t>(),
            table.numel(), copies, need_weight_grad ? grad_weight.data_ptr<table_t>() : nullptr, n,
            static_cast<int>(h.size(1)),
            static_cast<int>(norm), static_cast<int>(groups), static_cast<int>(act), static_cast<float>(eps));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_h, copies == 1 ? grad_tables[0] : grad_tables.sum(0), grad_weight};
}

}  // namespace camfields
