// The schemas of every fusedrnn op. bindings/layer_ops.h holds their kernels, written once over a
// backend; bindings/cpu.cpp and cuda.cpp register them; bindings/autograd.cpp holds their autograd
// kernels; fusedrnn/_ops.py registers the fake (shape) and autocast kernels.
//
// One op per layer and direction over the whole sequence. x is [T, B, I] (dense) or, when
// batch_sizes ([T] int64 on the CPU, non-increasing, as in PackedSequence) is given, packed [N, I].
// y has x's layout with P features (P = proj_size when w_hr is given, else H). workspace is what
// the backward needs, [N, cols] in the accumulate dtype (float32 for half/bfloat16 inputs), empty
// when training=False; its columns are each cell's workspace_cols (csrc/fusedrnn/lstm.h, gru.h, rnn.h).
// A backward with input_grad=False skips dx (returned as [0]): autograd asks for it only when x requires
// grad, and a step-by-step call's x seldom does (dx is a whole product with W_ih, per call).
//
// The step-wise ops (fusedrnn/stepwise.h: layer norm, zoneout, recurrent dropout) take the plain ops'
// arguments without w_hr, then the options, each None when off: the norms' weights (the LSTM and the
// GRU), zoneout (x's layout with S*H features: the weight of the previous h, then of the previous c,
// per step; Bernoulli draws in training, p in evaluation), recurrent_mask ([B, H], multiplying h where
// it enters W_hh). Their workspace is StepwiseLayout::cols() wide, and the LSTM's and GRU's backward
// return the norm weights' gradients ([0] without layer norm) after the plain ones.
#include <torch/library.h>

TORCH_LIBRARY(fusedrnn, m) {
  m.def(
      "lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? w_hr, Tensor? batch_sizes, bool reverse, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "lstm_backward(Tensor grad_y, Tensor grad_hn, Tensor grad_cn, Tensor x, Tensor h0, Tensor c0, "
      "Tensor w_ih, Tensor w_hh, Tensor? w_hr, bool has_bias, Tensor? batch_sizes, bool reverse, Tensor y, "
      "Tensor workspace, bool input_grad=True) -> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dw_ih, Tensor dw_hh, "
      "Tensor db_ih, Tensor db_hh, Tensor dw_hr)");
  m.def(
      "gru_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? batch_sizes, bool reverse, bool training) -> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "gru_backward(Tensor grad_y, Tensor grad_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "bool has_bias, Tensor? batch_sizes, bool reverse, Tensor y, Tensor workspace, bool input_grad=True) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh)");
  m.def(
      "rnn_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? batch_sizes, bool reverse, str nonlinearity, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "rnn_backward(Tensor grad_y, Tensor grad_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "bool has_bias, Tensor? batch_sizes, bool reverse, str nonlinearity, Tensor y, Tensor workspace, "
      "bool input_grad=True) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh)");
  m.def(
      "stepwise_lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? ln_ih_weight, Tensor? ln_hh_weight, Tensor? ln_c_weight, Tensor? ln_c_bias, "
      "Tensor? zoneout, Tensor? recurrent_mask, Tensor? batch_sizes, bool reverse, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "stepwise_lstm_backward(Tensor grad_y, Tensor grad_hn, Tensor grad_cn, Tensor x, Tensor h0, Tensor c0, "
      "Tensor w_ih, Tensor w_hh, Tensor? ln_ih_weight, Tensor? ln_hh_weight, Tensor? ln_c_weight, "
      "Tensor? ln_c_bias, Tensor? zoneout, Tensor? recurrent_mask, bool has_bias, Tensor? batch_sizes, "
      "bool reverse, Tensor y, Tensor workspace, bool input_grad=True) "
      "-> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh, "
      "Tensor dln_ih_weight, Tensor dln_hh_weight, Tensor dln_c_weight, Tensor dln_c_bias)");
  m.def(
      "stepwise_gru_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? ln_ih_weight, Tensor? ln_hh_weight, Tensor? zoneout, Tensor? recurrent_mask, "
      "Tensor? batch_sizes, bool reverse, bool training) -> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "stepwise_gru_backward(Tensor grad_y, Tensor grad_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? ln_ih_weight, Tensor? ln_hh_weight, Tensor? zoneout, Tensor? recurrent_mask, bool has_bias, "
      "Tensor? batch_sizes, bool reverse, Tensor y, Tensor workspace, bool input_grad=True) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh, Tensor dln_ih_weight, "
      "Tensor dln_hh_weight)");
  m.def(
      "stepwise_rnn_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? zoneout, Tensor? recurrent_mask, Tensor? batch_sizes, bool reverse, str nonlinearity, "
      "bool training) -> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "stepwise_rnn_backward(Tensor grad_y, Tensor grad_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? zoneout, Tensor? recurrent_mask, bool has_bias, Tensor? batch_sizes, bool reverse, "
      "str nonlinearity, Tensor y, Tensor workspace, bool input_grad=True) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh)");
}
