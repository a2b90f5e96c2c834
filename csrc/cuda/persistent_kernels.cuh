// The persistent kernels: one cooperative launch per layer direction runs every time step.
//
// Block b owns hidden units [b * units, (b + 1) * units). Forward, it keeps the G gate rows of those
// units of W_hh (gate-interleaved, [G * units, P]) in shared memory for the whole sequence; backward,
// it keeps the same units' columns of W_hh ([units, G * H], from W_hh^T). Per step it stages the rows
// the product needs (h_{t-1} forward, the next step's gate gradients backward) in shared memory in
// chunks of rows, multiplies them with its slice, applies the cell math of step_kernels.cuh to its
// units, and meets the other blocks at one grid-wide barrier. Per-unit state (c, dc, carry, dh0) is
// owned by one block for the whole launch, so only h (forward) and the gate gradients (backward) cross
// blocks, always through the barrier. Generic over the cell, like the step kernels. Included by
// lstm_persistent.cu, gru_persistent.cu and rnn_persistent.cu.
#pragma once

#include <cooperative_groups.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/persistent_args.h"
#include "cuda/step_kernels.cuh"

namespace fusedrnn::cuda {

constexpr int kPersistentThreads = 256;
constexpr int kPersistentWarps = kPersistentThreads / 32;
constexpr int kMaxChunkRows = 64;

__host__ __device__ constexpr int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
__host__ __device__ constexpr int64_t ceil_div(int64_t n, int64_t m) { return (n + m - 1) / m; }

// ----------------------------------------------------------------------------- FMA slice product

// One halving stage: lanes whose `2 * Half` bit is set keep the upper half of v[0 .. 2 * Half), the
// others the lower half, each adding the partner lane's copy of the half it keeps.
template <int Half>
__device__ __forceinline__ void halve(float (&v)[16], int lane) {
  const bool upper = lane & (2 * Half);
#pragma unroll
  for (int i = 0; i < Half; ++i) {
    const float keep = upper ? v[i + Half] : v[i];
    const float give = upper ? v[i] : v[i + Half];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, give, 2 * Half);
  }
}

// Sums v[0..15] over the 32 lanes of a warp in 16 shuffles (recursive halving): afterwards the even
// lane l holds the total of v[(l >> 1) & 15].
__device__ __forceinline__ float warp_sum_16(float (&v)[16], int lane) {
  halve<8>(v, lane);
  halve<4>(v, lane);
  halve<2>(v, lane);
  halve<1>(v, lane);
  return v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
}

// out[s][r][j] = sum over the s-th part of k of x[r][k] * w[j][k], r < rows, j < J, for the parts
// s < ksplit the block splits K into (more parts when there are fewer 4x4 tiles than warps).
// w: [J, K] in shared memory (storage type), x: [rows, K] float, out: [ksplit, rows, J] float.
// Returns ksplit.
template <typename TW>
__device__ int fma_slice_product(const TW* w, int J, int K, const float* x, int rows, float* out) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int tiles_j = static_cast<int>(ceil_div(J, 4));
  const int tiles = tiles_j * static_cast<int>(ceil_div(rows, 4));
  const int iters = static_cast<int>(ceil_div(K, 32));
  const int ksplit = std::max(1, std::min(kPersistentWarps / tiles, iters));
  for (int item = warp; item < tiles * ksplit; item += kPersistentWarps) {
    const int tile = item % tiles, part = item / tiles;
    const int j0 = (tile % tiles_j) * 4, r0 = (tile / tiles_j) * 4;
    const TW* wr[4];
    const float* xr[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // clamped rows compute duplicates that are never stored
      wr[i] = w + static_cast<int64_t>(std::min(j0 + i, J - 1)) * K;
      xr[i] = x + static_cast<int64_t>(std::min(r0 + i, rows - 1)) * K;
    }
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) acc[i] = 0.0f;
    const int k_end = std::min(K, static_cast<int>((part + 1) * static_cast<int64_t>(iters) / ksplit) * 32);
    for (int k = static_cast<int>(part * static_cast<int64_t>(iters) / ksplit) * 32 + lane; k < k_end; k += 32) {
      float wv[4], xv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        wv[i] = to_float(wr[i][k]);
        xv[i] = xr[i][k];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[i * 4 + q] += wv[i] * xv[q];
    }
    const float total = warp_sum_16(acc, lane);
    const int index = (lane >> 1) & 15, j = j0 + index / 4, r = r0 + index % 4;
    if ((lane & 1) == 0 && j < J && r < rows) out[(static_cast<int64_t>(part) * rows + r) * J + j] = total;
  }
  return ksplit;
}

