#include "cuda/layer.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>
#include <string>
#include <type_traits>

#include "cuda/algorithm.h"
#include "cuda/persistent_args.h"
#include "cuda/step_args.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/schedule.h"
#include "sequence/sequence.h"

namespace fusedrnn::cuda {
namespace {

using at::Tensor;

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

DeviceLimits device_limits(const at::Device& device) {
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index());
  return {prop->multiProcessorCount, prop->sharedMemPerBlockOptin};
}

// The schedule as the device reads it: nullptr for a dense batch, else a [T, 4] int64 table.
struct DeviceSchedule {
  StepTable table;
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

template <typename Cell, typename T>
LayerOutputs forward_layer(const LayerTensors& in, const std::vector<Step>& steps, const LayerShape& s, bool reverse,
                           Activation act, bool training) {
  constexpr int G = Cell::gates;
  constexpr int W = Cell::workspace_cols;
  constexpr bool kCellState = Cell::states == 2;
  const int64_t H = s.H, P = s.P;
  const bool projected = defined(in.w_hr);
  const auto float_opts = in.x.options().dtype(at::kFloat);
  const auto stream = at::cuda::getCurrentCUDAStream();

  constexpr bool kFloatStorage = std::is_same_v<T, float>;
  const Tensor xproj = float_input_projection(in.x, in.w_ih, in.b_ih);             // [N, G*H] float
  Tensor y = at::empty({s.N, P}, in.x.options());
  Tensor h_state = in.h0.clone();  // [B, P]: the latest h of every row, h_n at the end
  Tensor c = kCellState ? in.c0->to(at::kFloat, false, true) : Tensor();  // [B, H] float, in place
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
  const bool float_operands = kFloatStorage || act == Activation::Relu;
  // Tensor cores: tf32 for float32 only when cudnn.allow_tf32 is set (as nn.LSTM reads it).
  const bool tensor_cores = kFloatStorage ? at::globalContext().allowTF32CuDNN() : !float_operands;
  const PersistentPlan plan =
      plan_persistent_forward<Cell, T>(static_cast<int>(H), static_cast<int>(P), static_cast<int>(s.B),
                                             tensor_cores, device_limits(in.x.device()));
  if (use_persistent(plan, projected, s.packed, s.B, H)) {
    const DeviceSchedule schedule = device_schedule(steps, s, reverse, in.x.device());
    PersistentForwardArgs<T> p{};
    p.step.hidden = static_cast<int>(H);
    p.step.out = static_cast<int>(P);
    p.step.act = act;
    if (plan.product == Product::Mma) {  // h as stored: the MMA operands are T
      p.step.h_prev_stored = PrevState<T>{ptr<T>(y), ptr<T>(in.h0), 0, P, P};
    } else {
      p.step.h_prev = PrevState<float>{kFloatStorage ? ptr<float>(y) : nullptr, ptr<float>(h0_float), 0, P, P};
      p.h_slots = kFloatStorage ? nullptr : ptr<float>(h_slots);
    }
    const Tensor w_interleaved = in.w_hh.view({G, H, P}).transpose(0, 1).contiguous();  // row u*G+g
    p.step.w_hh = ptr<T>(w_interleaved);
    p.step.xproj = ptr<float>(xproj);
    p.step.b_hh = ptr_or_null<T>(in.b_hh);
    p.step.c = kCellState ? ptr<float>(c) : nullptr;
    p.step.h_out = ptr<T>(y);
    p.step.h_state = ptr<T>(h_state);
    p.step.workspace = training ? ptr<float>(workspace) : nullptr;
    p.schedule = schedule.table;
    p.plan = plan;
    C10_CUDA_CHECK((launch_persistent_forward<Cell, T>(p, stream)));
    count_algorithm(AlgorithmCount::ForwardPersistent);
    return {y, h_state, c, workspace};
  }
  count_algorithm(AlgorithmCount::ForwardStep);
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
    ForwardStepArgs<T> a{};
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
    a.c = kCellState ? ptr<float>(c) : nullptr;
    a.h_out = projected ? ptr<T>(unprojected) : ptr<T>(y) + st.offset * H;
    a.h_state = projected ? nullptr : ptr<T>(h_state);
    a.h_float = kFloatStorage || projected ? nullptr : slot(k);
    a.workspace = training ? ptr<float>(workspace) + st.offset * W * H : nullptr;
    C10_CUDA_CHECK((launch_forward_step<Cell, T>(a, stream)));
    if (projected) {
      Tensor y_rows = y.narrow(0, st.offset, st.rows);
      mm_into(y_rows, unprojected.narrow(0, 0, st.rows), w_hr_t);  // the next step's GEMM reads y
      h_state.narrow(0, 0, st.rows).copy_(y_rows);
    }
  }
  return {y, h_state, c, workspace};
}

// -> dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr (undefined / empty where they do not apply)
template <typename Cell, typename T>
LayerGrads backward_layer(
    const LayerTensors& in, const Tensor& grad_y, const Tensor& grad_hn, const OptTensor& grad_cn, bool has_bias,
    const std::vector<Step>& steps, const LayerShape& s, bool reverse, Activation act, const Tensor& y,
    const Tensor& workspace) {
  constexpr int G = Cell::gates;
  constexpr int W = Cell::workspace_cols;
  constexpr bool kCellState = Cell::states == 2;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const int64_t H = s.H, P = s.P, T_steps = static_cast<int64_t>(steps.size());
  const bool projected = defined(in.w_hr);
  const auto float_opts = in.x.options().dtype(at::kFloat);
  const auto stream = at::cuda::getCurrentCUDAStream();

  Tensor dgates = at::empty({s.N, G * H}, float_opts);  // x-side gate gradients
  Tensor dgates_hh = kSplitGates ? at::empty({s.N, G * H}, float_opts) : dgates;  // h side
  Tensor carry = grad_hn.to(at::kFloat, false, true);  // [B, P]
  Tensor dc = kCellState ? grad_cn->to(at::kFloat, false, true) : Tensor();
  Tensor dh0 = T_steps == 0 ? carry.clone() : at::empty({s.B, P}, float_opts);
  const Tensor c0 = kCellState ? in.c0->to(at::kFloat).contiguous() : Tensor();
  Tensor dh_steps = projected ? at::empty({s.N, P}, float_opts) : Tensor();  // dh of every step, for dW_hr
  Tensor dunprojected = projected ? at::empty({s.B, H}, float_opts) : Tensor();
  const Tensor w_hr = projected ? in.w_hr->to(at::kFloat) : Tensor();

  const PersistentPlan plan = plan_persistent_backward<Cell, T>(
      static_cast<int>(H), static_cast<int>(s.B), device_limits(in.x.device()));
  const bool persistent = T_steps > 0 && use_persistent(plan, projected, s.packed, s.B, H);
  if (persistent) {
    const DeviceSchedule schedule = device_schedule(steps, s, reverse, in.x.device());
    PersistentBackwardArgs<T> p{};
    p.step.hidden = static_cast<int>(H);
    p.step.out = static_cast<int>(P);
    p.step.act = act;
    const Tensor w_hh_t = in.w_hh.t().contiguous();  // [P, G*H]: the columns each block keeps on chip
    p.step.w_hh_t = ptr<T>(w_hh_t);
    p.step.dh0 = ptr<float>(dh0);
    p.step.carry = ptr<float>(carry);
    p.step.grad_y = ptr<T>(grad_y);
    p.step.workspace = ptr<float>(workspace);
    p.step.dc = kCellState ? ptr<float>(dc) : nullptr;
    p.step.dgates = ptr<float>(dgates);
    p.step.dgates_hh = kSplitGates ? ptr<float>(dgates_hh) : nullptr;
    p.step.pointwise = true;
    p.dgates_next = ptr<float>(dgates_hh);
    p.c0 = kCellState ? ptr<float>(c0) : nullptr;
    p.y = ptr<T>(y);
    p.h0 = ptr<T>(in.h0);
    p.schedule = schedule.table;
    p.plan = plan;
    C10_CUDA_CHECK((launch_persistent_backward<Cell, T>(p, stream)));
    count_algorithm(AlgorithmCount::BackwardPersistent);
  } else if (T_steps > 0) {
    count_algorithm(AlgorithmCount::BackwardStep);
  }

  // Step-wise: k = T-1 .. 0 in reverse visiting order, then k = -1 for h0's gradient of the rows that
  // step 0 (in visiting order) started from h0. Each launch first takes R = dgates_{k+1} W_hh from a
  // float cuBLAS GEMM (the gate gradients stay float).
  const Tensor w_hh_float = persistent ? Tensor() : in.w_hh.to(at::kFloat);  // [G*H, P]
  for (int64_t k = T_steps - 1; k >= -1 && T_steps > 0 && !persistent; --k) {
    const Step* cur = k >= 0 ? &steps[k] : nullptr;
    const Step* next = k + 1 < T_steps ? &steps[k + 1] : nullptr;
    BackwardStepArgs<T> a{};
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
      if (kCellState) {
        a.c_prev = PrevState<float>{ptr<float>(workspace) + cur->prev_offset * W * H + Cell::saved_c * H,
                                    ptr<float>(c0), cur->prev_rows, W * H, H};
        a.dc = ptr<float>(dc);
      }
      a.h_prev = PrevState<T>{ptr<T>(y) + cur->prev_offset * P, ptr<T>(in.h0), cur->prev_rows, P, P};
      a.dgates = ptr<float>(dgates) + cur->offset * G * H;
      a.dgates_hh = kSplitGates ? ptr<float>(dgates_hh) + cur->offset * G * H : nullptr;
      a.dh_total = projected ? ptr<float>(dh_steps) + cur->offset * P : nullptr;
    }
    a.pointwise = !projected;
    C10_CUDA_CHECK((launch_backward_step<Cell, T>(a, stream)));
    if (projected && cur != nullptr) {  // dh (P wide) back through W_hr, then the gate math
      mm_into(dunprojected.narrow(0, 0, cur->rows), dh_steps.narrow(0, cur->offset, cur->rows), w_hr);
      BackwardStepArgs<T> b = a;
      b.recurrent = nullptr;
      b.next_rows = 0;
      b.next_prev_rows = 0;
      b.dh_cell = ptr<float>(dunprojected);
      b.dh_total = nullptr;
      b.pointwise = true;
      C10_CUDA_CHECK((launch_backward_step<Cell, T>(b, stream)));
    }
  }

