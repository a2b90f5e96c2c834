"""Sentence classifier with a bidirectional fused GRU over variable-length, packed batches.

Task: which documentation topic a paragraph of the Python docs (pydoc_data.topics, shipped with CPython)
comes from, among the six topics with the most paragraphs. Padded batches are packed with
pack_padded_sequence (lengths differ, unsorted), run through fusedrnn.GRU(bidirectional=True), and the
final states of both directions feed a linear classifier.

    python examples/classify.py
    python examples/classify.py --backend torch
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

import fusedrnn  # noqa: E402


def load_dataset(topics: int, max_words: int):
    """(train, test, labels): lists of (token ids, label); every 5th paragraph of a topic goes to test."""
    texts = corpus.pydoc_topics()
    chosen = sorted(texts, key=lambda k: -len(corpus.paragraphs(texts[k])))[:topics]
    train, test = [], []
    for label, name in enumerate(chosen):
        for i, paragraph in enumerate(corpus.paragraphs(texts[name])):
            tokens = [t for t in corpus.tokenize(paragraph) if t != corpus.EOS][:max_words]
            (test if i % 5 == 4 else train).append((tokens, label))
    vocab = corpus.Vocabulary([t for tokens, _ in train for t in tokens])
    encode = lambda rows: [(vocab.encode(tokens), label) for tokens, label in rows]  # noqa: E731
    return encode(train), encode(test), chosen, vocab


class Classifier(torch.nn.Module):
    def __init__(self, vocab, classes, emsize, nhid, backend):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, emsize)
        gru = torch.nn.GRU(emsize, nhid, batch_first=True, bidirectional=True)
        self.gru = fusedrnn.convert(gru) if backend == "fused" else gru
        self.out = torch.nn.Linear(2 * nhid, classes)

    def forward(self, padded, lengths):  # padded: [B, L] token ids, lengths: [B]
        packed = pack_padded_sequence(self.embed(padded), lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)  # [2, B, nhid], in the batch's own order
        return self.out(torch.cat([h_n[0], h_n[1]], dim=1))


def batches(rows, size, shuffle_seed=None):
    order = list(range(len(rows)))
    if shuffle_seed is not None:
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
    for i in range(0, len(order), size):
        chunk = [rows[j] for j in order[i:i + size]]
        lengths = torch.tensor([len(ids) for ids, _ in chunk])
        yield pad_sequence([ids for ids, _ in chunk], batch_first=True), lengths, torch.tensor([y for _, y in chunk])


def accuracy(model, rows):
    model.eval()
    correct = 0
    with torch.no_grad():
        for padded, lengths, labels in batches(rows, 64):
            correct += (model(padded, lengths).argmax(1) == labels).sum().item()
    return correct / len(rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["fused", "torch"], default="fused")
    p.add_argument("--topics", type=int, default=6)
    p.add_argument("--max-words", type=int, default=80)
    p.add_argument("--emsize", type=int, default=64)
    p.add_argument("--nhid", type=int, default=64)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-batches", type=int, help="stop each epoch after this many batches (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    say = (lambda *a: None) if args.quiet else print

    torch.manual_seed(args.seed)
    train, test, names, vocab = load_dataset(args.topics, args.max_words)
    counts = torch.bincount(torch.tensor([y for _, y in test]), minlength=len(names))
    say(f"{len(train)} train / {len(test)} test paragraphs from {names}; vocabulary {len(vocab)}; "
        f"majority-class test accuracy {counts.max().item() / len(test):.3f}")
    model = Classifier(len(vocab), len(names), args.emsize, args.nhid, args.backend)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses, history = [], []
    for epoch in range(1, args.epochs + 1):
        model.train()
        tokens, start = 0, time.perf_counter()
        for n, (padded, lengths, labels) in enumerate(batches(train, args.batch_size, shuffle_seed=epoch)):
            if args.max_batches is not None and n >= args.max_batches:
                break
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(padded, lengths), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            tokens += int(lengths.sum())
        elapsed = time.perf_counter() - start
        acc = accuracy(model, test)
        history.append({"epoch": epoch, "test_accuracy": acc, "tokens_per_s": tokens / elapsed})
        say(f"epoch {epoch}: loss {losses[-1]:.3f}, test accuracy {acc:.3f}, {tokens / elapsed:.0f} tokens/s "
            f"({args.backend})")
    return {"train_losses": losses, "history": history}


if __name__ == "__main__":
    main()