// ------------------------------------------------------------------------ tensor-core slice product

// The MMA operand type of a storage type: bf16/fp16 as they are, float as tf32.
template <typename T>
struct MmaOperand {
  using type = T;
  static constexpr int k = 16;  // K of one m16n16k16 product
  static constexpr int skew = 8;  // row padding (elements) that staggers shared-memory banks
  __device__ static T round(T v) { return v; }
};
template <>
struct MmaOperand<float> {
  using type = nvcuda::wmma::precision::tf32;
  static constexpr int k = 8;
  static constexpr int skew = 4;
  __device__ static float round(float v) { return nvcuda::wmma::__float_to_tf32(v); }
};

// Row length in shared memory of an MMA operand with K columns.
template <typename T>
__host__ __device__ constexpr int64_t mma_row(int64_t K) {
  return round_up(K, 16) + MmaOperand<T>::skew;
}

// As fma_slice_product, with 16x16 tiles on the tensor cores: w: [round16(J), ld] and x:
// [round16(rows), ld] in shared memory (storage type, K padded with zeros to ld), out: [ksplit,
// round16(rows), round16(J)] float. Returns ksplit.
template <typename T>
__device__ int mma_slice_product(const T* w, int J, int K, const T* x, int rows, float* out) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using Op = MmaOperand<T>;
  const int warp = threadIdx.x / 32;
  const int ld = static_cast<int>(mma_row<T>(K));
  const int J16 = static_cast<int>(round_up(J, 16)), R16 = static_cast<int>(round_up(rows, 16));
  const int tiles_j = J16 / 16, tiles = tiles_j * (R16 / 16);
  const int ksteps = static_cast<int>(ceil_div(K, Op::k));
  const int ksplit = std::max(1, std::min(kPersistentWarps / tiles, ksteps));
  for (int item = warp; item < tiles * ksplit; item += kPersistentWarps) {
    const int tile = item % tiles, part = item / tiles;
    const int j0 = (tile % tiles_j) * 16, r0 = (tile / tiles_j) * 16;
    wmma::fragment<wmma::matrix_a, 16, 16, Op::k, typename Op::type, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, Op::k, typename Op::type, wmma::col_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, Op::k, float> c;
    wmma::fill_fragment(c, 0.0f);
    const int s_end = static_cast<int>((part + 1) * static_cast<int64_t>(ksteps) / ksplit);
    for (int s = static_cast<int>(part * static_cast<int64_t>(ksteps) / ksplit); s < s_end; ++s) {
      wmma::load_matrix_sync(a, w + j0 * ld + s * Op::k, ld);
      wmma::load_matrix_sync(b, x + r0 * ld + s * Op::k, ld);
      wmma::mma_sync(c, a, b, c);
    }
    // c[m][n] is out[r0 + n][j0 + m]: column-major with leading dimension J16
    wmma::store_matrix_sync(out + (static_cast<int64_t>(part) * R16 + r0) * J16 + j0, c, J16, wmma::mem_col_major);
  }
  return ksplit;
#else
  __trap();
  return 0;
#endif
}

// ----------------------------------------------------------------------------------- staging

