// Fused grid modulation: read gamma and beta from a grid table at each point's corners,
// then out = act(norm(h) * gamma + beta).
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
// The forward recomputes gamma and beta per point and never writes them to memory. The backward
// runs in two passes: one warp per point writes grad_h, the gradients of the point's deltas
// (N, 2W) and, when asked, the weight gradients the coordinates need; then the table gradient
// is reduced from those deltas by one of the strategies of table_grad.cuh, picked on the host
// (camfields.ops.table_grad.plan_table_grad), deterministic on request.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/unique_consecutive.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>
#include <type_traits>

#include "device_math.cuh"
#include "modulate.h"
#include "table_grad.cuh"

namespace camfields {
namespace {

// delta of table column `col`: combine_p s_p
template <typename table_t>
__device__ __forceinline__ table_t grid_delta(const table_t* table, const table_t* weight, const CornerArgs& a,
                                              int64_t point, int col) {
  table_t prod = 1, total = 0;
  for (int p = 0; p < a.groups_p; ++p) {
    const table_t s = corner_group_sum(table, weight, a, point, p, col);
    if (a.product) prod *= table_t(1) + s; else total += s;
  }
  return a.product ? prod - table_t(1) : total;
}

// gamma = 1 + delta_0 and beta = delta_1 of channel c (c = 0 for the shared scalar pair).
template <typename table_t, typename acc_t>
__device__ __forceinline__ void channel_gamma_beta(const table_t* table, const table_t* weight, const CornerArgs& a,
                                                   int width, int64_t point, int c, acc_t& gamma, acc_t& beta) {
  gamma = acc_t(1) + static_cast<acc_t>(grid_delta(table, weight, a, point, a.column + c));
  beta = static_cast<acc_t>(grid_delta(table, weight, a, point, a.column + width + c));
}

template <typename scalar_t, typename table_t>
__global__ void grid_modulate_forward_kernel(const scalar_t* __restrict__ h, const table_t* __restrict__ table,
                                             const table_t* __restrict__ weight, CornerArgs a, int width,
                                             scalar_t* __restrict__ out, int64_t n, int channels, int norm,
                                             int groups, int act, float eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t point = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (point >= n) return;
  const scalar_t* row = h + point * channels;
  scalar_t* out_row = out + point * channels;
  acc_t shared_gamma = 0, shared_beta = 0;
  if (width == 1) channel_gamma_beta(table, weight, a, width, point, 0, shared_gamma, shared_beta);
  const int group_size = channels / groups;
  for (int grp = 0; grp < groups; ++grp) {
    const int begin = grp * group_size;
    acc_t mean = 0, rstd = 1;
    if (norm) group_stats<scalar_t, acc_t>(row, begin, group_size, static_cast<acc_t>(eps), lane, mean, rstd);
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      acc_t gam = shared_gamma, bet = shared_beta;
      if (width != 1) channel_gamma_beta(table, weight, a, width, point, c, gam, bet);
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      out_row[c] = static_cast<scalar_t>(activate(x * gam + bet, act));
    }
  }
}

// Weight gradient of corner (p, k) from column j's delta gradient, one term of the sum over columns.
template <typename table_t>
__device__ __forceinline__ table_t weight_grad_term(const table_t* table, const table_t* weight,
                                                    const CornerArgs& a, int64_t point, int pk, int j,
                                                    table_t grad_delta) {
  const int p = pk / a.corners_k;
  const int64_t at = point * a.groups_p * a.corners_k + pk;
  table_t grad_s = grad_delta;
  if (a.product) {
    table_t factor[kMaxProductGroups];
    group_factors(table, weight, a, point, a.column + j, factor);
    grad_s *= factor[p];
  }
  return table[a.index[at] * a.features + a.column + j] * grad_s;
}

// One warp per point: grad_h, the delta gradients ddelta (N, 2W) (columns 0..W-1 for gamma,
// W..2W-1 for beta) and, when grad_weight is not null, the weight gradients (N, P, K).
template <typename scalar_t, typename table_t>
__global__ void grid_modulate_point_grad_kernel(const scalar_t* __restrict__ grad_out,
                                                const scalar_t* __restrict__ h, const table_t* __restrict__ table,
                                                const table_t* __restrict__ weight, CornerArgs a, int width,
                                                scalar_t* __restrict__ grad_h, table_t* __restrict__ ddelta,
                                                table_t* grad_weight, int64_t n, int channels, int norm, int groups,
                                                int act, float eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t point = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (point >= n) return;
  const scalar_t* row = h + point * channels;
  const scalar_t* go_row = grad_out + point * channels;
  scalar_t* gh_row = grad_h + point * channels;
  table_t* dd_row = ddelta + point * 2 * width;
  const int corners = a.groups_p * a.corners_k;
  acc_t shared_gamma = 0, shared_beta = 0, shared_dgamma = 0, shared_dbeta = 0;
  if (width == 1) channel_gamma_beta(table, weight, a, width, point, 0, shared_gamma, shared_beta);
  const int group_size = channels / groups;
  for (int grp = 0; grp < groups; ++grp) {
    const int begin = grp * group_size;
    acc_t mean = 0, rstd = 1;
    if (norm) group_stats<scalar_t, acc_t>(row, begin, group_size, static_cast<acc_t>(eps), lane, mean, rstd);
    acc_t sum_dn = 0, sum_dn_x = 0;
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      acc_t gam = shared_gamma, bet = shared_beta;
      if (width != 1) channel_gamma_beta(table, weight, a, width, point, c, gam, bet);
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      const acc_t dz = static_cast<acc_t>(go_row[c]) * activate_grad(x * gam + bet, act);
      sum_dn += dz * gam;
      sum_dn_x += dz * gam * x;
      if (width == 1) {
        shared_dgamma += dz * x;
        shared_dbeta += dz;
      } else {
        dd_row[c] = static_cast<table_t>(dz * x);
        dd_row[width + c] = static_cast<table_t>(dz);
      }
    }
    if (norm) {
      sum_dn = warp_sum(sum_dn) / group_size;
      sum_dn_x = warp_sum(sum_dn_x) / group_size;
    }
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      acc_t gam = shared_gamma, bet = shared_beta;
      if (width != 1) channel_gamma_beta(table, weight, a, width, point, c, gam, bet);
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      const acc_t dn = static_cast<acc_t>(go_row[c]) * activate_grad(x * gam + bet, act) * gam;
      gh_row[c] = static_cast<scalar_t>(norm ? rstd * (dn - sum_dn - x * sum_dn_x) : dn);
    }
  }
  if (width != 1) {
    if (grad_weight == nullptr) return;
    __syncwarp();  // every lane reads the delta gradients the others wrote
    for (int pk = 0; pk < corners; ++pk) {  // each corner's weight gradient sums over the channels
      table_t to_weight = 0;
      for (int c = lane; c < channels; c += kWarp)
        to_weight += weight_grad_term(table, weight, a, point, pk, c, dd_row[c]) +
                     weight_grad_term(table, weight, a, point, pk, width + c, dd_row[width + c]);
      to_weight = warp_sum(to_weight);
      if (lane == 0) grad_weight[point * corners + pk] = to_weight;
    }
    return;
  }
  const table_t dgamma = static_cast<table_t>(warp_sum(shared_dgamma));
  const table_t dbeta = static_cast<table_t>(warp_sum(shared_dbeta));
  if (lane == 0) {
    dd_row[0] = dgamma;
    dd_row[1] = dbeta;
  }
  if (grad_weight == nullptr) return;
  for (int pk = lane; pk < corners; pk += kWarp)  // lanes split the corners: one writer each
    grad_weight[point * corners + pk] = weight_grad_term(table, weight, a, point, pk, 0, dgamma) +
                                        weight_grad_term(table, weight, a, point, pk, 1, dbeta);
}