  const auto dtype = in.x.scalar_type();
  const Tensor h_prev = gather_prev_state(y, in.h0, steps);
  LinearGrads g = linear_grads(dgates.to(dtype), dgates_hh.to(dtype), in.x, h_prev, in.w_ih, has_bias);
  Tensor dw_hr = at::empty({0}, in.x.options());
  if constexpr (Cell::projectable) {
    if (projected) {  // dW_hr = dh^T (the unprojected output, o * tanh(c) from the workspace)
      const Tensor o = workspace.narrow(1, Cell::saved_o * H, H), c = workspace.narrow(1, Cell::saved_c * H, H);
      dw_hr = at::mm(dh_steps.t(), o * at::tanh(c)).to(dtype);
    }
  }
  return {g.dx, dh0.to(dtype), kCellState ? dc.to(dtype) : Tensor(), g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, dw_hr};
}

// The step kernels index rows and columns with 32-bit ints (offsets are 64-bit).
void check_kernel_limits(const std::string& op, const LayerShape& s, int gates) {
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  TORCH_CHECK(s.B <= kMax && gates * s.H <= kMax && s.P <= kMax, "fusedrnn.", op,
              ": CUDA kernels need batch, ", gates, " * hidden_size and proj_size below 2^31, got batch ", s.B,
              ", hidden_size ", s.H, ", output size ", s.P);
}

