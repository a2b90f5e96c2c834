// The kernels of the step-wise ops (csrc/ops.cpp; fusedrnn/stepwise.h: layer norm, zoneout, recurrent
// dropout), registered for the CPU. Their CUDA path is not fused yet: fusedrnn/_stepwise_ops.py runs
// the reference step loop for CUDA tensors.
#include <torch/library.h>

#include <string>
#include <tuple>

#include "bindings/checks.h"
#include "cpu/stepwise_layer.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/stepwise.h"

namespace fusedrnn {
namespace {

using at::Tensor;

OptTensor present(const OptTensor& t) { return t.has_value() && t->defined() ? t : std::nullopt; }

// A step-wise op's arguments, checked: the layer's (biases absent in a backward) and its options.
template <typename Cell>
std::pair<LayerInputs, cpu::StepwiseOptions> stepwise_inputs(
    const char* op, const Tensor& x, const Tensor& h0, const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const cpu::StepwiseOptions& given, const OptTensor& batch_sizes,
    bool reverse, Activation act) {
  const LayerShape s = check_layer_inputs(op, Cell::gates, x, h0, c0.has_value() ? &*c0 : nullptr, w_ih, w_hh, b_ih,
                                          b_hh, std::nullopt, batch_sizes);
  const cpu::StepwiseOptions o{present(given.ln_ih), present(given.ln_hh), present(given.ln_c_w),
                               present(given.ln_c_b), present(given.zoneout), present(given.recurrent_mask)};
  check_stepwise_options(op, Cell::gates, Cell::states, s, x, o.ln_ih, o.ln_hh, o.ln_c_w, o.ln_c_b, o.zoneout,
                         o.recurrent_mask);
  return {{Cell::id, act, x, h0, c0, w_ih, w_hh, present(b_ih), present(b_hh), std::nullopt, present(batch_sizes),
           reverse, s},
          o};
}

template <typename Cell>
int64_t workspace_cols(const LayerShape& s, const cpu::StepwiseOptions& o) {
  return stepwise_layout<Cell>(s.H, o.norm(), o.zoneout.has_value()).cols();
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& ln_ih, const OptTensor& ln_hh,
    const OptTensor& ln_c_w, const OptTensor& ln_c_b, const OptTensor& zoneout, const OptTensor& recurrent_mask,
    const OptTensor& batch_sizes, bool reverse, bool training) {
  const auto [in, o] = stepwise_inputs<LstmCell>("stepwise_lstm_forward", x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                                 {ln_ih, ln_hh, ln_c_w, ln_c_b, zoneout, recurrent_mask},
                                                 batch_sizes, reverse, Activation::Tanh);
  const LayerOutputs out = cpu::stepwise_forward(in, o, training);
  return {out.y, out.h_n, out.c_n, out.workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& ln_ih, const OptTensor& ln_hh,
    const OptTensor& ln_c_w, const OptTensor& ln_c_b, const OptTensor& zoneout, const OptTensor& recurrent_mask,
    bool has_bias, const OptTensor& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace,
    bool input_grad) {
  constexpr const char* op = "stepwise_lstm_backward";
  const auto [in, o] = stepwise_inputs<LstmCell>(op, x, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt,
                                                 {ln_ih, ln_hh, ln_c_w, ln_c_b, zoneout, recurrent_mask},
                                                 batch_sizes, reverse, Activation::Tanh);
  check_backward_inputs(op, in.shape, x, grad_y, grad_hn, &grad_cn, y, workspace, workspace_cols<LstmCell>(in.shape, o));
  const auto [g, n] = cpu::stepwise_backward(in, o, {grad_y, grad_hn, grad_cn, y, workspace, has_bias, input_grad});
  return {g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, n.ln_ih, n.ln_hh, n.ln_c_w, n.ln_c_b};
}

std::tuple<Tensor, Tensor, Tensor> gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                               const OptTensor& ln_ih, const OptTensor& ln_hh,
                                               const OptTensor& zoneout, const OptTensor& recurrent_mask,
                                               const OptTensor& batch_sizes, bool reverse, bool training) {
  const auto [in, o] = stepwise_inputs<GruCell>("stepwise_gru_forward", x, h0, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                                {ln_ih, ln_hh, std::nullopt, std::nullopt, zoneout, recurrent_mask},
                                                batch_sizes, reverse, Activation::Tanh);
  const LayerOutputs out = cpu::stepwise_forward(in, o, training);
  return {out.y, out.h_n, out.workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptTensor& ln_ih, const OptTensor& ln_hh, const OptTensor& zoneout,
    const OptTensor& recurrent_mask, bool has_bias, const OptTensor& batch_sizes, bool reverse, const Tensor& y,
    const Tensor& workspace, bool input_grad) {
  constexpr const char* op = "stepwise_gru_backward";
  const auto [in, o] = stepwise_inputs<GruCell>(op, x, h0, std::nullopt, w_ih, w_hh, std::nullopt, std::nullopt,
                                                {ln_ih, ln_hh, std::nullopt, std::nullopt, zoneout, recurrent_mask},
                                                batch_sizes, reverse, Activation::Tanh);
  check_backward_inputs(op, in.shape, x, grad_y, grad_hn, nullptr, y, workspace, workspace_cols<GruCell>(in.shape, o));
  const auto [g, n] = cpu::stepwise_backward(in, o, {grad_y, grad_hn, std::nullopt, y, workspace, has_bias, input_grad});
  return {g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, n.ln_ih, n.ln_hh};
}

std::tuple<Tensor, Tensor, Tensor> rnn_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                               const OptTensor& zoneout, const OptTensor& recurrent_mask,
                                               const OptTensor& batch_sizes, bool reverse,
                                               const std::string& nonlinearity, bool training) {
  constexpr const char* op = "stepwise_rnn_forward";
  const auto [in, o] = stepwise_inputs<RnnCell>(op, x, h0, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                                {std::nullopt, std::nullopt, std::nullopt, std::nullopt, zoneout,
                                                 recurrent_mask},
                                                batch_sizes, reverse, parse_nonlinearity(op, nonlinearity));
  const LayerOutputs out = cpu::stepwise_forward(in, o, training);
  return {out.y, out.h_n, out.workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptTensor& zoneout, const OptTensor& recurrent_mask, bool has_bias,
    const OptTensor& batch_sizes, bool reverse, const std::string& nonlinearity, const Tensor& y,
    const Tensor& workspace, bool input_grad) {
  constexpr const char* op = "stepwise_rnn_backward";
  const auto [in, o] = stepwise_inputs<RnnCell>(op, x, h0, std::nullopt, w_ih, w_hh, std::nullopt, std::nullopt,
                                                {std::nullopt, std::nullopt, std::nullopt, std::nullopt, zoneout,
                                                 recurrent_mask},
                                                batch_sizes, reverse, parse_nonlinearity(op, nonlinearity));
  check_backward_inputs(op, in.shape, x, grad_y, grad_hn, nullptr, y, workspace, workspace_cols<RnnCell>(in.shape, o));
  const auto [g, n] = cpu::stepwise_backward(in, o, {grad_y, grad_hn, std::nullopt, y, workspace, has_bias, input_grad});
  return {g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh};
}

}  // namespace
}  // namespace fusedrnn

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("stepwise_lstm_forward", &fusedrnn::lstm_forward);
  m.impl("stepwise_lstm_backward", &fusedrnn::lstm_backward);
  m.impl("stepwise_gru_forward", &fusedrnn::gru_forward);
  m.impl("stepwise_gru_backward", &fusedrnn::gru_backward);
  m.impl("stepwise_rnn_forward", &fusedrnn::rnn_forward);
  m.impl("stepwise_rnn_backward", &fusedrnn::rnn_backward);
}
