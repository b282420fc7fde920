// Fused multi-resolution hash-grid encoding (Instant-NGP): forward and backward, all levels in
// one launch. Same semantics as camfields.ops.hash_encode.hash_encode (PyTorch reference):
//   coords (N, D)  in [-1, 1] (float or double), clamped to the edges
//   table  (T, F)  rows of every level (float, half, bfloat16 or double)
//   level l: R nodes per axis from row offsets[l]; per axis, pos = ((x + 1) / 2) * (R - 1),
//            base = clamp(floor(pos), 0, R - 2), frac = pos - base; corner k of the 2^D takes
//            bit (k >> (D - 1 - d)) & 1 on axis d (itertools.product order) and the weight
//            prod_d (bit ? frac : 1 - frac); node i sits at row i0 + R (i1 + R (...)) of a dense
//            level, at (xor_d i_d * primes[d]) & (table_size - 1) of a hashed one
//   out    (N, L * F) levels side by side, or (N, F) their sum (reduce_sum)
// One thread per (point, level, chunk of kChunk features); with reduce_sum one per (point,
// chunk), walking every level. Consecutive threads take consecutive points of one level and
// chunk, so a warp reads the rows of one level. Cells, rows and weights live in registers.
// Backward: table gradients by atomicAdd into a buffer of the accumulation type (float for
// float, half and bfloat16 tables, cast to the table's dtype after the kernel; double for
// double); coordinate gradients (d weight / d frac * (R - 1) / 2, zero where the clamp is
// flat: x <= -1 or x >= 1, as torch's clamp gradient) as per-thread partial sums
// (threads per point, N, D), added after the kernel, so they are deterministic.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "hash_encode.h"