LayerTensors layer_tensors(const LayerInputs& in) {
  return {as_packed(in.x, in.shape), contiguous(in.h0),   contiguous(in.w_ih), contiguous(in.w_hh),
          contiguous(in.c0),         contiguous(in.b_ih), contiguous(in.b_hh), contiguous(in.w_hr)};
}

// What forward and backward share: the op's name for errors, the kernel limits, the device, the
// schedule and the tensors; then body(Cell{}, Storage<T>{}, tensors, steps).
template <typename Body>
auto run_layer(const LayerInputs& in, const char* direction, Body&& body) {
  return visit_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    const std::string op = std::string(Cell::name) + "_" + direction;
    check_kernel_limits(op, in.shape, Cell::gates);
    const c10::cuda::CUDAGuard guard(in.x.device());
    const std::vector<Step> steps = layer_schedule(in);
    const LayerTensors tensors = layer_tensors(in);
    return dispatch_storage(op.c_str(), in.x.scalar_type(),
                            [&](auto storage) { return body(cell, storage, tensors, steps); });
  });
}

}  // namespace

LayerOutputs forward(const LayerInputs& in, bool training) {
  const LayerShape& s = in.shape;
  return run_layer(in, "forward", [&](auto cell, auto storage, const LayerTensors& t, const std::vector<Step>& steps) {
    using Cell = decltype(cell);
    using T = typename decltype(storage)::type;
    LayerOutputs out = forward_layer<Cell, T>(t, steps, s, in.reverse, in.act, training);
    out.y = as_layout(out.y, s);
    if (out.c_n.defined()) out.c_n = out.c_n.to(in.x.scalar_type());
    return out;
  });
}

LayerGrads backward(const LayerInputs& in, const LayerGradInputs& grads) {
  const LayerShape& s = in.shape;
  return run_layer(in, "backward", [&](auto cell, auto storage, const LayerTensors& t, const std::vector<Step>& steps) {
    using Cell = decltype(cell);
    using T = typename decltype(storage)::type;
    LayerGrads g = backward_layer<Cell, T>(t, as_packed(grads.grad_y, s), contiguous(grads.grad_hn),
                                           contiguous(grads.grad_cn), grads.has_bias, steps, s, in.reverse, in.act,
                                           as_packed(grads.y, s), grads.workspace.contiguous());
    g.dx = as_layout(g.dx, s);
    return g;
  });
}

}  // namespace fusedrnn::cuda
