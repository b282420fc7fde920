// Python bindings of the camfields CUDA extension. Inputs are validated in Python
// (camfields.ops.cuda_backend) before these are called; the checks here guard memory safety.
#include <torch/extension.h>

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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("modulate_forward", &forward, "act(norm(h) * gamma + beta)");
  m.def("modulate_backward", &backward, "gradients of modulate_forward");
}