CornerArgs make_args(const at::Tensor& table, const at::Tensor& index, int64_t column, int64_t product) {
  return CornerArgs{index.data_ptr<int64_t>(), static_cast<int>(index.size(1)), static_cast<int>(index.size(2)),
                    static_cast<int>(table.size(1)), static_cast<int>(column), static_cast<int>(product)};
}

// The table gradient of one layer's columns from the delta gradients, by the planned strategy.
template <typename table_t>
void reduce_table_grad(const at::Tensor& ddelta, const at::Tensor& table, const at::Tensor& index,
                       const at::Tensor& weight, const CornerArgs& a, const TableGradPlan& plan,
                       at::Tensor& grad_table) {
  const int64_t n = ddelta.size(0), rows = table.size(0);
  const int width2 = static_cast<int>(ddelta.size(1));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const table_t* dd = ddelta.data_ptr<table_t>();
  const table_t* tab = table.data_ptr<table_t>();
  const table_t* w = weight.data_ptr<table_t>();
  table_t* grad = grad_table.data_ptr<table_t>();
  if (plan.strategy == kSharedStrategy) {
    const int64_t blocks = plan.tiles * plan.chunks;
    const size_t shared = static_cast<size_t>(plan.copies) * rows * plan.tile_width * sizeof(table_t);
    if (plan.copies == 1) {
      table_grad_shared_kernel<table_t, false><<<blocks, kTableGradThreads, shared, stream>>>(
          dd, tab, w, a, n, width2, rows, plan.tile_width, plan.tiles, plan.chunk_points, grad, nullptr);
      return;
    }
    auto partials = at::empty({plan.chunks, rows, width2}, table.options());
    table_grad_shared_kernel<table_t, true><<<blocks, kTableGradThreads, shared, stream>>>(
        dd, tab, w, a, n, width2, rows, plan.tile_width, plan.tiles, plan.chunk_points, grad,
        partials.data_ptr<table_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t entries = rows * width2;
    reduce_partials_kernel<table_t><<<(entries + 255) / 256, 256, 0, stream>>>(partials.data_ptr<table_t>(),
                                                                               plan.chunks, rows, width2, a, grad);
    return;
  }
  if (plan.strategy == kGlobalStrategy) {
    table_grad_global_kernel<table_t><<<plan.chunks, kTableGradThreads, 0, stream>>>(dd, tab, w, a, n, width2, grad);
    return;
  }
  // sorted: a stable sort of the corners by row, then one thread per (row, column)
  at::Tensor sorted_rows, order, segment_rows, counts;
  std::tie(sorted_rows, order) = at::sort(index.reshape({-1}), /*stable=*/true, /*dim=*/0, /*descending=*/false);
  std::tie(segment_rows, std::ignore, counts) = at::unique_consecutive(sorted_rows, false, true);
  const auto ends = at::cumsum(counts, 0);
  const int64_t segments = segment_rows.size(0);
  const int64_t threads = segments * width2;
  table_grad_sorted_kernel<table_t><<<(threads + 255) / 256, 256, 0, stream>>>(
      dd, tab, w, a, width2, order.data_ptr<int64_t>(), segment_rows.data_ptr<int64_t>(),
      ends.data_ptr<int64_t>(), counts.data_ptr<int64_t>(), segments, grad);
}

}  // namespace

