// Python bindings of the camfields CUDA extension. Inputs are validated in Python
// (camfields.ops.cuda_backend) before these are called; the checks here guard memory safety.
#include <torch/extension.h>

#include "hash_encode.h"
#include "modulate.h"

namespace {

void check_inputs(const at::Tensor& h, const at::Tensor& gamma, const at::Tensor& beta) {
  TORCH_CHECK(h.is_cuda() && gamma.is_cuda() && beta.is_cuda(), "camfields: tensors must be on a CUDA device");
  TORCH_CHECK(h.dim() == 2 && gamma.dim() == 2 && beta.dim() == 2, "camfields: tensors must be 2-D");
  TORCH_CHECK(h.is_contiguous() && gamma.is_contiguous() && beta.is_contiguous(),
              "camfields: tensors must be contiguous");
  TORCH_CHECK(gamma.sizes() == beta.sizes(), "camfields: gamma and beta must have the same shape");
  TORCH_CHECK(gamma.size(0) == h.size(0) && (gamma.size(1) == 1 || gamma.size(1) == h.size(1)),
              "camfields: gamma must be (N, 1) or (N, C)");
  TORCH_CHECK(h.scalar_type() == gamma.scalar_type() && h.scalar_type() == beta.scalar_type(),
              "camfields: h, gamma and beta must share a dtype");
}

at::Tensor forward(const at::Tensor& h, const at::Tensor& gamma, const at::Tensor& beta, int64_t norm,
                   int64_t groups, int64_t act, double eps) {
  check_inputs(h, gamma, beta);
  TORCH_CHECK(groups >= 1 && h.size(1) % groups == 0, "camfields: groups must divide the channels");
  return camfields::modulate_forward(h, gamma, beta, norm, groups, act, eps);
}

std::vector<at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& gamma,
                                 const at::Tensor& beta, int64_t norm, int64_t groups, int64_t act, double eps) {
  check_inputs(h, gamma, beta);
  TORCH_CHECK(grad_out.sizes() == h.sizes() && grad_out.is_contiguous() &&
                  grad_out.scalar_type() == h.scalar_type(),
              "camfields: grad_out must match h");
  TORCH_CHECK(groups >= 1 && h.size(1) % groups == 0, "camfields: groups must divide the channels");
  return camfields::modulate_backward(grad_out, h, gamma, beta, norm, groups, act, eps);
}

void check_grid(const at::Tensor& h, const at::Tensor& table, const at::Tensor& index, const at::Tensor& weight,
                int64_t column, int64_t width) {
  TORCH_CHECK(h.is_cuda() && table.is_cuda() && index.is_cuda() && weight.is_cuda(),
              "camfields: tensors must be on a CUDA device");
  TORCH_CHECK(h.dim() == 2 && table.dim() == 2 && index.dim() == 3 && weight.dim() == 3,
              "camfields: expected h (N, C), table (T, F), index and weight (N, P, K)");
  TORCH_CHECK(h.is_contiguous() && table.is_contiguous() && index.is_contiguous() && weight.is_contiguous(),
              "camfields: tensors must be contiguous");
  TORCH_CHECK(index.scalar_type() == at::kLong, "camfields: index must be int64");
  TORCH_CHECK(index.sizes() == weight.sizes() && index.size(0) == h.size(0), "camfields: index/weight mismatch");
  const auto table_type = h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(table.scalar_type() == table_type && weight.scalar_type() == table_type,
              "camfields: table and weight must be float32 (float64 when h is)");
  TORCH_CHECK(width == 1 || width == h.size(1), "camfields: width must be 1 or C");
  TORCH_CHECK(column >= 0 && column + 2 * width <= table.size(1), "camfields: columns outside the table");
}

// A plan that cannot overrun memory: every (point, column) in exactly one block, shared tiles in 48 KiB.
void check_plan(const camfields::TableGradPlan& plan, int64_t points, const at::Tensor& table, int64_t width2) {
  TORCH_CHECK(plan.strategy >= camfields::kSharedStrategy && plan.strategy <= camfields::kSortedStrategy,
              "camfields: unknown table-gradient strategy");
  if (plan.strategy == camfields::kGlobalStrategy) TORCH_CHECK(plan.chunks >= 1, "camfields: no blocks planned");
  if (plan.strategy != camfields::kSharedStrategy) return;
  TORCH_CHECK(plan.tile_width >= 1 && plan.tiles == (width2 + plan.tile_width - 1) / plan.tile_width,
              "camfields: column tiles do not cover the layer's columns");
  TORCH_CHECK(plan.chunk_points >= 1 && plan.chunks == (points + plan.chunk_points - 1) / plan.chunk_points,
              "camfields: point chunks do not cover the points");
  TORCH_CHECK(plan.copies == 1 || plan.copies == camfields::kTableGradWarps, "camfields: bad shared copies");
  TORCH_CHECK(plan.copies * table.size(0) * plan.tile_width * table.element_size() <= camfields::kSharedBytes,
              "camfields: the shared tile exceeds 48 KiB");
}

at::Tensor grid_forward(const at::Tensor& h, const at::Tensor& table, const at::Tensor& index,
                        const at::Tensor& weight, int64_t column, int64_t width, int64_t product, int64_t norm,
                        int64_t groups, int64_t act, double eps) {
  check_grid(h, table, index, weight, column, width);
  TORCH_CHECK(groups >= 1 && h.size(1) % groups == 0, "camfields: groups must divide the channels");
  return camfields::grid_modulate_forward(h, table, index, weight, column, width, product, norm, groups, act, eps);
}

std::vector<at::Tensor> grid_backward(const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& table,
                                      const at::Tensor& index, const at::Tensor& weight, int64_t column,
                                      int64_t width, int64_t product, int64_t norm, int64_t groups, int64_t act,
                                      double eps, bool need_weight_grad, std::vector<int64_t> plan_fields) {
  check_grid(h, table, index, weight, column, width);
  TORCH_CHECK(grad_out.sizes() == h.sizes() && grad_out.is_contiguous() &&
                  grad_out.scalar_type() == h.scalar_type(),
              "camfields: grad_out must match h");
  TORCH_CHECK(groups >= 1 && h.size(1) % groups == 0, "camfields: groups must divide the channels");
  TORCH_CHECK(plan_fields.size() == 6, "camfields: a table-gradient plan has 6 fields");
  const camfields::TableGradPlan plan{plan_fields[0], plan_fields[1], plan_fields[2],
                                      plan_fields[3], plan_fields[4], plan_fields[5]};
  check_plan(plan, h.size(0), table, 2 * width);
  return camfields::grid_modulate_backward(grad_out, h, table, index, weight, column, width, product, norm, groups,
                                           act, eps, need_weight_grad, plan);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("modulate_forward", &forward, "act(norm(h) * gamma + beta)");
  m.def("modulate_backward", &backward, "gradients of modulate_forward");
  m.def("grid_modulate_forward", &grid_forward, "modulate with gamma and beta read from a grid table");
  m.def("grid_modulate_backward", &grid_backward, "gradients of grid_modulate_forward");
  m.def("hash_encode_forward", &camfields::hash_encode_forward, "multi-resolution hash-grid features");
  m.def("hash_encode_backward", &camfields::hash_encode_backward, "gradients of hash_encode_forward");
}
