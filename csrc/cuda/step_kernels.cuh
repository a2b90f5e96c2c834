// The CUDA step kernels: the cell math of one time step, once cuBLAS has formed the step's recurrent
// product (the step-wise algorithm: a GEMM and one pointwise kernel per step, forward and backward).
// One thread per (row, hidden unit) forward and per (row, column) backward. The device functions
// here (forward_cell, backward_finish, ...) are also the epilogues of the persistent kernels. Generic
// over the cell (fusedrnn/cell.h): its math runs through the ForwardUnit and BackwardUnit views below.
// Included by lstm.cu, gru.cu and rnn.cu, which instantiate it per cell and dtype.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/step_args.h"
#include "fusedrnn/cells.h"

namespace fusedrnn::cuda {

constexpr int kPointwiseThreads = 256;

using Math = ScalarMath<float>;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__device__ __forceinline__ float load_or_zero(const T* p, int64_t i) { return p ? to_float(p[i]) : 0.0f; }

// ------------------------------------------------------------------------------------------ forward

// Element k of row r of the state a forward step starts from (h_prev, or h_prev_stored where set).
template <typename T>
__device__ __forceinline__ float prev_h(const ForwardStepArgs<T>& a, int r, int k) {
  return a.h_prev.initial != nullptr ? a.h_prev.row(r)[k] : to_float(a.h_prev_stored.row(r)[k]);
}

// The view a cell's forward reads (row r, unit u) through (fusedrnn/cell.h):
// acc[g] = (h_prev W_hh^T)[r][g * H + u], xv[g] = xproj[r][g * H + u] (b_ih included) and bv[g] the
// recurrent bias.
template <typename T>
struct ForwardUnit {
  const ForwardStepArgs<T>& a;
  int r, u;
  const float* acc;
  const float* xv;
  const float* bv;
  float* ws;  // row r of the workspace, or nullptr
  int64_t H;

  __device__ __forceinline__ float sum(int g) const { return acc[g] + xv[g] + bv[g]; }
  __device__ __forceinline__ float input(int g) const { return xv[g]; }
  __device__ __forceinline__ float hidden(int g) const { return acc[g] + bv[g]; }
  __device__ __forceinline__ float h_prev() const { return prev_h(a, r, u); }
  __device__ __forceinline__ float c() const { return a.c[r * H + u]; }
  __device__ __forceinline__ void set_c(float v) const { a.c[r * H + u] = v; }
  __device__ __forceinline__ void save(int col, float v) const {
    if (ws) ws[col * H + u] = v;
  }
};

// The cell math of (row r, unit u) from the recurrent products acc, this step's input projection xv
// and the recurrent bias bv (see ForwardUnit); writes c, h and the workspace. The persistent kernel
// prefetches xv and bv, the step kernel loads them just before.
template <typename Cell, typename T>
__device__ __forceinline__ void forward_cell(const ForwardStepArgs<T>& a, int r, int u, const float* acc,
                                             const float* xv, const float* bv) {
  const int64_t H = a.hidden;
  float* ws = a.workspace ? a.workspace + r * Cell::workspace_cols * H : nullptr;
  const float h = Cell::template forward<Math, float>(ForwardUnit<T>{a, r, u, acc, xv, bv, ws, H}, a.act);
  a.h_out[r * H + u] = from_float<T>(h);
  if (a.h_state) a.h_state[r * H + u] = from_float<T>(h);
  if (a.h_float) a.h_float[r * H + u] = h;
}

// xv and bv of (row r, unit u), as forward_cell takes them.
template <typename Cell, typename T>
__device__ __forceinline__ void load_cell_inputs(const ForwardStepArgs<T>& a, int r, int u, float* xv, float* bv) {
  constexpr int G = Cell::gates;
  const int64_t H = a.hidden;
  const float* xproj = a.xproj + r * G * H;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    xv[g] = xproj[g * H + u];
    bv[g] = load_or_zero(a.b_hh, g * H + u);
  }
}

template <typename Cell, typename T>
__device__ __forceinline__ void forward_epilogue(const ForwardStepArgs<T>& a, int r, int u, const float* acc) {
  constexpr int G = Cell::gates;
  float xv[G], bv[G];
  load_cell_inputs<Cell, T>(a, r, u, xv, bv);
  forward_cell<Cell, T>(a, r, u, acc, xv, bv);
}

// One thread per (row r, unit u) of the step: the G recurrent products come from a.recurrent.
// grid: ceil(rows * H / kPointwiseThreads), block: kPointwiseThreads.
template <typename Cell, typename T>
__global__ void __launch_bounds__(kPointwiseThreads) forward_step_kernel(const ForwardStepArgs<T> a) {
  constexpr int G = Cell::gates;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kPointwiseThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(a.rows) * a.hidden) return;
  const int r = static_cast<int>(i / a.hidden), u = static_cast<int>(i % a.hidden);
  const float* recurrent = a.recurrent.row(r);
  float acc[G];
#pragma unroll
  for (int g = 0; g < G; ++g) acc[g] = recurrent[g * a.hidden + u];
  forward_epilogue<Cell, T>(a, r, u, acc);
}

// ------------------------------------------------------------------------------------------ backward

// The view a cell's backward reads and writes (row r, unit u) through (fusedrnn/cell.h).
template <typename T, bool kSplitGates>
struct BackwardUnit {
  const BackwardStepArgs<T>& a;
  int r, u;
  const float* ws;   // row r of the workspace
  float* dgates;     // row r of the (x-side) gate gradients
  float* dgates_hh;  // row r of the h-side gate gradients (kSplitGates)
  int64_t H;