namespace camfields {
namespace {

constexpr int kChunk = 8;      // features per thread
constexpr int kThreads = 128;  // threads per block

struct HashArgs {
  int dim;
  int levels;
  int features;  // F, the table's row length
  int chunks;    // ceil(F / kChunk)
  int groups;    // output level groups: levels, or 1 with reduce_sum
  bool sum;
  uint32_t mask;  // table_size - 1
  uint32_t primes[kHashMaxDim];
  int resolution[kHashMaxLevels];
  bool hashed[kHashMaxLevels];
  int64_t offset[kHashMaxLevels];
};

// Kernels are compiled for DIM = 2 and 3 input dimensions (fixed-size register arrays) and
// for DIM = 0: any dimension up to kHashMaxDim, read from HashArgs at run time.
template <int DIM>
constexpr int kSlots = DIM > 0 ? DIM : kHashMaxDim;

template <int DIM>
__device__ __forceinline__ int dims(const HashArgs& a) {
  return DIM > 0 ? DIM : a.dim;
}

// One point's cell at one level: lower node, fraction and d frac / d x per axis.
template <typename coord_t, int DIM>
struct Cell {
  int base[kSlots<DIM>];
  coord_t frac[kSlots<DIM>];
  coord_t dfrac[kSlots<DIM>];
};

template <typename coord_t, int DIM>
__device__ __forceinline__ Cell<coord_t, DIM> locate(const coord_t* x, const HashArgs& a, int level) {
  Cell<coord_t, DIM> cell;
  const coord_t res = static_cast<coord_t>(a.resolution[level]);
#pragma unroll
  for (int d = 0; d < kSlots<DIM>; ++d) {
    if (d < dims<DIM>(a)) {
      const coord_t xd = x[d];
      const coord_t pos = ((fmin(fmax(xd, coord_t(-1)), coord_t(1)) + coord_t(1)) * coord_t(0.5)) * (res - coord_t(1));
      const coord_t base = fmax(fmin(floor(pos), res - coord_t(2)), coord_t(0));
      cell.base[d] = static_cast<int>(base);
      cell.frac[d] = pos - base;
      cell.dfrac[d] = (xd > coord_t(-1) && xd < coord_t(1)) ? coord_t(0.5) * (res - coord_t(1)) : coord_t(0);
    }
  }
  return cell;
}

__device__ __forceinline__ int corner_bit(int k, int d, int dim) { return (k >> (dim - 1 - d)) & 1; }

// Row of corner k relative to the level's first row.
template <typename coord_t, int DIM>
__device__ __forceinline__ uint32_t corner_row(const Cell<coord_t, DIM>& cell, const HashArgs& a, int level, int k) {
  const int dim = dims<DIM>(a);
  uint32_t row = 0;
  if (a.hashed[level]) {
#pragma unroll
    for (int d = 0; d < kSlots<DIM>; ++d)
      if (d < dim) row ^= static_cast<uint32_t>(cell.base[d] + corner_bit(k, d, dim)) * a.primes[d];
    return row & a.mask;
  }
  const uint32_t res = static_cast<uint32_t>(a.resolution[level]);
#pragma unroll
  for (int d = kSlots<DIM> - 1; d >= 0; --d)
    if (d < dim) row = row * res + static_cast<uint32_t>(cell.base[d] + corner_bit(k, d, dim));
  return row;
}

// Weight factor of corner k along axis d.
template <typename coord_t, int DIM>
__device__ __forceinline__ coord_t corner_factor(const Cell<coord_t, DIM>& cell, int k, int d, int dim) {
  return corner_bit(k, d, dim) ? cell.frac[d] : coord_t(1) - cell.frac[d];
}

// The thread's point, output level group and first feature column.
struct Work {
  int64_t point;
  int group;
  int col;
  int width;  // features of this chunk
  int first_level;
  int last_level;  // exclusive
};

__device__ __forceinline__ Work work_of(int64_t t, int64_t n, const HashArgs& a) {
  Work w;
  w.point = t % n;
  const int64_t rest = t / n;
  w.group = static_cast<int>(rest / a.chunks);
  w.col = static_cast<int>(rest % a.chunks) * kChunk;
  w.width = min(kChunk, a.features - w.col);
  w.first_level = a.sum ? 0 : w.group;
  w.last_level = a.sum ? a.levels : w.group + 1;
  return w;
}

// Offset of the thread's first output feature in the (N, groups * F) output.
__device__ __forceinline__ int64_t out_index(const Work& w, const HashArgs& a) {
  return w.point * a.groups * a.features + static_cast<int64_t>(w.group) * a.features + w.col;
}

template <typename scalar_t, typename coord_t, int DIM>
__global__ void __launch_bounds__(kThreads)
    hash_encode_forward_kernel(const coord_t* __restrict__ coords, const scalar_t* __restrict__ table,
                               const HashArgs a, scalar_t* __restrict__ out, int64_t n, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= total) return;
  const int dim = dims<DIM>(a);
  const Work w = work_of(t, n, a);
  acc_t acc[kChunk];
#pragma unroll
  for (int j = 0; j < kChunk; ++j) acc[j] = acc_t(0);
  for (int level = w.first_level; level < w.last_level; ++level) {
    const auto cell = locate<coord_t, DIM>(coords + w.point * dim, a, level);
    for (int k = 0; k < (1 << dim); ++k) {
      coord_t weight = 1;
#pragma unroll
      for (int d = 0; d < kSlots<DIM>; ++d)
        if (d < dim) weight *= corner_factor(cell, k, d, dim);
      const scalar_t* entry = table + (a.offset[level] + corner_row(cell, a, level, k)) * a.features + w.col;
#pragma unroll
      for (int j = 0; j < kChunk; ++j)
        if (j < w.width) acc[j] += static_cast<acc_t>(weight) * static_cast<acc_t>(entry[j]);
    }
  }
  scalar_t* dst = out + out_index(w, a);
#pragma unroll
  for (int j = 0; j < kChunk; ++j)
    if (j < w.width) dst[j] = static_cast<scalar_t>(acc[j]);
}

// grad_table (T, F) of the accumulation type, or null; grad_coords (threads per point, N, D)
// partial sums, or null.
template <typename scalar_t, typename coord_t, int DIM>
__global__ void __launch_bounds__(kThreads)
    hash_encode_backward_kernel(const scalar_t* __restrict__ grad_out, const coord_t* __restrict__ coords,
                                const scalar_t* __restrict__ table, const HashArgs a,
                                at::opmath_type<scalar_t>* __restrict__ grad_table,
                                coord_t* __restrict__ grad_coords, int64_t n, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= total) return;
  const int dim = dims<DIM>(a);
  const Work w = work_of(t, n, a);
  acc_t g[kChunk];
  const scalar_t* g_row = grad_out + out_index(w, a);
#pragma unroll
  for (int j = 0; j < kChunk; ++j) g[j] = j < w.width ? static_cast<acc_t>(g_row[j]) : acc_t(0);
  coord_t grad_x[kSlots<DIM>];
#pragma unroll
  for (int d = 0; d < kSlots<DIM>; ++d) grad_x[d] = coord_t(0);
  for (int level = w.first_level; level < w.last_level; ++level) {
    const auto cell = locate<coord_t, DIM>(coords + w.point * dim, a, level);
    coord_t grad_frac[kSlots<DIM>];
#pragma unroll
    for (int d = 0; d < kSlots<DIM>; ++d) grad_frac[d] = coord_t(0);
    for (int k = 0; k < (1 << dim); ++k) {
      coord_t factor[kSlots<DIM>];
      coord_t weight = 1;
#pragma unroll
      for (int d = 0; d < kSlots<DIM>; ++d) {
        factor[d] = d < dim ? corner_factor(cell, k, d, dim) : coord_t(1);
        weight *= factor[d];
      }
      const int64_t row = (a.offset[level] + corner_row(cell, a, level, k)) * a.features + w.col;
      if (grad_table != nullptr) {
#pragma unroll
        for (int j = 0; j < kChunk; ++j)
          if (j < w.width) atomicAdd(grad_table + row + j, static_cast<acc_t>(weight) * g[j]);
      }
      if (grad_coords != nullptr) {
        acc_t dot = 0;  // d loss / d weight of this corner
#pragma unroll
        for (int j = 0; j < kChunk; ++j)
          if (j < w.width) dot += g[j] * static_cast<acc_t>(table[row + j]);
#pragma unroll
        for (int d = 0; d < kSlots<DIM>; ++d) {
          if (d < dim) {
            coord_t others = static_cast<coord_t>(dot);  // dot * prod_{e != d} factor_e
#pragma unroll
            for (int e = 0; e < kSlots<DIM>; ++e)
              if (e != d) others *= factor[e];
            grad_frac[d] += corner_bit(k, d, dim) ? others : -others;
          }
        }
      }
    }
#pragma unroll
    for (int d = 0; d < kSlots<DIM>; ++d)
      if (d < dim) grad_x[d] += grad_frac[d] * cell.dfrac[d];
  }
  if (grad_coords != nullptr) {
#pragma unroll
    for (int d = 0; d < kSlots<DIM>; ++d)
      if (d < dim) grad_coords[t * dim + d] = grad_x[d];
  }
}