at::Tensor grid_modulate_forward(const at::Tensor& h, const at::Tensor& table, const at::Tensor& index,
                                 const at::Tensor& weight, int64_t column, int64_t width, int64_t product,
                                 int64_t norm, int64_t groups, int64_t act, double eps) {
  const c10::cuda::CUDAGuard guard(h.device());
  auto out = at::empty_like(h);
  const int64_t n = h.size(0);
  if (n == 0) return out;
  const CornerArgs args = make_args(table, index, column, product);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "grid_modulate_forward", [&] {
    using table_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    grid_modulate_forward_kernel<scalar_t, table_t>
        <<<num_blocks(n), kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            h.data_ptr<scalar_t>(), table.data_ptr<table_t>(), weight.data_ptr<table_t>(), args,
            static_cast<int>(width), out.data_ptr<scalar_t>(), n, static_cast<int>(h.size(1)),
            static_cast<int>(norm), static_cast<int>(groups), static_cast<int>(act), static_cast<float>(eps));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> grid_modulate_backward(const at::Tensor& grad_out, const at::Tensor& h,
                                               const at::Tensor& table, const at::Tensor& index,
                                               const at::Tensor& weight, int64_t column, int64_t width,
                                               int64_t product, int64_t norm, int64_t groups, int64_t act,
                                               double eps, bool need_weight_grad, const TableGradPlan& plan) {
  const c10::cuda::CUDAGuard guard(h.device());
  auto grad_h = at::empty_like(h);
  auto grad_weight = need_weight_grad ? at::zeros_like(weight) : at::Tensor();
  auto grad_table = at::zeros_like(table);
  const int64_t n = h.size(0);
  if (n == 0) return {grad_h, grad_table, grad_weight};
  auto ddelta = at::empty({n, 2 * width}, table.options());
  const CornerArgs args = make_args(table, index, column, product);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "grid_modulate_backward", [&] {
    using table_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    grid_modulate_point_grad_kernel<scalar_t, table_t>
        <<<num_blocks(n), kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            grad_out.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), table.data_ptr<table_t>(),
            weight.data_ptr<table_t>(), args, static_cast<int>(width), grad_h.data_ptr<scalar_t>(),
            ddelta.data_ptr<table_t>(), need_weight_grad ? grad_weight.data_ptr<table_t>() : nullptr, n,
            static_cast<int>(h.size(1)), static_cast<int>(norm), static_cast<int>(groups), static_cast<int>(act),
            static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    reduce_table_grad<table_t>(ddelta, table, index, weight, args, plan, grad_table);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_h, grad_table, grad_weight};
}

}  // namespace camfields