// Loads in flight per thread while staging rows into shared memory: the rows come from L2 (another
// block wrote them a step ago), so their latency, not bandwidth, bounds a one-load-at-a-time loop.
constexpr int kLoadsInFlight = 4;

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// store(i, load(i)) for the block's items i < total, each thread issuing kLoadsInFlight loads before
// it stores them. Index: int where the caller divides by it (64-bit division is slow on the GPU).
template <typename V, typename Index, typename Load, typename Store>
__device__ __forceinline__ void copy_in_flight(Index total, Load load, Store store) {
  for (Index base = threadIdx.x; base < total; base += kPersistentThreads * kLoadsInFlight) {
    V v[kLoadsInFlight];
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const Index i = base + u * kPersistentThreads;
      if (i < total) v[u] = load(i);
    }
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const Index i = base + u * kPersistentThreads;
      if (i < total) store(i, v[u]);
    }
  }
}

// x[r * ld + k] = convert(h.row(r0 + r)[k]) for r < rows, k < P; 16-byte loads where rows allow.
template <typename T, typename X, typename Convert>
__device__ __forceinline__ void stage_prev_rows(const PrevState<T>& h, int r0, int rows, int P, X* x, int64_t ld,
                                                Convert convert) {
  constexpr int E = 16 / sizeof(T);  // elements per 16-byte load
  if (P % E == 0 && aligned16(h.from_step) && aligned16(h.initial)) {
    const int per_row = P / E;
    copy_in_flight<uint4>(
        rows * per_row,
        [&](int i) { return *reinterpret_cast<const uint4*>(h.row(r0 + i / per_row) + (i % per_row) * E); },
        [&](int i, const uint4& v) {
          const T* e = reinterpret_cast<const T*>(&v);
          X* dst = x + (i / per_row) * ld + (i % per_row) * E;
#pragma unroll
          for (int q = 0; q < E; ++q) dst[q] = convert(e[q]);
        });
  } else {
    copy_in_flight<T>(
        rows * P, [&](int i) { return h.row(r0 + i / P)[i % P]; },
        [&](int i, const T& v) { x[(i / P) * ld + i % P] = convert(v); });
  }
}

// dst[i] = src[i] for i < n (float rows, contiguous), 16-byte loads where aligned.
__device__ __forceinline__ void stage_contiguous(const float* src, int64_t n, float* dst) {
  if (n % 4 == 0 && aligned16(src) && aligned16(dst)) {
    copy_in_flight<float4>(
        n / 4, [&](int64_t i) { return reinterpret_cast<const float4*>(src)[i]; },
        [&](int64_t i, const float4& v) { reinterpret_cast<float4*>(dst)[i] = v; });
  } else {
    copy_in_flight<float>(
        n, [&](int64_t i) { return src[i]; }, [&](int64_t i, float v) { dst[i] = v; });
  }
}

// ------------------------------------------------------------------------------------ forward

// Shared-memory layout of one forward block; host and device agree through this.
template <typename Cell, typename T, Product Kind>
struct ForwardSmem {
  static constexpr int G = Cell::gates;
  int64_t w_rows, row_len, x_rows, out_floats;
  __host__ __device__ ForwardSmem(int units, int P, int chunk_rows) {
    const int J = G * units;
    if constexpr (Kind == Product::Mma) {
      w_rows = round_up(J, 16);
      row_len = mma_row<T>(P);
      x_rows = round_up(chunk_rows, 16);
      out_floats = std::max<int64_t>(x_rows * w_rows, 256 * kPersistentWarps);
    } else {
      w_rows = J;
      row_len = P;
      x_rows = chunk_rows;
      out_floats = std::max<int64_t>(static_cast<int64_t>(chunk_rows) * J, 16 * kPersistentWarps);
    }
  }
  using XType = std::conditional_t<Kind == Product::Mma, T, float>;
  __host__ __device__ int64_t w_bytes() const { return round_up(w_rows * row_len * sizeof(T), 128); }
  __host__ __device__ int64_t x_bytes() const { return round_up(x_rows * row_len * sizeof(XType), 128); }
  __host__ __device__ int64_t bytes() const { return w_bytes() + x_bytes() + out_floats * 4; }
};

