// Fused coordinate-aware modulation: out = act(norm(h) * gamma + beta), forward and backward.
//
// Same semantics as camfields.ops.modulate (the PyTorch reference):
//   h      (N, C)   pre-activations
//   gamma  (N, G)   G == 1 (one scale shared by the channels) or G == C (per channel)
//   beta   (N, G)   the shift, same rule
//   norm   0: none; 1: group norm over channels with `groups` groups, no affine
//          (layer norm is groups == 1)
//   act    see enum Activation
// One warp handles one point: it walks the point's channels once per pass, so neither
// the normalized tensor nor gamma/beta broadcast to (N, C) is ever written to memory.
// Statistics and all arithmetic use at::opmath_type (float for half / bfloat16 / float).

// Light includes only: ATen/cuda/CUDAContext.h would pull in cuBLAS and cuSPARSE headers,
// which minimal CUDA toolkits lack.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "device_math.cuh"
#include "modulate.h"

namespace camfields {
namespace {

template <typename scalar_t>
__global__ void modulate_forward_kernel(const scalar_t* __restrict__ h, const scalar_t* __restrict__ gamma,
                                        const scalar_t* __restrict__ beta, scalar_t* __restrict__ out, int64_t n,
                                        int channels, int mod_width, int norm, int groups, int act, float eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t point = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (point >= n) return;
  const scalar_t* row = h + point * channels;
  scalar_t* out_row = out + point * channels;
  const scalar_t* g_row = gamma + point * mod_width;
  const scalar_t* b_row = beta + point * mod_width;
  const int group_size = channels / groups;
  for (int g = 0; g < groups; ++g) {
    const int begin = g * group_size;
    acc_t mean = 0, rstd = 1;
    if (norm) group_stats<scalar_t, acc_t>(row, begin, group_size, static_cast<acc_t>(eps), lane, mean, rstd);
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      const int m = mod_width == 1 ? 0 : c;
      acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      acc_t z = x * static_cast<acc_t>(g_row[m]) + static_cast<acc_t>(b_row[m]);
      out_row[c] = static_cast<scalar_t>(activate(z, act));
    }
  }
}

template <typename scalar_t>
__global__ void modulate_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ h,
                                         const scalar_t* __restrict__ gamma, const scalar_t* __restrict__ beta,
                                         scalar_t* __restrict__ grad_h, scalar_t* __restrict__ grad_gamma,
                                         scalar_t* __restrict__ grad_beta, int64_t n, int channels, int mod_width,
                                         int norm, int groups, int act, float eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t point = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (point >= n) return;
  const scalar_t* row = h + point * channels;
  const scalar_t* go_row = grad_out + point * channels;
  scalar_t* gh_row = grad_h + point * channels;
  const scalar_t* g_row = gamma + point * mod_width;
  const scalar_t* b_row = beta + point * mod_width;
  const int group_size = channels / groups;
  acc_t shared_dgamma = 0, shared_dbeta = 0;  // for mod_width == 1
  for (int g = 0; g < groups; ++g) {
    const int begin = g * group_size;
    acc_t mean = 0, rstd = 1;
    if (norm) group_stats<scalar_t, acc_t>(row, begin, group_size, static_cast<acc_t>(eps), lane, mean, rstd);
    // pass 1: gradients of gamma and beta, and the two sums the norm backward needs
    acc_t sum_dn = 0, sum_dn_x = 0;
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      const int m = mod_width == 1 ? 0 : c;
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      const acc_t gam = static_cast<acc_t>(g_row[m]);
      const acc_t dz = static_cast<acc_t>(go_row[c]) * activate_grad(x * gam + static_cast<acc_t>(b_row[m]), act);
      const acc_t dn = dz * gam;
      sum_dn += dn;
      sum_dn_x += dn * x;
      if (mod_width == 1) {
        shared_dgamma += dz * x;
        shared_dbeta += dz;
      } else {
        grad_gamma[point * mod_width + c] = static_cast<scalar_t>(dz * x);
        grad_beta[point * mod_width + c] = static_cast<scalar_t>(dz);
      }
    }
    if (norm) {
      sum_dn = warp_sum(sum_dn) / group_size;
      sum_dn_x = warp_sum(sum_dn_x) / group_size;
    }
    // pass 2: gradient of h
    for (int c = begin + lane; c < begin + group_size; c += kWarp) {
      const int m = mod_width == 1 ? 0 : c;
      const acc_t x = (static_cast<acc_t>(row[c]) - mean) * rstd;
      const acc_t gam = static_cast<acc_t>(g_row[m]);
      const acc_t dn =
          static_cast<acc_t>(go_row[c]) * activate_grad(x * gam + static_cast<acc_t>(b_row[m]), act) * gam;
      gh_row[c] = static_cast<scalar_t>(norm ? rstd * (dn - sum_dn - x * sum_dn_x) : dn);
    }
  }
  if (mod_width == 1) {
    shared_dgamma = warp_sum(shared_dgamma);
    shared_dbeta = warp_sum(shared_dbeta);
    if (lane == 0) {
      grad_gamma[point] = static_cast<scalar_t>(shared_dgamma);
      grad_beta[point] = static_cast<scalar_t>(shared_dbeta);
    }
  }
}

}  // namespace

at::Tensor modulate_forward(const at::Tensor& h, const at::Tensor& gamma, const at::Tensor& beta, int64_t norm,
                            int64_t groups, int64_t act, double eps) {
  const c10::cuda::CUDAGuard guard(h.device());
  auto out = at::empty_like(h);
  const int64_t n = h.size(0);
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "modulate_forward", [&] {
    modulate_forward_kernel<scalar_t><<<num_blocks(n), kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
        h.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n,
        static_cast<int>(h.size(1)), static_cast<int>(gamma.size(1)), static_cast<int>(norm),
        static_cast<int>(groups), static_cast<int>(act), static_cast<float>(eps));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> modulate_backward(const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& gamma,
                                          const at::Tensor& beta, int64_t norm, int64_t groups, int64_t act,
                                          double eps) {
  const c10::cuda::CUDAGuard guard(h.device());
  auto grad_h = at::empty_like(h);
  auto grad_gamma = at::empty_like(gamma);
  auto grad_beta = at::empty_like(beta);
  const int64_t n = h.size(0);
  if (n == 0) return {grad_h, grad_gamma, grad_beta};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "modulate_backward", [&] {
    modulate_backward_kernel<scalar_t>
        <<<num_blocks(n), kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            grad_out.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(),
            beta.data_ptr<scalar_t>(), grad_h.data_ptr<scalar_t>(), grad_gamma.data_ptr<scalar_t>(),
            grad_beta.data_ptr<scalar_t>(), n, static_cast<int>(h.size(1)), static_cast<int>(gamma.size(1)),
            static_cast<int>(norm), static_cast<int>(groups), static_cast<int>(act), static_cast<float>(eps));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_h, grad_gamma, grad_beta};
}

}  // namespace camfields
