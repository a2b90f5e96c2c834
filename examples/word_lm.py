"""Word-level language model with fusedrnn: embedding -> multi-layer LSTM/GRU/RNN -> linear decoder.

Truncated back-propagation through time (the hidden state is carried across batches and detached),
gradient-norm clipping, a learning-rate schedule, validation perplexity every epoch, checkpoints and
text generation. The default corpus is the Python documentation that ships with CPython
(pydoc_data.topics); --data DIR takes any train.txt/valid.txt/test.txt folder (WikiText, PTB layout).

    python examples/word_lm.py --epochs 3
    python examples/word_lm.py --epochs 3 --backend torch      # the same model on torch.nn
    python examples/word_lm.py --epochs 3 --cell layernorm_lstm  # fusedrnn.LayerNormLSTM (no torch.nn twin)
    python examples/word_lm.py --epochs 3 --zoneout 0.1 --recurrent-dropout 0.2  # fused only, too
    python examples/word_lm.py --load lm.pt --generate 40 --prompt "the for statement"
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

import fusedrnn  # noqa: E402

RNN_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN}
# what torch.nn does not have (layer norm, zoneout, recurrent dropout): fused only
FUSED_CLASSES = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU, "rnn_tanh": fusedrnn.RNN, "rnn_relu": fusedrnn.RNN,
                 "layernorm_lstm": fusedrnn.LayerNormLSTM, "layernorm_gru": fusedrnn.LayerNormGRU}


class LanguageModel(torch.nn.Module):
    def __init__(self, cell, vocab, emsize, nhid, nlayers, dropout, tied, backend, zoneout=0.0, recurrent_dropout=0.0):
        super().__init__()
        extra = {"nonlinearity": cell.split("_")[1]} if cell.startswith("rnn") else {}
        if cell not in RNN_CLASSES or zoneout or recurrent_dropout:
            if backend != "fused":
                raise ValueError(f"--cell {cell} with --zoneout {zoneout} --recurrent-dropout {recurrent_dropout} has "
                                 "no torch.nn implementation: it needs --backend fused")
            self.rnn = FUSED_CLASSES[cell](emsize, nhid, num_layers=nlayers, dropout=dropout, zoneout=zoneout,
                                           recurrent_dropout=recurrent_dropout, **extra)
        else:
            rnn = RNN_CLASSES[cell](emsize, nhid, num_layers=nlayers, dropout=dropout, **extra)
            self.rnn = fusedrnn.convert(rnn) if backend == "fused" else rnn
        self.embed = torch.nn.Embedding(vocab, emsize)
        self.drop = torch.nn.Dropout(dropout)
        self.decoder = torch.nn.Linear(nhid, vocab)
        if tied:
            if nhid != emsize:
                raise ValueError("--tied needs --nhid equal to --emsize")
            self.decoder.weight = self.embed.weight
        self.cell, self.nlayers, self.nhid = cell, nlayers, nhid
        torch.nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        torch.nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens, hidden):  # tokens: [T, B]
        out, hidden = self.rnn(self.drop(self.embed(tokens)), hidden)
        return self.decoder(self.drop(out)), hidden

    def init_hidden(self, batch):
        h = torch.zeros(self.nlayers, batch, self.nhid, device=self.decoder.weight.device)
        return (h, h.clone()) if self.cell.endswith("lstm") else h


def detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def clip_gradient_norm(parameters, threshold: float) -> float:
    """Rescale all gradients by threshold / ||g|| when the global norm ||g|| >= threshold; returns ||g||."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    if norm >= threshold:
        for g in grads:
            g.mul_(threshold / norm)
    return norm


def batchify(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """[N] -> [N // batch, batch]: each column a contiguous stretch of the text."""
    n = ids.numel() // batch
    return ids[: n * batch].view(batch, n).t().contiguous()


def unigram_perplexity(train: torch.Tensor, data: torch.Tensor, vocab: int) -> float:
    counts = torch.bincount(train, minlength=vocab).double() + 1.0  # add-one smoothing
    logp = (counts / counts.sum()).log()
    return math.exp(-logp[data].mean().item())


def evaluate(model, data, bptt):
    model.eval()
    total, count = 0.0, 0
    hidden = model.init_hidden(data.shape[1])
    with torch.no_grad():
        for i in range(0, data.shape[0] - 1, bptt):
            seq = min(bptt, data.shape[0] - 1 - i)
            logits, hidden = model(data[i:i + seq], hidden)
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), data[i + 1:i + 1 + seq].flatten(),
                                                       reduction="sum").item()
            count += seq * data.shape[1]
    return math.exp(total / count)


def generate(model, vocab, prompt, n, temperature=1.0, seed=0):
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids = vocab.encode(corpus.tokenize(prompt)[:-1] or [corpus.EOS]).to(model.decoder.weight.device)
    hidden = model.init_hidden(1)
    words = []
    with torch.no_grad():
        logits, hidden = model(ids.view(-1, 1), hidden)
        for _ in range(n):
            probs = torch.softmax(logits[-1, 0].float().cpu() / temperature, dim=-1)
            probs[vocab.index[corpus.UNK]] = 0
            nxt = torch.multinomial(probs, 1, generator=g)
            words.append(vocab.words[nxt.item()])
            logits, hidden = model(nxt.view(1, 1).to(ids.device), hidden)
    return " ".join(prompt.split() + words).replace(f" {corpus.EOS} ", "\n")


