// CUDA kernels of the fusedrnn ops: checks, allocation, the input projection and post-loop weight
// gradients through ATen (cuBLAS), and the per-step fused kernels of csrc/cuda on the current stream.
// No host synchronisation and no allocation outside the caching allocator, so the ops can be captured
// in CUDA graphs.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bindings/checks.h"
#include "bindings/sequence.h"
#include "cuda/persistent_args.h"
#include "cuda/step_args.h"
#include "fusedrnn/schedule.h"

// How many layer directions each algorithm ran, for tests and benchmarks to see which one ran:
// [forward step-wise, forward persistent, backward step-wise, backward persistent].
std::atomic<int64_t> fusedrnn_cuda_algorithm_counts[4];

namespace fusedrnn {
namespace {

using at::Tensor;
using cuda::CellKind;

template <CellKind Cell>
constexpr int gates_of() {
  return Cell == CellKind::Lstm ? kLstmGates : Cell == CellKind::Gru ? kGruGates : 1;
}
template <CellKind Cell>
constexpr int workspace_cols_of() {
  return Cell == CellKind::Lstm ? kLstmWorkspaceCols : Cell == CellKind::Gru ? kGruWorkspaceCols : 1;
}

template <typename T>
T* ptr(const Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

template <typename T>
const T* ptr_or_null(const OptTensor& t) {
  return t.has_value() && t->defined() ? reinterpret_cast<const T*>(t->data_ptr()) : nullptr;
}

bool defined(const OptTensor& t) { return t.has_value() && t->defined(); }

template <typename T>
struct Storage {
  using type = T;
};

// f(Storage<T>{}) with T the CUDA storage type of dtype.
template <typename F>
auto dispatch_storage(const char* op, at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kFloat: return f(Storage<float>{});
    case at::kHalf: return f(Storage<__half>{});
    case at::kBFloat16: return f(Storage<__nv_bfloat16>{});
    default:
      TORCH_CHECK(false, "fusedrnn.", op, ": CUDA tensors must be float32, float16 or bfloat16, got ", dtype,
                  " (float64 runs on the CPU)");
  }
}

Tensor contiguous(const Tensor& t) { return t.contiguous(); }
OptTensor contiguous(const OptTensor& t) { return defined(t) ? OptTensor(t->contiguous()) : std::nullopt; }

Tensor as_packed(const Tensor& t, const LayerShape& s) { return t.contiguous().reshape({s.N, t.size(-1)}); }
Tensor as_layout(const Tensor& t2d, const LayerShape& s) { return s.packed ? t2d : t2d.view({s.T, s.B, t2d.size(1)}); }

// ------------------------------------------------------------------------------ algorithm choice

enum class Algorithm { Auto, Step, Persistent };

// FUSEDRNN_ALGO=step|persistent forces one algorithm (persistent where the layer allows it, see
// use_persistent); unset or auto lets the plan and the batch size decide.
Algorithm requested_algorithm() {
  const char* value = std::getenv("FUSEDRNN_ALGO");
  if (value == nullptr || *value == '\0' || std::strcmp(value, "auto") == 0) return Algorithm::Auto;
  if (std::strcmp(value, "step") == 0) return Algorithm::Step;
  if (std::strcmp(value, "persistent") == 0) return Algorithm::Persistent;
  TORCH_CHECK(false, "fusedrnn: FUSEDRNN_ALGO must be 'auto', 'step' or 'persistent', got '", value, "'");
}

cuda::DeviceLimits device_limits(const at::Device& device) {
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index());
  return {prop->multiProcessorCount, prop->sharedMemPerBlockOptin};
}

// Auto runs step-wise from this many batch rows times hidden units. On the H200 (2026-11-27 13:05 UTC,
// both algorithms, T = 128, LSTM and GRU, float32 and bfloat16) step-wise was faster in eager mode in
// 22 of the 24 cases with B * H >= 65536 (B = 64 with H = 1024, B = 256; the two others GRU bfloat16
// inference, 10% and 25% slower) and slower in all 24 with B * H <= 16384 (B = 8, B = 64 with H = 256),
// where its per-step launches cost more than a whole persistent step.
constexpr int64_t kStepwiseBatchTimesHidden = 65536;

// The persistent kernels cover every layer without a projection (proj_size needs the projection's
// product between two steps). A varlen schedule is copied to the device, which a CUDA graph capture
// cannot hold, so varlen layers under capture run step-wise. Auto takes the persistent kernels when
// the plan fits on chip (every block resident, its weight slice in shared memory) and the batch is
// small enough (kStepwiseBatchTimesHidden).
bool use_persistent(const cuda::PersistentPlan& plan, bool projected, bool varlen, int64_t batch, int64_t hidden) {
  const Algorithm algorithm = requested_algorithm();
  if (algorithm == Algorithm::Step || projected || !plan.ok) return false;
  if (varlen && c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) return false;
  return algorithm == Algorithm::Persistent || batch * hidden < kStepwiseBatchTimesHidden;
}

// The schedule as the device reads it: nullptr for a dense batch, else a [T, 4] int64 table.
struct DeviceSchedule {
  cuda::StepTable table;
  Tensor storage;  // keeps the table alive until the kernel has run (caching allocator, stream-ordered)
};

DeviceSchedule device_schedule(const std::vector<Step>& steps, const LayerShape& s, bool reverse,
                               const at::Device& device) {
  DeviceSchedule out{{nullptr, static_cast<int>(steps.size()), static_cast<int>(s.B), reverse}, Tensor()};
  if (!s.packed) return out;
  Tensor host = at::empty({static_cast<int64_t>(steps.size()), 4}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  int64_t* rows = host.data_ptr<int64_t>();
  for (size_t k = 0; k < steps.size(); ++k) {
    rows[4 * k] = steps[k].offset;
    rows[4 * k + 1] = steps[k].rows;
    rows[4 * k + 2] = steps[k].prev_offset;
    rows[4 * k + 3] = steps[k].prev_rows;
  }
  out.storage = host.to(device, /*non_blocking=*/true);
  out.table.table = out.storage.data_ptr<int64_t>();
  return out;
}

// ------------------------------------------------------------------------------------- layers

// x W_ih^T + b_ih in float, as the step kernels read it: 16-bit operands go through cuBLAS with a
// float output, so the projection is not rounded to 16 bits (see step_args.h).
Tensor float_input_projection(const Tensor& x, const Tensor& w_ih, const OptTensor& b_ih) {
  if (x.scalar_type() == at::kFloat) return input_projection(x, w_ih, b_ih);
  Tensor out = at::mm(x, w_ih.t(), at::kFloat);
  if (defined(b_ih)) out.add_(*b_ih);
  return out;
}

struct LayerTensors {
  Tensor x, h0, w_ih, w_hh;  // x packed [N, I]; the rest contiguous
  OptTensor c0, b_ih, b_hh, w_hr;
};

template <CellKind Cell, typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor> forward_layer(const LayerTensors& in, const std::vector<Step>& steps,
                                                         const LayerShape& s, bool reverse, Activation act,
                                                         bool training) {
  constexpr int G = gates_of<Cell>();
  constexpr int W = workspace_cols_of<Cell>();
  const int64_t H = s.H, P = s.P;
  const bool projected = defined(in.w_hr);
  const auto float_opts = in.x.options().dtype(at::kFloat);
  const auto stream = at::cuda::getCurrentCUDAStream();

  constexpr bool kFloatStorage = std::is_same_v<T, float>;
  const Tensor xproj = float_input_projection(in.x, in.w_ih, in.b_ih);             // [N, G*H] float
  Tensor y = at::empty({s.N, P}, in.x.options());
  Tensor h_state = in.h0.clone();  // [B, P]: the latest h of every row, h_n at the end
  Tensor c = Cell == CellKind::Lstm ? in.c0->to(at::kFloat, false, true) : Tensor();  // [B, H] float, in place
  Tensor workspace = training ? at::empty({s.N, W * H}, float_opts) : at::empty({0}, float_opts);
  Tensor unprojected = projected ? at::empty({s.B, H}, in.x.options()) : Tensor();
  const Tensor w_hr_t = projected ? in.w_hr->t() : Tensor();
  // The float h the steps start from: y itself for float storage, else two [B, P] slots that step k
  // (visiting order) writes at k % 2 and reads at (k + 1) % 2; row r of every step is batch row r.
  Tensor h_slots = kFloatStorage ? Tensor() : at::empty({2, s.B, P}, float_opts);
  const Tensor h0_float = in.h0.to(at::kFloat).contiguous();
  auto slot = [&](int64_t k) { return ptr<float>(h_slots) + (k & 1) * s.B * P; };

  // Recurrent products on float operands: float storage, and a 16-bit relu RNN, whose gradients follow
  // the sign of every pre-activation (see step_args.h). Other 16-bit layers multiply h as stored.
  const bool float_operands = kFloatStorage || (Cell == CellKind::Rnn && act == Activation::Relu);
  // Tensor cores: tf32 for float32 only when cudnn.allow_tf32 is set (as nn.LSTM reads it).
  const bool tensor_cores = kFloatStorage ? at::globalContext().allowTF32CuDNN() : !float_operands;
  const cuda::PersistentPlan plan =
      cuda::plan_persistent_forward<Cell, T>(static_cast<int>(H), static_cast<int>(P), static_cast<int>(s.B),
                                             tensor_cores, device_limits(in.x.device()));
  if (use_persistent(plan, projected, s.packed, s.B, H)) {
    const DeviceSchedule schedule = device_schedule(steps, s, reverse, in.x.device());
    cuda::PersistentForwardArgs<T> p{};
    p.step.hidden = static_cast<int>(H);
    p.step.out = static_cast<int>(P);
    p.step.act = act;
    if (plan.product == cuda::Product::Mma) {  // h as stored: the MMA operands are T
      p.step.h_prev_stored = PrevState<T>{ptr<T>(y), ptr<T>(in.h0), 0, P, P};
    } else {
      p.step.h_prev = PrevState<float>{kFloatStorage ? ptr<float>(y) : nullptr, ptr<float>(h0_float), 0, P, P};
      p.h_slots = kFloatStorage ? nullptr : ptr<float>(h_slots);
    }
    const Tensor w_interleaved = in.w_hh.view({G, H, P}).transpose(0, 1).contiguous();  // row u*G+g
    p.step.w_hh = ptr<T>(w_interleaved);
    p.step.xproj = ptr<float>(xproj);
    p.step.b_hh = ptr_or_null<T>(in.b_hh);
    p.step.c = Cell == CellKind::Lstm ? ptr<float>(c) : nullptr;
    p.step.h_out = ptr<T>(y);
    p.step.h_state = ptr<T>(h_state);
    p.step.workspace = training ? ptr<float>(workspace) : nullptr;
    p.schedule = schedule.table;
    p.plan = plan;
    C10_CUDA_CHECK((cuda::launch_persistent_forward<Cell, T>(p, stream)));
    ++fusedrnn_cuda_algorithm_counts[1];
    return {y, h_state, c, workspace};
  }
  ++fusedrnn_cuda_algorithm_counts[0];
  // Step-wise: per step one cuBLAS GEMM h_prev W_hh^T (float result) and the pointwise kernel. Rows that
  // start from h0 read h0 W_hh^T, formed once. Float operands as above (a 16-bit relu RNN's from its
  // float h), else h and W_hh as stored, on the tensor cores.
  const Tensor w_hh_t = (float_operands ? in.w_hh.to(at::kFloat) : in.w_hh).t();  // [P, G*H]
  auto recurrent_product = [&](const Tensor& h) {
    return float_operands ? at::mm(h, w_hh_t) : at::mm(h, w_hh_t, at::kFloat);  // [rows, G*H] float
  };
  const Tensor h0_product = recurrent_product(float_operands ? h0_float : in.h0);
  for (int64_t k = 0; k < static_cast<int64_t>(steps.size()); ++k) {
    const Step& st = steps[k];
    cuda::ForwardStepArgs<T> a{};
    a.rows = static_cast<int>(st.rows);
    a.hidden = static_cast<int>(H);
    a.out = static_cast<int>(P);
    a.act = act;
    const float* prev = kFloatStorage ? ptr<float>(y) + st.prev_offset * P : slot(k + 1);
    a.h_prev = PrevState<float>{prev, ptr<float>(h0_float), st.prev_rows, P, P};
    Tensor step_product;  // alive until the launch below is queued (stream-ordered allocator)
    if (st.prev_rows > 0) {
      const bool from_slot = float_operands && !kFloatStorage;
      step_product = recurrent_product(from_slot ? h_slots[(k + 1) & 1].narrow(0, 0, st.prev_rows)
                                                 : y.narrow(0, st.prev_offset, st.prev_rows));
    }
    a.recurrent = PrevState<float>{st.prev_rows > 0 ? ptr<float>(step_product) : nullptr, ptr<float>(h0_product),
                                   st.prev_rows, G * H, G * H};
    a.xproj = ptr<float>(xproj) + st.offset * G * H;
    a.b_hh = ptr_or_null<T>(in.b_hh);
    a.c = Cell == CellKind::Lstm ? ptr<float>(c) : nullptr;
    a.h_out = projected ? ptr<T>(unprojected) : ptr<T>(y) + st.offset * H;
    a.h_state = projected ? nullptr : ptr<T>(h_state);
    a.h_float = kFloatStorage || projected ? nullptr : slot(k);
    a.workspace = training ? ptr<float>(workspace) + st.offset * W * H : nullptr;
    C10_CUDA_CHECK((cuda::launch_forward_step<Cell, T>(a, stream)));
    if (projected) {
      Tensor y_rows = y.narrow(0, st.offset, st.rows);
      mm_into(y_rows, unprojected.narrow(0, 0, st.rows), w_hr_t);  // the next step's GEMM reads y
      h_state.narrow(0, 0, st.rows).copy_(y_rows);
    }
  }
  return {y, h_state, c, workspace};
}

// -> dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr (undefined / empty where they do not apply)
template <CellKind Cell, typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> backward_layer(
    const LayerTensors& in, const Tensor& grad_y, const Tensor& grad_hn, const OptTensor& grad_cn, bool has_bias,
    const std::vector<Step>& steps, const LayerShape& s, bool reverse, Activation act, const Tensor& y,
    const Tensor& workspace) {
  constexpr int G = gates_of<Cell>();
  constexpr int W = workspace_cols_of<Cell>();
  constexpr bool kLstm = Cell == CellKind::Lstm;
  const int64_t H = s.H, P = s.P, T_steps = static_cast<int64_t>(steps.size());
  const bool projected = defined(in.w_hr);
  const auto float_opts = in.x.options().dtype(at::kFloat);
  const auto stream = at::cuda::getCurrentCUDAStream();

  Tensor dgates = at::empty({s.N, G * H}, float_opts);  // x-side gate gradients
  Tensor dgates_hh = Cell == CellKind::Gru ? at::empty({s.N, G * H}, float_opts) : dgates;  // h side
  Tensor carry = grad_hn.to(at::kFloat, false, true);  // [B, P]
  Tensor dc = kLstm ? grad_cn->to(at::kFloat, false, true) : Tensor();
  Tensor dh0 = T_steps == 0 ? carry.clone() : at::empty({s.B, P}, float_opts);
  const Tensor c0 = kLstm ? in.c0->to(at::kFloat).contiguous() : Tensor();
  Tensor dh_steps = projected ? at::empty({s.N, P}, float_opts) : Tensor();  // dh of every step, for dW_hr
  Tensor dunprojected = projected ? at::empty({s.B, H}, float_opts) : Tensor();
  const Tensor w_hr = projected ? in.w_hr->to(at::kFloat) : Tensor();

  const cuda::PersistentPlan plan = cuda::plan_persistent_backward<Cell, T>(
      static_cast<int>(H), static_cast<int>(s.B), device_limits(in.x.device()));
  const bool persistent = T_steps > 0 && use_persistent(plan, projected, s.packed, s.B, H);
  if (persistent) {
    const DeviceSchedule schedule = device_schedule(steps, s, reverse, in.x.device());
    cuda::PersistentBackwardArgs<T> p{};
    p.step.hidden = static_cast<int>(H);
    p.step.out = static_cast<int>(P);
    p.step.act = act;
    const Tensor w_hh_t = in.w_hh.t().contiguous();  // [P, G*H]: the columns each block keeps on chip
    p.step.w_hh_t = ptr<T>(w_hh_t);
    p.step.dh0 = ptr<float>(dh0);
    p.step.carry = ptr<float>(carry);
    p.step.grad_y = ptr<T>(grad_y);
    p.step.workspace = ptr<float>(workspace);
    p.step.dc = kLstm ? ptr<float>(dc) : nullptr;
    p.step.dgates = ptr<float>(dgates);
    p.step.dgates_hh = Cell == CellKind::Gru ? ptr<float>(dgates_hh) : nullptr;
    p.step.pointwise = true;
    p.dgates_next = ptr<float>(dgates_hh);
    p.c0 = kLstm ? ptr<float>(c0) : nullptr;
    p.y = ptr<T>(y);
    p.h0 = ptr<T>(in.h0);
    p.schedule = schedule.table;
    p.plan = plan;
    C10_CUDA_CHECK((cuda::launch_persistent_backward<Cell, T>(p, stream)));
    ++fusedrnn_cuda_algorithm_counts[3];
  } else if (T_steps > 0) {
    ++fusedrnn_cuda_algorithm_counts[2];
  }

  // Step-wise: k = T-1 .. 0 in reverse visiting order, then k = -1 for h0's gradient of the rows that
  // step 0 (in visiting order) started from h0. Each launch first takes R = dgates_{k+1} W_hh from a
  // float cuBLAS GEMM (the gate gradients stay float).
  const Tensor w_hh_float = persistent ? Tensor() : in.w_hh.to(at::kFloat);  // [G*H, P]
  for (int64_t k = T_steps - 1; k >= -1 && T_steps > 0 && !persistent; --k) {
    const Step* cur = k >= 0 ? &steps[k] : nullptr;
    const Step* next = k + 1 < T_steps ? &steps[k + 1] : nullptr;
    cuda::BackwardStepArgs<T> a{};
    a.hidden = static_cast<int>(H);
    a.out = static_cast<int>(P);
    a.act = act;
    a.dh0 = ptr<float>(dh0);
    a.carry = ptr<float>(carry);
    Tensor recurrent;  // [next_rows, P]; alive until the launch below is queued
    if (next != nullptr) {
      recurrent = at::mm(dgates_hh.narrow(0, next->offset, next->rows), w_hh_float);
      a.recurrent = ptr<float>(recurrent);
      a.next_rows = static_cast<int>(next->rows);
      a.next_prev_rows = static_cast<int>(next->prev_rows);
    }
    if (cur != nullptr) {
      a.rows = static_cast<int>(cur->rows);
      a.grad_y = ptr<T>(grad_y) + cur->offset * P;
      a.workspace = ptr<float>(workspace) + cur->offset * W * H;
      if (kLstm) {
        a.c_prev = PrevState<float>{ptr<float>(workspace) + cur->prev_offset * W * H + 4 * H, ptr<float>(c0),
                                    cur->prev_rows, W * H, H};
        a.dc = ptr<float>(dc);
      }
      a.h_prev = PrevState<T>{ptr<T>(y) + cur->prev_offset * P, ptr<T>(in.h0), cur->prev_rows, P, P};
      a.dgates = ptr<float>(dgates) + cur->offset * G * H;
      a.dgates_hh = Cell == CellKind::Gru ? ptr<float>(dgates_hh) + cur->offset * G * H : nullptr;
      a.dh_total = projected ? ptr<float>(dh_steps) + cur->offset * P : nullptr;
    }
    a.pointwise = !projected;
    C10_CUDA_CHECK((cuda::launch_backward_step<Cell, T>(a, stream)));
    if (projected && cur != nullptr) {  // dh (P wide) back through W_hr, then the gate math
      mm_into(dunprojected.narrow(0, 0, cur->rows), dh_steps.narrow(0, cur->offset, cur->rows), w_hr);
      cuda::BackwardStepArgs<T> b = a;
      b.recurrent = nullptr;
      b.next_rows = 0;
      b.next_prev_rows = 0;
      b.dh_cell = ptr<float>(dunprojected);
      b.dh_total = nullptr;
      b.pointwise = true;
      C10_CUDA_CHECK((cuda::launch_backward_step<Cell, T>(b, stream)));
    }
  }

  const auto dtype = in.x.scalar_type();
  const Tensor h_prev = gather_prev_state(y, in.h0, steps);
  LinearGrads g = linear_grads(dgates.to(dtype), dgates_hh.to(dtype), in.x, h_prev, in.w_ih, has_bias);
  Tensor dw_hr = at::empty({0}, in.x.options());
  if (projected) {
    const Tensor o = workspace.narrow(1, 3 * H, H), c = workspace.narrow(1, 4 * H, H);
    dw_hr = at::mm(dh_steps.t(), o * at::tanh(c)).to(dtype);
  }
  return {g.dx, dh0.to(dtype), kLstm ? dc.to(dtype) : Tensor(), g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, dw_hr};
}

// The step kernels index rows and columns with 32-bit ints (offsets are 64-bit).
void check_kernel_limits(const char* op, const LayerShape& s, int gates) {
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  TORCH_CHECK(s.B <= kMax && gates * s.H <= kMax && s.P <= kMax, "fusedrnn.", op,
              ": CUDA kernels need batch, ", gates, " * hidden_size and proj_size below 2^31, got batch ", s.B,
              ", hidden_size ", s.H, ", output size ", s.P);
}

LayerTensors layer_tensors(const Tensor& x, const Tensor& h0, const OptTensor& c0, const Tensor& w_ih,
                           const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
                           const LayerShape& s) {
  return {as_packed(x, s), contiguous(h0), contiguous(w_ih), contiguous(w_hh),
          contiguous(c0),  contiguous(b_ih), contiguous(b_hh), contiguous(w_hr)};
}

template <CellKind Cell>
std::tuple<Tensor, Tensor, Tensor, Tensor> forward_op(const char* op, const Tensor& x, const Tensor& h0,
                                                      const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                                      const OptTensor& b_ih, const OptTensor& b_hh,
                                                      const OptTensor& w_hr, const OptTensor& batch_sizes,
                                                      bool reverse, Activation act, bool training) {
  const LayerShape s = check_layer_inputs(op, gates_of<Cell>(), x, h0, c0.has_value() ? &*c0 : nullptr, w_ih, w_hh,
                                          b_ih, b_hh, w_hr, batch_sizes);
  check_kernel_limits(op, s, gates_of<Cell>());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto batch = batch_sizes_vector(batch_sizes, s);
  const auto steps = make_schedule(batch.data(), static_cast<int64_t>(batch.size()), reverse);
  const LayerTensors in = layer_tensors(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, s);
  return dispatch_storage(op, x.scalar_type(), [&](auto storage) {
    using T = typename decltype(storage)::type;
    auto [y, h_n, c_n, workspace] = forward_layer<Cell, T>(in, steps, s, reverse, act, training);
    return std::make_tuple(as_layout(y, s), h_n, c_n.defined() ? c_n.to(x.scalar_type()) : c_n, workspace);
  });
}

template <CellKind Cell>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> backward_op(
    const char* op, const Tensor& grad_y, const Tensor& grad_hn, const OptTensor& grad_cn, const Tensor& x,
    const Tensor& h0, const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr,
    bool has_bias, const OptTensor& batch_sizes, bool reverse, Activation act, const Tensor& y,
    const Tensor& workspace) {
  const LayerShape s = check_layer_inputs(op, gates_of<Cell>(), x, h0, c0.has_value() ? &*c0 : nullptr, w_ih, w_hh,
                                          std::nullopt, std::nullopt, w_hr, batch_sizes);
  check_backward_inputs(op, s, x, grad_y, grad_hn, grad_cn.has_value() ? &*grad_cn : nullptr, y, workspace,
                        workspace_cols_of<Cell>() * s.H);
  check_kernel_limits(op, s, gates_of<Cell>());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto batch = batch_sizes_vector(batch_sizes, s);
  const auto steps = make_schedule(batch.data(), static_cast<int64_t>(batch.size()), reverse);
  const LayerTensors in = layer_tensors(x, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt, w_hr, s);
  return dispatch_storage(op, x.scalar_type(), [&](auto storage) {
    using T = typename decltype(storage)::type;
    auto grads = backward_layer<Cell, T>(in, as_packed(grad_y, s), contiguous(grad_hn), contiguous(grad_cn),
                                         has_bias, steps, s, reverse, act, as_packed(y, s), workspace.contiguous());
    std::get<0>(grads) = as_layout(std::get<0>(grads), s);
    return grads;
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward_cuda(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, const OptTensor& batch_sizes,
    bool reverse, bool training) {
  return forward_op<CellKind::Lstm>("lstm_forward", x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse,
                                    Activation::Tanh, training);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_cuda(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr, bool has_bias,
    const OptTensor& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace) {
  return backward_op<CellKind::Lstm>("lstm_backward", grad_y, grad_hn, grad_cn, x, h0, c0, w_ih, w_hh, w_hr,
                                     has_bias, batch_sizes, reverse, Activation::Tanh, y, workspace);
}

std::tuple<Tensor, Tensor, Tensor> gru_forward_cuda(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                                    const Tensor& w_hh, const OptTensor& b_ih,
                                                    const OptTensor& b_hh, const OptTensor& batch_sizes,
                                                    bool reverse, bool training) {
  auto [y, h_n, c_n, ws] = forward_op<CellKind::Gru>("gru_forward", x, h0, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                                     std::nullopt, batch_sizes, reverse, Activation::Tanh, training);
  return {y, h_n, ws};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward_cuda(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, bool has_bias, const OptTensor& batch_sizes, bool reverse, const Tensor& y,
    const Tensor& workspace) {
  auto [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr] =
      backward_op<CellKind::Gru>("gru_backward", grad_y, grad_hn, std::nullopt, x, h0, std::nullopt, w_ih, w_hh,
                                 std::nullopt, has_bias, batch_sizes, reverse, Activation::Tanh, y, workspace);
  return {dx, dh0, dw_ih, dw_hh, db_ih, db_hh};
}

std::tuple<Tensor, Tensor, Tensor> rnn_forward_cuda(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                                    const Tensor& w_hh, const OptTensor& b_ih,
                                                    const OptTensor& b_hh, const OptTensor& batch_sizes,
                                                    bool reverse, c10::string_view nonlinearity, bool training) {
  const Activation act = parse_nonlinearity("rnn_forward", std::string(nonlinearity));
  auto [y, h_n, c_n, ws] = forward_op<CellKind::Rnn>("rnn_forward", x, h0, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                                     std::nullopt, batch_sizes, reverse, act, training);
  return {y, h_n, ws};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_cuda(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, bool has_bias, const OptTensor& batch_sizes, bool reverse, c10::string_view nonlinearity,
    const Tensor& y, const Tensor& workspace) {
  const Activation act = parse_nonlinearity("rnn_backward", std::string(nonlinearity));
  auto [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr] =
      backward_op<CellKind::Rnn>("rnn_backward", grad_y, grad_hn, std::nullopt, x, h0, std::nullopt, w_ih, w_hh,
                                 std::nullopt, has_bias, batch_sizes, reverse, act, y, workspace);
  return {dx, dh0, dw_ih, dw_hh, db_ih, db_hh};
}

}  // namespace
}  // namespace fusedrnn

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  m.impl("lstm_forward", &fusedrnn::lstm_forward_cuda);
  m.impl("lstm_backward", &fusedrnn::lstm_backward_cuda);
  m.impl("gru_forward", &fusedrnn::gru_forward_cuda);
  m.impl("gru_backward", &fusedrnn::gru_backward_cuda);
  m.impl("rnn_forward", &fusedrnn::rnn_forward_cuda);
  m.impl("rnn_backward", &fusedrnn::rnn_backward_cuda);
}
