"""Smoke tests of the examples: a few batches on the CPU with each backend; the loss falls, and the fused
and torch.nn backends give the same losses for the same seed (float32, dropout included)."""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import classify  # noqa: E402
import gradient_flow  # noqa: E402
import word_lm  # noqa: E402


# SGD at lr=20 is chaotic: scaling torch.nn's own initial weights by one ulp (1 + 1.2e-7) moves its
# 12th loss by 1.2e-5 relative (measured), while the first 8 stay within 3e-7. So rounding-level
# differences between the backends are compared where they cannot have been amplified yet.
AGREEING_STEPS = 8


def assert_same_losses(fused, plain):
    assert len(fused) == len(plain) >= AGREEING_STEPS
    for a, b in zip(fused[:AGREEING_STEPS], plain[:AGREEING_STEPS]):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), (fused, plain)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_word_lm_learns_and_backends_agree(cell):
    args = ["--epochs", "1", "--max-batches", "12", "--cell", cell, "--quiet", "--emsize", "64", "--nhid", "64"]
    fused = word_lm.main(args)
    plain = word_lm.main(args + ["--backend", "torch"])
    losses = fused["train_losses"]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5  # from ~ln(vocab) downwards
    assert_same_losses(losses, plain["train_losses"])
    assert math.isfinite(fused["history"][0]["valid_ppl"])


@pytest.mark.parametrize("cell,regularisers", [("layernorm_lstm", []), ("layernorm_gru", []),
                                                ("lstm", ["--zoneout", "0.1", "--recurrent-dropout", "0.2"])])
def test_word_lm_fused_only_layers_learn(cell, regularisers):
    # lr 5: at the default 20 the first dozen batches of a layer-normalised layer jump around (the GRU's
    # ended above where it started)
    args = ["--epochs", "1", "--max-batches", "12", "--cell", cell, "--quiet", "--emsize", "64", "--nhid", "64",
            "--lr", "5", *regularisers]
    losses = word_lm.main(args)["train_losses"]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5
    with pytest.raises(ValueError, match="needs --backend fused"):
        word_lm.main(args + ["--backend", "torch"])


def test_word_lm_checkpoint_and_generation(tmp_path):
    path = str(tmp_path / "lm.pt")
    first = word_lm.main(["--epochs", "1", "--max-batches", "3", "--quiet", "--nhid", "32", "--emsize", "32",
                          "--tied", "--save", path])
    assert os.path.exists(path)
    again = word_lm.main(["--epochs", "0", "--quiet", "--nhid", "32", "--emsize", "32", "--tied", "--load", path,
                          "--generate", "12", "--prompt", "the while statement"])
    words = again["text"].split()
    assert words[:3] == ["the", "while", "statement"] and len(words) >= 12
    assert first["history"][0]["valid_ppl"] > 0


def test_gradient_clipping_rescales_to_the_threshold():
    import torch
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    assert word_lm.clip_gradient_norm([p], 1.0) == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8, 0.0]))
    p.grad = torch.tensor([0.3, 0.4, 0.0])  # norm 0.5 < 1: untouched
    word_lm.clip_gradient_norm([p], 1.0)
    assert torch.equal(p.grad, torch.tensor([0.3, 0.4, 0.0]))


def test_classifier_learns_and_backends_agree():
    args = ["--epochs", "1", "--max-batches", "10", "--quiet"]
    fused = classify.main(args)
    plain = classify.main(args + ["--backend", "torch"])
    losses = fused["train_losses"]
    assert sum(losses[-3:]) / 3 < losses[0]
    assert_same_losses(losses, plain["train_losses"])
    assert fused["history"][0]["test_accuracy"] > 0.2


def test_gradient_flow_vanishes_explodes_and_clipping_trains():
    # Not radius 3: the forward is chaotic there, and rounding differences between any two
    # implementations grow as fast as the gradient does.
    args = ["--dtype", "float64", "--radii", "0.5", "1.5", "--quiet", "--plot", ""]
    fused = gradient_flow.main(args)
    plain = gradient_flow.main(args + ["--backend", "torch"])
    assert fused["flow"].keys() == plain["flow"].keys()
    for name, norms in fused["flow"].items():  # the two backends measure the same gradients
        for a, b in zip(norms, plain["flow"][name], strict=True):
            assert abs(a - b) <= 1e-9 * b, (name, a, b)
    small, large = fused["flow"]["rnn rho=0.50"], fused["flow"]["rnn rho=1.50"]
    assert small[199] < 1e-6 * small[0]  # vanishes by orders of magnitude over 200 steps
    assert large[199] > 10 * large[0]  # and grows at the large radius
    clipped, unclipped = fused["clipped"], fused["unclipped"]
    assert all(math.isfinite(v) for v in clipped) and sum(clipped[-5:]) / 5 < clipped[0]
    assert not all(math.isfinite(v) for v in unclipped) or max(unclipped) > 1e3 * unclipped[0]