// Checks what memory safety needs and packs the layout for the kernels.
HashArgs make_args(const at::Tensor& coords, const at::Tensor& table, const std::vector<int64_t>& resolutions,
                   const std::vector<int64_t>& offsets, const std::vector<bool>& hashed,
                   const std::vector<int64_t>& primes, int64_t table_size, bool reduce_sum) {
  TORCH_CHECK(coords.is_cuda() && table.is_cuda() && coords.device() == table.device(),
              "camfields: coords and table must be on one CUDA device");
  TORCH_CHECK(coords.dim() == 2 && table.dim() == 2, "camfields: expected coords (N, D) and table (T, F)");
  TORCH_CHECK(coords.is_contiguous() && table.is_contiguous(), "camfields: tensors must be contiguous");
  TORCH_CHECK(coords.scalar_type() == at::kFloat || coords.scalar_type() == at::kDouble,
              "camfields: coords must be float32 or float64");
  const int64_t dim = coords.size(1);
  const int64_t levels = static_cast<int64_t>(resolutions.size());
  TORCH_CHECK(dim >= 1 && dim <= kHashMaxDim, "camfields: a hash grid takes 1 to 7 input dimensions");
  TORCH_CHECK(levels >= 1 && levels <= kHashMaxLevels, "camfields: the fused hash grid takes 1 to 64 levels");
  TORCH_CHECK(static_cast<int64_t>(offsets.size()) == levels && static_cast<int64_t>(hashed.size()) == levels &&
                  static_cast<int64_t>(primes.size()) == dim,
              "camfields: one resolution, offset and hashed flag per level, one prime per dimension");
  TORCH_CHECK(table_size >= 2 && table_size <= (int64_t(1) << 30) && (table_size & (table_size - 1)) == 0,
              "camfields: table_size must be a power of two from 2 to 2**30");
  TORCH_CHECK(table.size(1) >= 1 && table.size(1) <= INT_MAX, "camfields: the table needs 1 to INT_MAX columns");
  HashArgs a{};
  a.dim = static_cast<int>(dim);
  a.levels = static_cast<int>(levels);
  a.features = static_cast<int>(table.size(1));
  a.chunks = (a.features + kChunk - 1) / kChunk;
  a.groups = reduce_sum ? 1 : a.levels;
  a.sum = reduce_sum;
  a.mask = static_cast<uint32_t>(table_size - 1);
  for (int64_t d = 0; d < dim; ++d) {
    TORCH_CHECK(primes[d] >= 0 && primes[d] <= int64_t(UINT32_MAX), "camfields: hash primes must fit 32 bits");
    a.primes[d] = static_cast<uint32_t>(primes[d]);
  }
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t res = resolutions[l];
    TORCH_CHECK(res >= 2 && res <= (int64_t(1) << 24), "camfields: level resolutions must be 2 to 2**24");
    int64_t rows = table_size;
    if (!hashed[l]) {  // a dense level holds res ** dim <= table_size rows
      rows = 1;
      for (int64_t d = 0; d < dim && rows <= table_size; ++d) rows *= res;
      TORCH_CHECK(rows <= table_size, "camfields: a dense level has more nodes than table_size");
    }
    TORCH_CHECK(offsets[l] >= 0 && offsets[l] <= table.size(0) - rows, "camfields: a level lies outside the table");
    a.resolution[l] = static_cast<int>(res);
    a.hashed[l] = hashed[l];
    a.offset[l] = offsets[l];
  }
  return a;
}

