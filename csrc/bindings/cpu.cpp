// CPU kernels of the fusedrnn ops: checks, dtype handling (half/bfloat16 run in float32), layout
// (dense [T, B, F] <-> packed [N, F]) and the calls into csrc/cpu.
#include <torch/library.h>

#include "bindings/checks.h"
#include "cpu/layers.h"
#include "fusedrnn/params.h"

namespace fusedrnn {
namespace {

using at::Tensor;

// Brings every tensor to the accumulate dtype, contiguous.
struct ToAccumulate {
  at::ScalarType dtype;
  Tensor operator()(const Tensor& t) const { return t.to(dtype).contiguous(); }
  OptTensor operator()(const OptTensor& t) const {
    if (!t.has_value() || !t->defined()) return std::nullopt;
    return (*this)(*t);
  }
};

Tensor as_packed(const Tensor& t, const LayerShape& s) { return t.reshape({s.N, t.size(-1)}); }

Tensor as_layout(const Tensor& t2d, const LayerShape& s, at::ScalarType dtype) {
  const Tensor out = t2d.to(dtype);
  return s.packed ? out : out.view({s.T, s.B, t2d.size(1)});
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward_cpu(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, const OptTensor& batch_sizes,
    bool reverse, bool training) {
  const LayerShape s =
      check_layer_inputs("lstm_forward", kLstmGates, x, h0, &c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes);
  const ToAccumulate acc{accumulate_dtype(x.scalar_type())};
  auto [y, h_n, c_n, workspace] =
      cpu::lstm_forward(as_packed(acc(x), s), acc(h0), acc(c0), acc(w_ih), acc(w_hh), w_ih, w_hh, acc(b_ih),
                        acc(b_hh), acc(w_hr), batch_sizes_vector(batch_sizes, s), reverse, training);
  const auto dtype = x.scalar_type();
  return {as_layout(y, s, dtype), h_n.to(dtype), c_n.to(dtype), workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_cpu(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr, bool has_bias,
    const OptTensor& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace) {
  const LayerShape s = check_layer_inputs("lstm_backward", kLstmGates, x, h0, &c0, w_ih, w_hh, std::nullopt,
                                          std::nullopt, w_hr, batch_sizes);
  check_backward_inputs("lstm_backward", s, x, grad_y, grad_hn, &grad_cn, y, workspace,
                        kLstmWorkspaceCols * s.H);
  const ToAccumulate acc{accumulate_dtype(x.scalar_type())};
  auto [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr] = cpu::lstm_backward(
      as_packed(acc(grad_y), s), acc(grad_hn), acc(grad_cn), as_packed(acc(x), s), acc(h0), acc(c0), acc(w_ih),
      acc(w_hh), w_hh, acc(w_hr), has_bias, batch_sizes_vector(batch_sizes, s), reverse, as_packed(acc(y), s),
      workspace.contiguous());
  const auto dtype = x.scalar_type();
  return {as_layout(dx, s, dtype), dh0.to(dtype), dc0.to(dtype), dw_ih.to(dtype), dw_hh.to(dtype),
          db_ih.to(dtype), db_hh.to(dtype), dw_hr.to(dtype)};
}

std::tuple<Tensor, Tensor, Tensor> gru_forward_cpu(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                               const OptTensor& batch_sizes, bool reverse, bool training) {
  const LayerShape s = check_layer_inputs("gru_forward", kGruGates, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh,
                                          std::nullopt, batch_sizes);
  const ToAccumulate acc{accumulate_dtype(x.scalar_type())};
  auto [y, h_n, workspace] = cpu::gru_forward(as_packed(acc(x), s), acc(h0), acc(w_ih), acc(w_hh), w_ih, w_hh,
                                              acc(b_ih), acc(b_hh), batch_sizes_vector(batch_sizes, s), reverse, training);
  const auto dtype = x.scalar_type();
  return {as_layout(y, s, dtype), h_n.to(dtype), workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward_cpu(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, bool has_bias, const OptTensor& batch_sizes, bool reverse, const Tensor& y,
    const Tensor& workspace) {
  const LayerShape s = check_layer_inputs("gru_backward", kGruGates, x, h0, nullptr, w_ih, w_hh, std::nullopt,
                                          std::nullopt, std::nullopt, batch_sizes);
  check_backward_inputs("gru_backward", s, x, grad_y, grad_hn, nullptr, y, workspace, kGruWorkspaceCols * s.H);
  const ToAccumulate acc{accumulate_dtype(x.scalar_type())};
  auto [dx, dh0, dw_ih, dw_hh, db_ih, db_hh] = cpu::gru_backward(
      as_packed(acc(grad_y), s), acc(grad_hn), as_packed(acc(x), s), acc(h0), acc(w_ih), acc(w_hh), w_hh, has_bias,
      batch_sizes_vector(batch_sizes, s), reverse, as_packed(acc(y), s), workspace.contiguous());
  const auto dtype = x.scalar_type();
  return {as_layout(dx, s, dtype), dh0.to(dtype), dw_ih.to(dtype), dw_hh.to(dtype), db_ih.to(dtype),
          db_hh.to(dtype)};
}

std::tuple<Tensor, Tensor, Tensor> rnn_forward_cpu(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                               const OptTensor& batch_sizes, bool reverse,
                                               c10::string_view nonlinearity, bool training) {
  const Activation act = parse_nonlinearity("rnn_forward", std::string(nonlinearity));
  const LayerShape s =
      check_layer_inputs("rnn_forward", 1, x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, std::nullopt, batch_sizes);
  const ToAccumulate acc{accumulate_dtype(x.scalar_type())};
  auto [y, h_n, workspace] = cpu::rnn_forward(as_packed(acc(x), s), acc(h0), acc(w_ih), acc(w_hh), w_ih, w_hh,
                                              acc(b_ih), acc(b_hh), batch_sizes_vector(batch_sizes, s), reverse, act, training);
  const auto dtype = x.scalar_type();
  return {as_layout(y, s, dtype), h_n.to(dtype), workspace};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_cpu(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, bool has_bias, const OptTensor& batch_sizes, bool reverse, c10::string_view nonlinearity,
    const Tensor& y, const Tensor& workspace) {
  const Activation act = parse_nonlinearity("rnn_backward", std::string(nonlinearity));
  const LayerShape s = check_layer_inputs("rnn_backward", 1, x, h0, nullptr, w_ih, w_hh, std::nullopt,
                                          std::nullopt, std::nullopt, batch_sizes);
  check_backward_inputs("rnn_backward", s, x, grad_y, grad_hn, nullptr, y, workspace, s.H);
  const ToAccumulate acc{accumulate_dtype(x.scalar_type())};
  auto [dx, dh0, dw_ih, dw_hh, db_ih, db_hh] = cpu::rnn_backward(
      as_packed(acc(grad_y), s), acc(grad_hn), as_packed(acc(x), s), acc(h0), acc(w_ih), acc(w_hh), w_hh, has_bias,
      batch_sizes_vector(batch_sizes, s), reverse, act, as_packed(acc(y), s), workspace.contiguous());
  const auto dtype = x.scalar_type();
  return {as_layout(dx, s, dtype), dh0.to(dtype), dw_ih.to(dtype), dw_hh.to(dtype), db_ih.to(dtype),
          db_hh.to(dtype)};
}

}  // namespace
}  // namespace fusedrnn

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("lstm_forward", &fusedrnn::lstm_forward_cpu);
  m.impl("lstm_backward", &fusedrnn::lstm_backward_cpu);
  m.impl("gru_forward", &fusedrnn::gru_forward_cpu);
  m.impl("gru_backward", &fusedrnn::gru_backward_cpu);
  m.impl("rnn_forward", &fusedrnn::rnn_forward_cpu);
  m.impl("rnn_backward", &fusedrnn::rnn_backward_cpu);
}