template <typename Cell, typename T, Product Kind>
__global__ void __launch_bounds__(kPersistentThreads) persistent_forward_kernel(const PersistentForwardArgs<T> p) {
  constexpr int G = Cell::gates;
  constexpr int W = Cell::workspace_cols;
  using Layout = ForwardSmem<Cell, T, Kind>;
  using X = typename Layout::XType;
  extern __shared__ __align__(128) unsigned char smem[];
  const int H = p.step.hidden, P = p.step.out;
  const int u0 = blockIdx.x * p.plan.units;
  const int units = std::min(p.plan.units, H - u0);
  const int J = G * units;
  const Layout layout(p.plan.units, P, p.plan.chunk_rows);
  T* w = reinterpret_cast<T*>(smem);                               // [w_rows, row_len]
  X* x = reinterpret_cast<X*>(smem + layout.w_bytes());            // [x_rows, row_len]
  float* out = reinterpret_cast<float*>(smem + layout.w_bytes() + layout.x_bytes());
  const int64_t row_len = layout.row_len;

  // The slice: rows [u0 * G, u0 * G + J) of the gate-interleaved W_hh; padding (MMA) is zero.
  const T* w_slice = p.step.w_hh + static_cast<int64_t>(u0) * G * P;
  for (int64_t i = threadIdx.x; i < layout.w_rows * row_len; i += kPersistentThreads) {
    const int64_t j = i / row_len, k = i % row_len;
    float v = j < J && k < P ? to_float(w_slice[j * P + k]) : 0.0f;
    if constexpr (Kind == Product::Mma) v = to_float(MmaOperand<T>::round(from_float<T>(v)));
    w[i] = from_float<T>(v);
  }
  if constexpr (Kind == Product::Mma) {  // x's K padding stays zero for the whole launch
    for (int64_t i = threadIdx.x; i < layout.x_rows * (row_len - P); i += kPersistentThreads)
      x[(i / (row_len - P)) * row_len + P + i % (row_len - P)] = from_float<T>(0.0f);
  }
  __syncthreads();

  // When every step fits one chunk with one (row, unit) per thread, thread i keeps that item for the
  // whole launch: it loads its recurrent bias once and the next step's input projection before the
  // barrier, so the loads overlap the wait instead of following the product.
  const bool one_item = p.schedule.batch * units <= kPersistentThreads && p.schedule.batch <= p.plan.chunk_rows;
  const int item_r = threadIdx.x / units, item_u = u0 + threadIdx.x % units;
  float xv[G], bv[G];
  auto step_args = [&](int k) {
    const StepRows st = p.schedule.at(k);
    ForwardStepArgs<T> a = p.step;
    a.rows = static_cast<int>(st.rows);
    if (p.h_slots != nullptr) {
      const int64_t slot = static_cast<int64_t>(p.schedule.batch) * P;
      a.h_prev.from_step = p.h_slots + ((k + 1) & 1) * slot;
      a.h_float = p.h_slots + (k & 1) * slot;
    } else if (a.h_prev.initial != nullptr) {
      a.h_prev.from_step = p.step.h_prev.from_step + st.prev_offset * P;
    } else {
      a.h_prev_stored.from_step = p.step.h_prev_stored.from_step + st.prev_offset * P;
    }
    a.h_prev.prev_rows = a.h_prev_stored.prev_rows = st.prev_rows;
    a.xproj = p.step.xproj + st.offset * G * H;
    a.h_out = p.step.h_out + st.offset * H;
    if (a.workspace != nullptr) a.workspace = p.step.workspace + st.offset * W * H;
    return a;
  };
  if (one_item && p.schedule.steps > 0) {
    const ForwardStepArgs<T> first = step_args(0);
    if (item_r < first.rows) load_cell_inputs<Cell, T>(first, item_r, item_u, xv, bv);
  }

  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int k = 0; k < p.schedule.steps; ++k) {
    const ForwardStepArgs<T> a = step_args(k);

    for (int r0 = 0; r0 < a.rows; r0 += p.plan.chunk_rows) {
      const int rows = std::min(p.plan.chunk_rows, a.rows - r0);
      if constexpr (Kind == Product::Mma) {  // the operands are T: stage h as stored
        stage_prev_rows(a.h_prev_stored, r0, rows, P, x, row_len, [](T v) { return MmaOperand<T>::round(v); });
      } else {
        stage_prev_rows(a.h_prev, r0, rows, P, x, row_len, [](float v) { return v; });
      }
      __syncthreads();
      int ksplit;
      int64_t out_rows, out_cols;
      if constexpr (Kind == Product::Mma) {
        ksplit = mma_slice_product<T>(w, J, P, x, rows, out);
        out_rows = round_up(rows, 16);
        out_cols = round_up(J, 16);
      } else {
        ksplit = fma_slice_product<T>(w, J, P, x, rows, out);
        out_rows = rows;
        out_cols = J;
      }
      __syncthreads();
      for (int i = threadIdx.x; i < rows * units; i += kPersistentThreads) {
        const int r = i / units, ul = i % units;
        float acc[G];
#pragma unroll
        for (int g = 0; g < G; ++g) {
          acc[g] = 0.0f;
          for (int s = 0; s < ksplit; ++s) acc[g] += out[(s * out_rows + r) * out_cols + ul * G + g];
        }
        if (one_item) {
          forward_cell<Cell, T>(a, r0 + r, u0 + ul, acc, xv, bv);
        } else {
          forward_epilogue<Cell, T>(a, r0 + r, u0 + ul, acc);
        }
      }
      __syncthreads();  // x and out are reused by the next chunk
    }
    if (one_item && k + 1 < p.schedule.steps) {
      const ForwardStepArgs<T> next = step_args(k + 1);
      if (item_r < next.rows) load_cell_inputs<Cell, T>(next, item_r, item_u, xv, bv);
    }
    grid.sync();  // h of this step is complete everywhere before any block reads it
  }
}

