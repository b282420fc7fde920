// Device helpers shared by the camfields kernels: warp reductions, activations and their
// derivatives (codes of enum Activation in modulate.h), and per-group normalization statistics.
// One warp handles one point; kWarpsPerBlock points share a block.
#pragma once

#include <cstdint>

#include "modulate.h"

namespace camfields {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__device__ __forceinline__ T activate(T z, int act) {
  switch (act) {
    case kRelu: return z > T(0) ? z : T(0);
    case kLeakyRelu: return z > T(0) ? z : T(0.01) * z;
    case kSoftplus: return z > T(20) ? z : log1p(exp(z));
    case kSigmoid: return T(1) / (T(1) + exp(-z));
    case kTanh: return tanh(z);
    case kSilu: return z / (T(1) + exp(-z));
    case kGelu: return T(0.5) * z * (T(1) + erf(z * T(0.70710678118654752440)));
    default: return z;
  }
}

// d act(z) / dz
template <typename T>
__device__ __forceinline__ T activate_grad(T z, int act) {
  switch (act) {
    case kRelu: return z > T(0) ? T(1) : T(0);
    case kLeakyRelu: return z > T(0) ? T(1) : T(0.01);
    case kSoftplus: return z > T(20) ? T(1) : T(1) / (T(1) + exp(-z));
    case kSigmoid: {
      T s = T(1) / (T(1) + exp(-z));
      return s * (T(1) - s);
    }
    case kTanh: {
      T t = tanh(z);
      return T(1) - t * t;
    }
    case kSilu: {
      T s = T(1) / (T(1) + exp(-z));
      return s * (T(1) + z * (T(1) - s));
    }
    case kGelu: {
      T cdf = T(0.5) * (T(1) + erf(z * T(0.70710678118654752440)));
      T pdf = exp(T(-0.5) * z * z) * T(0.39894228040143267794);
      return cdf + z * pdf;
    }
    default: return T(1);
  }
}

// Mean and inverse standard deviation of one group of one point (two passes, exact).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void group_stats(const scalar_t* row, int begin, int count, acc_t eps, int lane,
                                            acc_t& mean, acc_t& rstd) {
  acc_t sum = 0;
  for (int c = lane; c < count; c += kWarp) sum += static_cast<acc_t>(row[begin + c]);
  mean = warp_sum(sum) / count;
  acc_t sq = 0;
  for (int c = lane; c < count; c += kWarp) {
    acc_t d = static_cast<acc_t>(row[begin + c]) - mean;
    sq += d * d;
  }
  rstd = rsqrt(warp_sum(sq) / count + eps);
}

inline int64_t num_blocks(int64_t n) { return (n + kWarpsPerBlock - 1) / kWarpsPerBlock; }

}  // namespace camfields