def progress(iterable, **kw):
    try:
        from tqdm import tqdm
        return tqdm(iterable, **kw)
    except ImportError:
        return iterable


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder with train.txt, valid.txt, test.txt (default: Python's docs)")
    p.add_argument("--cell", choices=list(FUSED_CLASSES), default="lstm")
    p.add_argument("--backend", choices=["fused", "torch"], default="fused")
    p.add_argument("--emsize", type=int, default=256)
    p.add_argument("--nhid", type=int, default=256)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--zoneout", type=float, default=0.0, help="zoneout probability of the recurrent layers")
    p.add_argument("--recurrent-dropout", type=float, default=0.0, help="recurrent (variational) dropout")
    p.add_argument("--tied", action="store_true", help="share the embedding and decoder weights")
    p.add_argument("--lr", type=float, default=20.0, help="SGD learning rate; divided by 4 when validation stalls")
    p.add_argument("--clip", type=float, default=0.25, help="gradient-norm threshold")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35, help="truncated BPTT length")
    p.add_argument("--max-batches", type=int, help="stop each epoch after this many batches (smoke tests)")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--save", help="write the best checkpoint here")
    p.add_argument("--load", help="start from this checkpoint")
    p.add_argument("--generate", type=int, default=0, help="words to generate after training")
    p.add_argument("--prompt", default="the")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    say = (lambda *a: None) if args.quiet else print
    train_text, valid_text, test_text = corpus.folder_splits(args.data) if args.data else corpus.pydoc_splits()
    train_tokens = corpus.tokenize(train_text)
    checkpoint = torch.load(args.load, weights_only=False) if args.load else None
    vocab = checkpoint["vocab"] if checkpoint else corpus.Vocabulary(train_tokens)
    train_ids = vocab.encode(train_tokens)
    valid_ids, test_ids = vocab.encode(corpus.tokenize(valid_text)), vocab.encode(corpus.tokenize(test_text))
    say(f"corpus: {len(train_ids)} train / {len(valid_ids)} valid / {len(test_ids)} test words, vocabulary "
        f"{len(vocab)}; unigram baseline perplexity (valid): {unigram_perplexity(train_ids, valid_ids, len(vocab)):.1f}")

    model = LanguageModel(args.cell, len(vocab), args.emsize, args.nhid, args.nlayers, args.dropout, args.tied,
                          args.backend, args.zoneout, args.recurrent_dropout).to(args.device)
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
    train = batchify(train_ids, args.batch_size).to(args.device)
    valid, test = batchify(valid_ids, 10).to(args.device), batchify(test_ids, 10).to(args.device)

    lr, best, history, losses = args.lr, float("inf"), [], []
    for epoch in range(1, args.epochs + 1):
        model.train()
        hidden = model.init_hidden(args.batch_size)
        starts = list(range(0, train.shape[0] - 1, args.bptt))[: args.max_batches]
        words, start_time = 0, time.perf_counter()
        bar = progress(starts, desc=f"epoch {epoch}", disable=args.quiet, leave=False)
        for i in bar:
            seq = min(args.bptt, train.shape[0] - 1 - i)
            hidden = detach(hidden)  # truncated BPTT: no gradient into earlier batches
            model.zero_grad(set_to_none=True)
            logits, hidden = model(train[i:i + seq], hidden)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), train[i + 1:i + 1 + seq].flatten())
            loss.backward()
            clip_gradient_norm(model.parameters(), args.clip)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-lr)
            losses.append(loss.item())
            words += seq * args.batch_size
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.2f}", ppl=f"{math.exp(loss.item()):.0f}")
        elapsed = time.perf_counter() - start_time
        val_ppl = evaluate(model, valid, args.bptt)
        history.append({"epoch": epoch, "valid_ppl": val_ppl, "tokens_per_s": words / elapsed, "lr": lr})
        say(f"epoch {epoch}: valid perplexity {val_ppl:.1f}, {words / elapsed:.0f} tokens/s ({args.backend}), "
            f"lr {lr:g}")
        if val_ppl < best:
            best = val_ppl
            if args.save:
                torch.save({"model": model.state_dict(), "vocab": vocab, "args": vars(args)}, args.save)
        else:
            lr /= 4.0  # the schedule: a quarter of the rate whenever validation stops improving
    result = {"history": history, "train_losses": losses}
    if args.epochs:
        result["test_ppl"] = evaluate(model, test, args.bptt)
        say(f"test perplexity {result['test_ppl']:.1f}")
    if args.generate:
        result["text"] = generate(model, vocab, args.prompt, args.generate, seed=args.seed)
        say("generated:\n" + result["text"])
    return result


if __name__ == "__main__":
    main()
