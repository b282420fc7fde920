// Declarations of the fused multi-resolution hash-grid encoding (cuda/hash_encode.cu).
// The level layout comes from camfields.ops.hash_encode.HashLayout.kernel_args().
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace camfields {

constexpr int kHashMaxDim = 7;      // input dimensions (len(HASH_PRIMES))
constexpr int kHashMaxLevels = 64;  // camfields.ops.hash_encode.MAX_FUSED_LEVELS

// Features of coords (N, D) read from table (T, F): (N, L * F) levels side by side, or (N, F)
// their sum when reduce_sum. Level l has resolutions[l] nodes per axis and starts at row
// offsets[l]; hashed[l] levels hash nodes with primes (D of them) into table_size rows.
at::Tensor hash_encode_forward(const at::Tensor& coords, const at::Tensor& table,
                               const std::vector<int64_t>& resolutions, const std::vector<int64_t>& offsets,
                               const std::vector<bool>& hashed, const std::vector<int64_t>& primes,
                               int64_t table_size, bool reduce_sum);

// Gradients (table, coords) of hash_encode_forward for the cotangent grad_out; each is
// undefined unless asked for.
std::vector<at::Tensor> hash_encode_backward(const at::Tensor& grad_out, const at::Tensor& coords,
                                             const at::Tensor& table, const std::vector<int64_t>& resolutions,
                                             const std::vector<int64_t>& offsets, const std::vector<bool>& hashed,
                                             const std::vector<int64_t>& primes, int64_t table_size,
                                             bool reduce_sum, bool need_table_grad, bool need_coords_grad);

}  // namespace camfields
