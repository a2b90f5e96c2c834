// The kernels of every op in csrc/ops.cpp, written once for all backends: each checks its arguments
// (the errors name the op, the argument and the expectation), gathers them into a LayerInputs and
// calls the backend's forward or backward (cpu/layer.h, cuda/layer.h). bindings/cpu.cpp and
// bindings/cuda.cpp register them for their dispatch key with register_layer_ops.
#pragma once

#include <torch/library.h>

#include <string>
#include <tuple>

#include "bindings/checks.h"
#include "fusedrnn/cells.h"
#include "sequence/layer.h"

namespace fusedrnn {

using ForwardFn = LayerOutputs (*)(const LayerInputs&, bool training);
using BackwardFn = LayerGrads (*)(const LayerInputs&, const LayerGradInputs&);

template <ForwardFn Forward, BackwardFn Backward>
struct LayerOps {
  using Tensor = at::Tensor;
  using Forward4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
  using Forward3 = std::tuple<Tensor, Tensor, Tensor>;
  using Backward8 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
  using Backward6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

  template <typename Cell>
  static LayerInputs checked(const char* op, Activation act, const Tensor& x, const Tensor& h0, const OptTensor& c0,
                             const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                             const OptTensor& w_hr, const OptTensor& batch_sizes, bool reverse) {
    const LayerShape s = check_layer_inputs(op, Cell::gates, x, h0, c0.has_value() ? &*c0 : nullptr, w_ih, w_hh,
                                            b_ih, b_hh, w_hr, batch_sizes);
    auto present = [](const OptTensor& t) { return t.has_value() && t->defined() ? t : std::nullopt; };
    return {Cell::id,      act,     x, h0, c0, w_ih, w_hh, present(b_ih), present(b_hh), present(w_hr),
            present(batch_sizes), reverse, s};
  }

  template <typename Cell>
  static LayerGrads backward(const char* op, Activation act, const Tensor& grad_y, const Tensor& grad_hn,
                             const OptTensor& grad_cn, const Tensor& x, const Tensor& h0, const OptTensor& c0,
                             const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr, bool has_bias,
                             const OptTensor& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace,
                             bool input_grad) {
    const LayerInputs in = checked<Cell>(op, act, x, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt, w_hr,
                                         batch_sizes, reverse);
    check_backward_inputs(op, in.shape, x, grad_y, grad_hn, grad_cn.has_value() ? &*grad_cn : nullptr, y, workspace,
                          Cell::workspace_cols * in.shape.H);
    LayerGrads g = Backward(in, {grad_y, grad_hn, grad_cn, y, workspace, has_bias, input_grad});
    if (!input_grad) g.dx = at::empty({0}, x.options());  // a backend may compute it anyway (CUDA does)
    return g;
  }

  static Forward4 lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
                               const OptTensor& batch_sizes, bool reverse, bool training) {
    const LayerOutputs o = Forward(checked<LstmCell>("lstm_forward", Activation::Tanh, x, h0, c0, w_ih, w_hh, b_ih,
                                                     b_hh, w_hr, batch_sizes, reverse),
                                   training);
    return {o.y, o.h_n, o.c_n, o.workspace};
  }

  static Backward8 lstm_backward(const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x,
                                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                 const OptTensor& w_hr, bool has_bias, const OptTensor& batch_sizes, bool reverse,
                                 const Tensor& y, const Tensor& workspace, bool input_grad) {
    const LayerGrads g = backward<LstmCell>("lstm_backward", Activation::Tanh, grad_y, grad_hn, grad_cn, x, h0, c0,
                                            w_ih, w_hh, w_hr, has_bias, batch_sizes, reverse, y, workspace,
                                            input_grad);
    return {g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, g.dw_hr};
  }

  static Forward3 gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                              const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& batch_sizes, bool reverse,
                              bool training) {
    const LayerOutputs o = Forward(checked<GruCell>("gru_forward", Activation::Tanh, x, h0, std::nullopt, w_ih, w_hh,
                                                    b_ih, b_hh, std::nullopt, batch_sizes, reverse),
                                   training);
    return {o.y, o.h_n, o.workspace};
  }

  static Backward6 gru_backward(const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0,
                                const Tensor& w_ih, const Tensor& w_hh, bool has_bias, const OptTensor& batch_sizes,
                                bool reverse, const Tensor& y, const Tensor& workspace, bool input_grad) {
    const LayerGrads g = backward<GruCell>("gru_backward", Activation::Tanh, grad_y, grad_hn, std::nullopt, x, h0,
                                           std::nullopt, w_ih, w_hh, std::nullopt, has_bias, batch_sizes, reverse, y,
                                           workspace, input_grad);
    return {g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh};
  }

  static Forward3 rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                              const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& batch_sizes, bool reverse,
                              c10::string_view nonlinearity, bool training) {
    const Activation act = parse_nonlinearity("rnn_forward", std::string(nonlinearity));
    const LayerOutputs o = Forward(checked<RnnCell>("rnn_forward", act, x, h0, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                                    std::nullopt, batch_sizes, reverse),
                                   training);
    return {o.y, o.h_n, o.workspace};
  }

  static Backward6 rnn_backward(const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0,
                                const Tensor& w_ih, const Tensor& w_hh, bool has_bias, const OptTensor& batch_sizes,
                                bool reverse, c10::string_view nonlinearity, const Tensor& y,
                                const Tensor& workspace, bool input_grad) {
    const Activation act = parse_nonlinearity("rnn_backward", std::string(nonlinearity));
    const LayerGrads g = backward<RnnCell>("rnn_backward", act, grad_y, grad_hn, std::nullopt, x, h0, std::nullopt,
                                           w_ih, w_hh, std::nullopt, has_bias, batch_sizes, reverse, y, workspace,
                                           input_grad);
    return {g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh};
  }
};

// Registers the kernels of every op for the library's dispatch key (TORCH_LIBRARY_IMPL's m).
template <ForwardFn Forward, BackwardFn Backward>
void register_layer_ops(torch::Library& m) {
  using Ops = LayerOps<Forward, Backward>;
  m.impl("lstm_forward", &Ops::lstm_forward);
  m.impl("lstm_backward", &Ops::lstm_backward);
  m.impl("gru_forward", &Ops::gru_forward);
  m.impl("gru_backward", &Ops::gru_backward);
  m.impl("rnn_forward", &Ops::rnn_forward);
  m.impl("rnn_backward", &Ops::rnn_backward);
}

}  // namespace fusedrnn