// ----------------------------------------------------------------------------------- backward

template <typename Cell, typename T>
struct BackwardSmem {
  static constexpr int G = Cell::gates;
  int64_t K, units, chunk_rows;
  __host__ __device__ BackwardSmem(int units_, int H, int chunk_rows_) : K(G * int64_t(H)), units(units_), chunk_rows(chunk_rows_) {}
  __host__ __device__ int64_t w_bytes() const { return round_up(units * K * sizeof(T), 128); }
  __host__ __device__ int64_t x_bytes() const { return round_up(chunk_rows * K * 4, 128); }
  __host__ __device__ int64_t out_floats() const { return std::max<int64_t>(chunk_rows * units, 16 * kPersistentWarps); }
  __host__ __device__ int64_t bytes() const { return w_bytes() + x_bytes() + out_floats() * 4; }
};

// Backward step k = T-1 .. 0 in reverse visiting order, then k = -1 for h0's gradient, exactly as the
// step kernels do it (see backward_step_kernel), one barrier per step.
template <typename Cell, typename T>
__global__ void __launch_bounds__(kPersistentThreads) persistent_backward_kernel(const PersistentBackwardArgs<T> p) {
  constexpr int G = Cell::gates;
  constexpr int W = Cell::workspace_cols;
  extern __shared__ __align__(128) unsigned char smem[];
  const int H = p.step.hidden;
  const int64_t K = static_cast<int64_t>(G) * H;
  const int u0 = blockIdx.x * p.plan.units;
  const int units = std::min(p.plan.units, H - u0);
  const BackwardSmem<Cell, T> layout(p.plan.units, H, p.plan.chunk_rows);
  T* w = reinterpret_cast<T*>(smem);                                      // [units, K]: W_hh[:, u0 + c]
  float* x = reinterpret_cast<float*>(smem + layout.w_bytes());           // [chunk_rows, K]
  float* out = reinterpret_cast<float*>(smem + layout.w_bytes() + layout.x_bytes());

  const T* w_slice = p.step.w_hh_t + static_cast<int64_t>(u0) * K;
  for (int64_t i = threadIdx.x; i < units * K; i += kPersistentThreads) w[i] = w_slice[i];
  __syncthreads();

  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  const int T_steps = p.schedule.steps;
  for (int k = T_steps - 1; k >= -1; --k) {
    BackwardStepArgs<T> a = p.step;
    a.rows = 0;
    a.dgates_next = nullptr;
    a.next_rows = 0;
    a.next_prev_rows = 0;
    if (k + 1 < T_steps) {
      const StepRows next = p.schedule.at(k + 1);
      a.dgates_next = p.dgates_next + next.offset * K;
      a.next_rows = static_cast<int>(next.rows);
      a.next_prev_rows = static_cast<int>(next.prev_rows);
    }
    if (k >= 0) {
      const StepRows cur = p.schedule.at(k);
      a.rows = static_cast<int>(cur.rows);
      a.grad_y = p.step.grad_y + cur.offset * H;
      a.workspace = p.step.workspace + cur.offset * W * H;
      if constexpr (Cell::states == 2)
        a.c_prev = PrevState<float>{p.step.workspace + cur.prev_offset * W * H + Cell::saved_c * H, p.c0,
                                    cur.prev_rows, W * int64_t(H), H};
      a.h_prev = PrevState<T>{p.y + cur.prev_offset * H, p.h0, cur.prev_rows, H, H};
      a.dgates = p.step.dgates + cur.offset * K;
      if (p.step.dgates_hh != nullptr) a.dgates_hh = p.step.dgates_hh + cur.offset * K;
    }

    const int all_rows = std::max(a.rows, a.next_rows);
    for (int r0 = 0; r0 < all_rows; r0 += p.plan.chunk_rows) {
      const int rows = std::min(p.plan.chunk_rows, all_rows - r0);
      int ksplit = 0;
      if (a.dgates_next != nullptr) {
        const int product_rows = std::max(0, std::min(rows, a.next_rows - r0));
        stage_contiguous(a.dgates_next + r0 * K, product_rows * K, x);
        __syncthreads();
        if (product_rows > 0) ksplit = fma_slice_product<T>(w, units, static_cast<int>(K), x, product_rows, out);
        __syncthreads();
        for (int i = threadIdx.x; i < rows * units; i += kPersistentThreads) {
          const int r = i / units, c = i % units;
          float acc = 0.0f;
          if (r < product_rows)
            for (int s = 0; s < ksplit; ++s) acc += out[(s * product_rows + r) * units + c];
          backward_finish<Cell, T>(a, r0 + r, u0 + c, acc);
        }
        __syncthreads();  // x and out are reused by the next chunk
      } else {
        for (int i = threadIdx.x; i < rows * units; i += kPersistentThreads)
          backward_finish<Cell, T>(a, r0 + i / units, u0 + i % units, 0.0f);
      }
    }
    grid.sync();  // this step's gate gradients are complete before the previous step reads them
  }
}

