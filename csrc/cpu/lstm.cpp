// CPU LSTM: per step one GEMM for h W_hh^T and one fused SIMD pass for the gate math
// (plus one GEMM for the projection when proj_size > 0); backward mirrors it in reverse.
#include "cpu/layers.h"
#include "bindings/sequence.h"
#include "cpu/parallel.h"
#include "cpu/passes.h"
#include "fusedrnn/params.h"

namespace fusedrnn::cpu {
namespace {

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward_typed(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, const std::vector<int64_t>& batch_sizes,
    bool reverse, bool training) {
  const int64_t N = x.size(0), B = h0.size(0), P = h0.size(1), H = c0.size(1);
  const bool projected = w_hr.has_value() && w_hr->defined();
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);

  const Tensor xproj = input_projection(x, w_ih, b_ih);  // [N, 4H]
  Tensor y = at::empty({N, P}, x.options());
  Tensor h = h0.clone();  // [B, P]: running hidden state; rows past batch_sizes[t] keep theirs
  Tensor c = c0.clone();  // [B, H]
  Tensor workspace = training ? at::empty({N, kLstmWorkspaceCols * H}, x.options()) : at::empty({0}, x.options());
  Tensor hh = at::empty({B, kLstmGates * H}, x.options());
  Tensor unprojected = projected ? at::empty({B, H}, x.options()) : Tensor();
  const Tensor w_hh_t = w_hh.t();
  const Tensor w_hr_t = projected ? w_hr->t() : Tensor();

  for (const Step& s : steps) {
    mm_into(hh.narrow(0, 0, s.rows), h.narrow(0, 0, s.rows), w_hh_t);
    LstmForwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.xproj = xproj.data_ptr<T>() + s.offset * kLstmGates * H;
    p.hh = hh.data_ptr<T>();
    p.b_hh = data_or_null<T>(b_hh);
    p.c = c.data_ptr<T>();
    p.h = projected ? unprojected.data_ptr<T>() : h.data_ptr<T>();
    p.y = projected ? nullptr : y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * kLstmWorkspaceCols * H : nullptr;
    const auto pass = step_passes<T>().lstm_forward;
    parallel_rows(s.rows, kLstmGates * H, [&](int64_t begin, int64_t end) { pass(p, begin, end); });
    if (projected) {
      Tensor y_rows = y.narrow(0, s.offset, s.rows);
      mm_into(y_rows, unprojected.narrow(0, 0, s.rows), w_hr_t);
      h.narrow(0, 0, s.rows).copy_(y_rows);
    }
  }
  return {y, h, c, workspace};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_typed(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr, bool has_bias,
    const std::vector<int64_t>& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace) {
  const int64_t N = x.size(0), B = h0.size(0), P = h0.size(1), H = c0.size(1);
  const bool projected = w_hr.has_value() && w_hr->defined();
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const int64_t ws_cols = kLstmWorkspaceCols * H;

  Tensor dgates = at::empty({N, kLstmGates * H}, x.options());
  Tensor dh = grad_hn.clone();  // [B, P]: gradient of the running hidden state
  Tensor dc = grad_cn.clone();  // [B, H]
  Tensor dh_steps = projected ? at::empty({N, P}, x.options()) : Tensor();  // for dW_hr
  Tensor dunprojected = projected ? at::empty({B, H}, x.options()) : Tensor();

  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Step& s = *it;
    Tensor dh_rows = dh.narrow(0, 0, s.rows);
    dh_rows.add_(grad_y.narrow(0, s.offset, s.rows));
    const T* dh_cell = dh_rows.data_ptr<T>();
    if (projected) {
      dh_steps.narrow(0, s.offset, s.rows).copy_(dh_rows);
      mm_into(dunprojected.narrow(0, 0, s.rows), dh_rows, *w_hr);
      dh_cell = dunprojected.data_ptr<T>();
    }
    LstmBackwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.dh = dh_cell;
    p.dc = dc.data_ptr<T>();
    p.workspace = workspace.data_ptr<T>() + s.offset * ws_cols;
    p.c_prev = PrevState<T>{workspace.data_ptr<T>() + s.prev_offset * ws_cols + 4 * H, c0.data_ptr<T>(),
                            s.prev_rows, ws_cols, H};
    p.dgates = dgates.data_ptr<T>() + s.offset * kLstmGates * H;
    const auto pass = step_passes<T>().lstm_backward;
    parallel_rows(s.rows, kLstmGates * H, [&](int64_t begin, int64_t end) { pass(p, begin, end); });
    mm_into(dh_rows, dgates.narrow(0, s.offset, s.rows), w_hh);
  }

  const Tensor h_prev = gather_prev_state(y, h0, steps);
  LinearGrads g = linear_grads(dgates, dgates, x, h_prev, w_ih, has_bias);
  Tensor dw_hr = at::empty({0}, x.options());
  if (projected) {
    const Tensor o = workspace.narrow(1, 3 * H, H), c = workspace.narrow(1, 4 * H, H);
    dw_hr = at::mm(dh_steps.t(), o * at::tanh(c));
  }
  return {g.dx, dh, dc, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, dw_hr};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, const std::vector<int64_t>& batch_sizes,
    bool reverse, bool training) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_lstm_forward_cpu", [&] {
    return lstm_forward_typed<scalar_t>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, training);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr, bool has_bias,
    const std::vector<int64_t>& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_lstm_backward_cpu", [&] {
    return lstm_backward_typed<scalar_t>(grad_y, grad_hn, grad_cn, x, h0, c0, w_ih, w_hh, w_hr, has_bias,
                                         batch_sizes, reverse, y, workspace);
  });
}

}  // namespace fusedrnn::cpu
