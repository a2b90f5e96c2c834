"""Instruction-count probe of the CPU LSTM (repeatable where wall clocks are noisy).

One layer, T=100, B=8, H=256, float32, one thread; `inference` runs two no-grad calls, `training` two
forward + backward steps (the first is a warm-up; both are counted). Count only the ops with:

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*lstm_forward_cpu*' \\
        --toggle-collect='*lstm_backward_cpu*' python scripts/callgrind_lstm.py inference|training
"""
import sys

import torch

import fusedrnn

torch.set_num_threads(1)
torch.manual_seed(0)
lstm = fusedrnn.LSTM(256, 256)
x = torch.randn(100, 8, 256)
x_grad = x.clone().requires_grad_()


def inference():
    with torch.no_grad():
        lstm(x)


def training():
    lstm(x_grad)[0].sum().backward()


step = {"inference": inference, "training": training}[sys.argv[1]]
step()
step()
print("cpu isa:", fusedrnn.backends.cpu.isa())