int64_t thread_count(int64_t n, const HashArgs& a) { return n * a.groups * a.chunks; }

unsigned int block_count(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks <= INT_MAX, "camfields: too many points for one launch");
  return static_cast<unsigned int>(blocks);
}

template <typename scalar_t, typename coord_t, int DIM>
void launch_forward(const at::Tensor& coords, const at::Tensor& table, const HashArgs& a, at::Tensor& out) {
  const int64_t n = coords.size(0), total = thread_count(n, a);
  hash_encode_forward_kernel<scalar_t, coord_t, DIM>
      <<<block_count(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          coords.data_ptr<coord_t>(), table.data_ptr<scalar_t>(), a, out.data_ptr<scalar_t>(), n, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename coord_t, int DIM>
void launch_backward(const at::Tensor& grad_out, const at::Tensor& coords, const at::Tensor& table, const HashArgs& a,
                     at::Tensor& grad_table, at::Tensor& grad_coords) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = coords.size(0), total = thread_count(n, a);
  hash_encode_backward_kernel<scalar_t, coord_t, DIM>
      <<<block_count(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          grad_out.data_ptr<scalar_t>(), coords.data_ptr<coord_t>(), table.data_ptr<scalar_t>(), a,
          grad_table.defined() ? grad_table.data_ptr<acc_t>() : nullptr,
          grad_coords.defined() ? grad_coords.data_ptr<coord_t>() : nullptr, n, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Calls launch<coord_t, DIM>(): float coordinates in 2 or 3 dimensions get their own kernels,
// double coordinates and other dimensions the run-time-dimension ones.
template <typename Launch>
void dispatch_coords(const at::Tensor& coords, const HashArgs& a, const Launch& launch) {
  if (coords.scalar_type() == at::kDouble) launch(std::integral_constant<int, 0>(), double());
  else if (a.dim == 2) launch(std::integral_constant<int, 2>(), float());
  else if (a.dim == 3) launch(std::integral_constant<int, 3>(), float());
  else launch(std::integral_constant<int, 0>(), float());
}

}  // namespace

at::Tensor hash_encode_forward(const at::Tensor& coords, const at::Tensor& table,
                               const std::vector<int64_t>& resolutions, const std::vector<int64_t>& offsets,
                               const std::vector<bool>& hashed, const std::vector<int64_t>& primes,
                               int64_t table_size, bool reduce_sum) {
  const HashArgs a = make_args(coords, table, resolutions, offsets, hashed, primes, table_size, reduce_sum);
  const c10::cuda::CUDAGuard guard(coords.device());
  at::Tensor out = at::empty({coords.size(0), int64_t(a.groups) * a.features}, table.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, table.scalar_type(), "hash_encode_forward", [&] {
    dispatch_coords(coords, a, [&](auto dim, auto coord) {
      launch_forward<scalar_t, decltype(coord), decltype(dim)::value>(coords, table, a, out);
    });
  });
  return out;
}

std::vector<at::Tensor> hash_encode_backward(const at::Tensor& grad_out, const at::Tensor& coords,
                                             const at::Tensor& table, const std::vector<int64_t>& resolutions,
                                             const std::vector<int64_t>& offsets, const std::vector<bool>& hashed,
                                             const std::vector<int64_t>& primes, int64_t table_size,
                                             bool reduce_sum, bool need_table_grad, bool need_coords_grad) {
  const HashArgs a = make_args(coords, table, resolutions, offsets, hashed, primes, table_size, reduce_sum);
  const int64_t n = coords.size(0);
  TORCH_CHECK(grad_out.is_cuda() && grad_out.device() == table.device() && grad_out.is_contiguous() &&
                  grad_out.scalar_type() == table.scalar_type() && grad_out.dim() == 2 && grad_out.size(0) == n &&
                  grad_out.size(1) == int64_t(a.groups) * a.features,
              "camfields: grad_out must be a contiguous (N, out_features) tensor of the table's dtype");
  const c10::cuda::CUDAGuard guard(coords.device());
  const auto acc_type = table.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor grad_table, partial;
  if (need_table_grad) grad_table = at::zeros(table.sizes(), table.options().dtype(acc_type));
  if (need_coords_grad) partial = at::empty({int64_t(a.groups) * a.chunks, n, a.dim}, coords.options());
  if (n > 0 && (need_table_grad || need_coords_grad)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, table.scalar_type(), "hash_encode_backward", [&] {
      dispatch_coords(coords, a, [&](auto dim, auto coord) {
        launch_backward<scalar_t, decltype(coord), decltype(dim)::value>(grad_out, coords, table, a, grad_table,
                                                                         partial);
      });
    });
  }
  if (need_table_grad && acc_type != table.scalar_type()) grad_table = grad_table.to(table.scalar_type());
  return {grad_table, need_coords_grad ? partial.sum(0) : at::Tensor()};
}

}  // namespace camfields