// ------------------------------------------------------------------------------ planning, launch

template <typename Kernel>
cudaError_t allow_shared_memory(Kernel kernel, const DeviceLimits& device) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(device.smem_per_block));
}

// True when `blocks` blocks with `smem` bytes each can all be resident at once (cooperative launch).
template <typename Kernel>
bool co_resident(Kernel kernel, int blocks, size_t smem, const DeviceLimits& device) {
  if (allow_shared_memory(kernel, device) != cudaSuccess) return false;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kPersistentThreads, smem) != cudaSuccess)
    return false;
  return per_sm > 0 && static_cast<int64_t>(per_sm) * device.sm_count >= blocks;
}

// The fewest units per block that keep one block per multiprocessor; then as many rows per chunk as
// shared memory holds (up to kMaxChunkRows).
template <typename Smem>
PersistentPlan fit_plan(int hidden, int batch, int row_step, const DeviceLimits& device, Smem make_layout) {
  PersistentPlan plan;
  if (hidden <= 0 || batch <= 0 || device.sm_count <= 0) return plan;
  plan.units = static_cast<int>(ceil_div(hidden, device.sm_count));
  plan.blocks = static_cast<int>(ceil_div(hidden, plan.units));
  int rows = static_cast<int>(std::min<int64_t>(round_up(std::min(batch, kMaxChunkRows), row_step), kMaxChunkRows));
  while (rows > 0 && static_cast<size_t>(make_layout(plan.units, rows).bytes()) > device.smem_per_block) rows -= row_step;
  if (rows <= 0) return plan;
  plan.chunk_rows = rows;
  plan.smem = static_cast<size_t>(make_layout(plan.units, rows).bytes());
  plan.ok = true;
  return plan;
}

