// The kernels of the layer-normalised LSTM and GRU ops (csrc/ops.cpp), registered for the CPU. Their
// CUDA path is not fused yet: fusedrnn/_layernorm_ops.py runs the reference step loop for CUDA tensors.
#include <torch/library.h>

#include <tuple>

#include "bindings/checks.h"
#include "cpu/layernorm_layer.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/layer_norm.h"

namespace fusedrnn {
namespace {

using at::Tensor;

LayerInputs layer_inputs(const char* op, CellId cell, int gates, const Tensor& x, const Tensor& h0, const OptTensor& c0,
                         const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                         const OptTensor& batch_sizes, bool reverse) {
  const LayerShape s = check_layer_inputs(op, gates, x, h0, c0.has_value() ? &*c0 : nullptr, w_ih, w_hh, b_ih, b_hh,
                                          std::nullopt, batch_sizes);
  auto present = [](const OptTensor& t) { return t.has_value() && t->defined() ? t : std::nullopt; };
  return {cell, Activation::Tanh, x, h0, c0, w_ih, w_hh, present(b_ih), present(b_hh), std::nullopt,
          present(batch_sizes), reverse, s};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                                        const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                                                        const OptTensor& b_hh, const Tensor& ln_ih,
                                                        const Tensor& ln_hh, const Tensor& ln_c_w,
                                                        const Tensor& ln_c_b, const OptTensor& batch_sizes,
                                                        bool reverse, bool training) {
  constexpr const char* op = "layernorm_lstm_forward";
  const LayerInputs in = layer_inputs(op, CellId::Lstm, LstmCell::gates, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                      batch_sizes, reverse);
  check_layernorm_weights(op, LstmCell::gates, in.shape, x, ln_ih, ln_hh, &ln_c_w, &ln_c_b);
  const LayerOutputs o = cpu::layernorm_forward(in, {ln_ih, ln_hh, ln_c_w, ln_c_b}, training);
  return {o.y, o.h_n, o.c_n, o.workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& ln_ih, const Tensor& ln_hh,
    const Tensor& ln_c_w, const Tensor& ln_c_b, bool has_bias, const OptTensor& batch_sizes, bool reverse,
    const Tensor& y, const Tensor& workspace, bool input_grad) {
  constexpr const char* op = "layernorm_lstm_backward";
  const LayerInputs in = layer_inputs(op, CellId::Lstm, LstmCell::gates, x, h0, c0, w_ih, w_hh, std::nullopt,
                                      std::nullopt, batch_sizes, reverse);
  check_layernorm_weights(op, LstmCell::gates, in.shape, x, ln_ih, ln_hh, &ln_c_w, &ln_c_b);
  check_backward_inputs(op, in.shape, x, grad_y, grad_hn, &grad_cn, y, workspace,
                        LayerNormed<LstmCell>::workspace_cols(in.shape.H));
  const auto [g, n] = cpu::layernorm_backward(in, {ln_ih, ln_hh, ln_c_w, ln_c_b},
                                              {grad_y, grad_hn, grad_cn, y, workspace, has_bias, input_grad});
  return {g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, n.ln_ih, n.ln_hh, n.ln_c_w, n.ln_c_b};
}

std::tuple<Tensor, Tensor, Tensor> gru_forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                               const Tensor& ln_ih, const Tensor& ln_hh,
                                               const OptTensor& batch_sizes, bool reverse, bool training) {
  constexpr const char* op = "layernorm_gru_forward";
  const LayerInputs in = layer_inputs(op, CellId::Gru, GruCell::gates, x, h0, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                      batch_sizes, reverse);
  check_layernorm_weights(op, GruCell::gates, in.shape, x, ln_ih, ln_hh, nullptr, nullptr);
  const LayerOutputs o = cpu::layernorm_forward(in, {ln_ih, ln_hh, Tensor(), Tensor()}, training);
  return {o.y, o.h_n, o.workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& ln_ih, const Tensor& ln_hh, bool has_bias, const OptTensor& batch_sizes,
    bool reverse, const Tensor& y, const Tensor& workspace, bool input_grad) {
  constexpr const char* op = "layernorm_gru_backward";
  const LayerInputs in = layer_inputs(op, CellId::Gru, GruCell::gates, x, h0, std::nullopt, w_ih, w_hh, std::nullopt,
                                      std::nullopt, batch_sizes, reverse);
  check_layernorm_weights(op, GruCell::gates, in.shape, x, ln_ih, ln_hh, nullptr, nullptr);
  check_backward_inputs(op, in.shape, x, grad_y, grad_hn, nullptr, y, workspace,
                        LayerNormed<GruCell>::workspace_cols(in.shape.H));
  const auto [g, n] = cpu::layernorm_backward(in, {ln_ih, ln_hh, Tensor(), Tensor()},
                                              {grad_y, grad_hn, std::nullopt, y, workspace, has_bias, input_grad});
  return {g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, n.ln_ih, n.ln_hh};
}

}  // namespace
}  // namespace fusedrnn

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("layernorm_lstm_forward", &fusedrnn::lstm_forward);
  m.impl("layernorm_lstm_backward", &fusedrnn::lstm_backward);
  m.impl("layernorm_gru_forward", &fusedrnn::gru_forward);
  m.impl("layernorm_gru_backward", &fusedrnn::gru_backward);
}
