// Declarations shared by the fused modulation kernels and their Python bindings.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace camfields {

// Activation codes; the order matches camfields.ops.cuda_backend.ACTIVATION_CODES.
enum Activation { kNone = 0, kRelu, kLeakyRelu, kSoftplus, kSigmoid, kTanh, kSilu, kGelu };

// out = act(norm(h) * gamma + beta); norm 0 = none, 1 = group norm with `groups` groups.
at::Tensor modulate_forward(const at::Tensor& h, const at::Tensor& gamma, const at::Tensor& beta, int64_t norm,
                            int64_t groups, int64_t act, double eps);

// Gradients (h, gamma, beta) of modulate_forward for the cotangent grad_out.
std::vector<at::Tensor> modulate_backward(const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& gamma,
                                          const at::Tensor& beta, int64_t norm, int64_t groups, int64_t act,
                                          double eps);

// Grid modulation: gamma and beta read from `table` at (index, weight) corners, then modulate.
// product = 1 combines the P corner groups as prod_p (1 + s_p) - 1, else as their sum.
at::Tensor grid_modulate_forward(const at::Tensor& h, const at::Tensor& table, const at::Tensor& index,
                                 const at::Tensor& weight, int64_t column, int64_t width, int64_t product,
                                 int64_t norm, int64_t groups, int64_t act, double eps);

// Warps per block of the table-gradient kernels, and the shared memory one block may use.
constexpr int64_t kTableGradWarps = 4;
constexpr int64_t kSharedBytes = 48 * 1024;

// How the backward reduces the table gradient: the fields of camfields.ops.table_grad.TableGradPlan.
enum TableGradStrategy { kSharedStrategy = 0, kGlobalStrategy = 1, kSortedStrategy = 2 };
struct TableGradPlan {
  int64_t strategy;      // TableGradStrategy
  int64_t tile_width;    // shared: table columns per block
  int64_t tiles;         // shared: column tiles, ceil(2 * width / tile_width)
  int64_t chunks;        // shared: point chunks; global: blocks
  int64_t chunk_points;  // shared: points per chunk
  int64_t copies;        // shared: 1, or one copy per warp (deterministic)
};

// Gradients (h, table, weight) of grid_modulate_forward; weight's is undefined unless asked for.
std::vector<at::Tensor> grid_modulate_backward(const at::Tensor& grad_out, const at::Tensor& h,
                                               const at::Tensor& table, const at::Tensor& index,
                                               const at::Tensor& weight, int64_t column, int64_t width,
                                               int64_t product, int64_t norm, int64_t groups, int64_t act,
                                               double eps, bool need_weight_grad, const TableGradPlan& plan);

}  // namespace camfields
