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

}  // namespace camfields