  __device__ __forceinline__ float saved(int col) const { return ws[col * H + u]; }
  __device__ __forceinline__ float h_prev() const { return to_float(a.h_prev.row(r)[u]); }
  __device__ __forceinline__ float c_prev() const { return a.c_prev.row(r)[u]; }
  __device__ __forceinline__ float dc() const { return a.dc[r * H + u]; }
  __device__ __forceinline__ void set_dc(float v) const { a.dc[r * H + u] = v; }
  __device__ __forceinline__ void set_dgate(int g, float v) const {
    dgates[g * H + u] = v;
    if constexpr (kSplitGates) dgates_hh[g * H + u] = v;
  }
  __device__ __forceinline__ void set_dgate_apart(int g, float dx, float dh) const {
    dgates[g * H + u] = dx;
    dgates_hh[g * H + u] = dh;
  }
};

// Gate gradients of (row r, unit u) from dh; returns the direct part of the previous h's gradient.
template <typename Cell, typename T>
__device__ __forceinline__ float backward_epilogue(const BackwardStepArgs<T>& a, int r, int u, float dh) {
  constexpr int G = Cell::gates;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const int64_t H = a.hidden;
  const BackwardUnit<T, kSplitGates> unit{a, r, u, a.workspace + r * Cell::workspace_cols * H, a.dgates + r * G * H,
                                          kSplitGates ? a.dgates_hh + r * G * H : nullptr, H};
  return Cell::template backward<Math, float>(dh, unit, a.act);
}

// Everything of backward step k for (row r, column col) once R = (dgates_next W_hh)[r][col] is known:
// h0's gradient for the rows that step k+1 started from h0, then dh and the gate gradients of step k.
// Shared by the step kernel and the persistent kernel.
template <typename Cell, typename T>
__device__ __forceinline__ void backward_finish(const BackwardStepArgs<T>& a, int r, int col, float acc) {
  const int P = a.out;
  const int64_t at = static_cast<int64_t>(r) * P + col;
  if (col < P && r >= a.next_prev_rows && r < a.next_rows) a.dh0[at] = acc + a.carry[at];
  if (r >= a.rows) return;
  if (a.dh_cell != nullptr) {  // pointwise only: dh arrives back-projected, [rows, H]
    if (col < a.hidden) backward_epilogue<Cell, T>(a, r, col, a.dh_cell[static_cast<int64_t>(r) * a.hidden + col]);
    return;
  }
  if (col >= P) return;
  const float dh = to_float(a.grad_y[at]) + a.carry[at] + (r < a.next_prev_rows ? acc : 0.0f);
  if (a.pointwise) {
    a.carry[at] = backward_epilogue<Cell, T>(a, r, col, dh);  // P == H here
  } else {
    a.dh_total[at] = dh;
    a.carry[at] = 0.0f;
  }
}

// Backward step k, in reverse visiting order, once cuBLAS has formed R = dgates_next W_hh for the rows
// of step k+1 (the step visited after k): rows [0, next_prev_rows) of R are the gradient of step k's
// output, the rows [next_prev_rows, next_rows) started at step k+1 from h0, so R there is h0's
// gradient. Then dh = grad_y + carry + R and the gate gradients of step k. Each (row, column) element
// of carry, dc and dh0 is read and written by one thread only, so they are updated in place.
// grid: ceil(max(rows, next_rows) * columns / kPointwiseThreads), block: kPointwiseThreads.
template <typename Cell, typename T>
__global__ void __launch_bounds__(kPointwiseThreads) backward_step_kernel(const BackwardStepArgs<T> a, int columns) {
  const int rows = a.rows > a.next_rows ? a.rows : a.next_rows;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kPointwiseThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(rows) * columns) return;
  const int r = static_cast<int>(i / columns), col = static_cast<int>(i % columns);
  const float acc = a.recurrent != nullptr && r < a.next_rows ? a.recurrent[static_cast<int64_t>(r) * a.out + col] : 0.0f;
  backward_finish<Cell, T>(a, r, col, acc);
}

inline unsigned pointwise_blocks(int64_t items) {
  return static_cast<unsigned>((items + kPointwiseThreads - 1) / kPointwiseThreads);
}

template <typename Cell, typename T>
cudaError_t launch_forward_step(const ForwardStepArgs<T>& args, cudaStream_t stream) {
  if (args.rows == 0 || args.hidden == 0) return cudaSuccess;
  const int64_t items = static_cast<int64_t>(args.rows) * args.hidden;
  forward_step_kernel<Cell, T><<<pointwise_blocks(items), kPointwiseThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename Cell, typename T>
cudaError_t launch_backward_step(const BackwardStepArgs<T>& args, cudaStream_t stream) {
  const int rows = args.rows > args.next_rows ? args.rows : args.next_rows;
  const int columns = args.dh_cell != nullptr ? args.hidden : args.out;
  if (rows == 0 || columns == 0) return cudaSuccess;
  const int64_t items = static_cast<int64_t>(rows) * columns;
  backward_step_kernel<Cell, T><<<pointwise_blocks(items), kPointwiseThreads, 0, stream>>>(args, columns);
  return cudaGetLastError();
}

#define FUSEDRNN_INSTANTIATE_STEPS(CELL, T)                                                          \
  template cudaError_t launch_forward_step<CELL, T>(const ForwardStepArgs<T>&, cudaStream_t);       \
  template cudaError_t launch_backward_step<CELL, T>(const BackwardStepArgs<T>&, cudaStream_t);

}  // namespace fusedrnn::cuda
