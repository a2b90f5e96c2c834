"""Real English text that ships with every CPython: the Python documentation topics in pydoc_data.

Shared by the examples: word tokenisation, a vocabulary, deterministic train/valid/test splits, and the
WikiText/PTB folder layout (train.txt, valid.txt, test.txt) for other corpora.
"""

from __future__ import annotations

import os
import re

import torch

TOKEN = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")
EOS = "<eos>"
UNK = "<unk>"


def tokenize(text: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks; one <eos> per non-empty line."""
    tokens = []
    for line in text.splitlines():
        words = TOKEN.findall(line.lower())
        if words:
            tokens += words + [EOS]
    return tokens


def pydoc_topics() -> dict[str, str]:
    from pydoc_data.topics import topics
    return dict(sorted(topics.items()))


def pydoc_splits() -> tuple[str, str, str]:
    """Train/valid/test text: every 10th topic (in name order) to valid, the next to test, the rest train."""
    train, valid, test = [], [], []
    for i, text in enumerate(pydoc_topics().values()):
        (valid if i % 10 == 3 else test if i % 10 == 7 else train).append(text)
    return "\n".join(train), "\n".join(valid), "\n".join(test)


def folder_splits(folder: str) -> tuple[str, str, str]:
    def read(name):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read()
    return read("train.txt"), read("valid.txt"), read("test.txt")


class Vocabulary:
    def __init__(self, tokens: list[str]):
        self.words = [UNK] + sorted(set(tokens) - {UNK})
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: list[str]) -> torch.Tensor:
        unk = self.index[UNK]
        return torch.tensor([self.index.get(t, unk) for t in tokens], dtype=torch.long)

    def decode(self, ids) -> list[str]:
        return [self.words[i] for i in ids]


def paragraphs(text: str, min_words: int = 8) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if len(p.split()) >= min_words]