template <typename Cell, typename T>
PersistentPlan plan_persistent_forward(int hidden, int out, int batch, bool tensor_cores, const DeviceLimits& device) {
  // Tensor cores (where the caller allows them) once a batch fills most of a 16-row tile.
  const bool mma = batch >= 8 && tensor_cores;
  PersistentPlan plan;
  if (mma) {
    plan = fit_plan(hidden, batch, 16, device, [&](int units, int rows) {
      return ForwardSmem<Cell, T, Product::Mma>(units, out, rows);
    });
    plan.product = Product::Mma;
    if (plan.ok) plan.ok = co_resident(persistent_forward_kernel<Cell, T, Product::Mma>, plan.blocks, plan.smem, device);
  } else {
    plan = fit_plan(hidden, batch, 1, device, [&](int units, int rows) {
      return ForwardSmem<Cell, T, Product::Fma>(units, out, rows);
    });
    plan.product = Product::Fma;
    if (plan.ok) plan.ok = co_resident(persistent_forward_kernel<Cell, T, Product::Fma>, plan.blocks, plan.smem, device);
  }
  return plan;
}

template <typename Cell, typename T>
PersistentPlan plan_persistent_backward(int hidden, int batch, const DeviceLimits& device) {
  PersistentPlan plan = fit_plan(hidden, batch, 1, device, [&](int units, int rows) {
    return BackwardSmem<Cell, T>(units, hidden, rows);
  });
  if (plan.ok) plan.ok = co_resident(persistent_backward_kernel<Cell, T>, plan.blocks, plan.smem, device);
  return plan;
}

template <typename Kernel, typename Args>
cudaError_t launch_cooperative(Kernel kernel, const Args& args, const PersistentPlan& plan, cudaStream_t stream) {
  void* params[] = {const_cast<Args*>(&args)};
  return cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel), dim3(plan.blocks), dim3(kPersistentThreads),
                                     params, plan.smem, stream);
}

template <typename Cell, typename T>
cudaError_t launch_persistent_forward(const PersistentForwardArgs<T>& args, cudaStream_t stream) {
  if (args.schedule.steps == 0 || args.step.hidden == 0) return cudaSuccess;
  if (args.plan.product == Product::Mma)
    return launch_cooperative(persistent_forward_kernel<Cell, T, Product::Mma>, args, args.plan, stream);
  return launch_cooperative(persistent_forward_kernel<Cell, T, Product::Fma>, args, args.plan, stream);
}

template <typename Cell, typename T>
cudaError_t launch_persistent_backward(const PersistentBackwardArgs<T>& args, cudaStream_t stream) {
  if (args.schedule.steps == 0 || args.step.hidden == 0) return cudaSuccess;
  return launch_cooperative(persistent_backward_kernel<Cell, T>, args, args.plan, stream);
}

#define FUSEDRNN_INSTANTIATE_PERSISTENT(CELL, T)                                                            \
  template PersistentPlan plan_persistent_forward<CELL, T>(int, int, int, bool, const DeviceLimits&);       \
  template PersistentPlan plan_persistent_backward<CELL, T>(int, int, const DeviceLimits&);                 \
  template cudaError_t launch_persistent_forward<CELL, T>(const PersistentForwardArgs<T>&, cudaStream_t);   \
  template cudaError_t launch_persistent_backward<CELL, T>(const PersistentBackwardArgs<T>&, cudaStream_t);

}  // namespace fusedrnn::cuda
