"""Sample packing: best-fit-decreasing bins of at most sequence_len tokens, and their collator.

A packed batch is flattened into one row whose position_ids restart at 0 for each sample and
which carries no attention mask, so the attention kernel keeps samples apart (see STACK_NOTES).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from factory.data.chat import IGNORE, Encoded


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins whose total length <= capacity; each item goes to the fullest bin it fits."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining space, bin index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"item {i} has {n} tokens, more than the capacity {capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            space, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (space - n, b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - n, len(bins) - 1))
    return bins


@dataclass(frozen=True)
class Packed:
    bins: list[list[int]]
    capacity: int
    tokens: int

    @property
    def efficiency(self) -> float:
        return self.tokens / (len(self.bins) * self.capacity) if self.bins else 0.0


def next_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices in their order, each into the current bin while it fits, else into a new one (Axolotl's
    sample_packing_sequentially: the data order survives packing, at some cost in efficiency)."""
    bins: list[list[int]] = []
    space = -1
    for i, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"item {i} has {n} tokens, more than the capacity {capacity}")
        if n > space:
            bins.append([])
            space = capacity
        bins[-1].append(i)
        space -= n
    return bins


def pack(samples: list[Encoded], capacity: int, seed: int, sequential: bool = False) -> Packed:
    """Bins in a seeded random order (never sorted by length), each bin in a random inner order; or, sequential,
    bins in the samples' order, each holding consecutive samples."""
    return pack_lengths([len(s.input_ids) for s in samples], capacity, seed, sequential)


def pack_lengths(lengths: list[int], capacity: int, seed: int, sequential: bool = False) -> Packed:
    """pack() of samples of these lengths."""
    if sequential:
        return Packed(bins=next_fit(lengths, capacity), capacity=capacity, tokens=sum(lengths))
    bins = best_fit_decreasing(lengths, capacity)
    rng = random.Random(seed)
    for b in bins:
        rng.shuffle(b)
    rng.shuffle(bins)
    return Packed(bins=bins, capacity=capacity, tokens=sum(lengths))


class FlattenCollator:
    """Micro-batch of bins -> one row of input_ids/labels/position_ids (no attention mask).

    Each sample's first label is IGNORE, so no token learns to predict across a boundary.
    Counts real tokens seen, for tokens/s.
    """

    def __init__(self, hidden_states: bool = False) -> None:
        self.tokens_seen = 0
        self.hidden_states = hidden_states  # Cut Cross Entropy: no logits, the final hidden states instead

    def __call__(self, batch: list[list[Encoded]]) -> dict:
        import torch

        ids, labels, pos = [], [], []
        for bin_ in batch:
            for s in bin_:
                ids += s.input_ids
                labels += [IGNORE] + s.labels[1:]
                pos += range(len(s.input_ids))
        self.tokens_seen += len(ids)
        from factory.train.loss import trained_positions

        labels_t = torch.tensor([labels])
        batch = {
            "input_ids": torch.tensor([ids]),
            "labels": labels_t,
            "position_ids": torch.tensor([pos]),
            "logits_to_keep": trained_positions(labels_t),  # read by factory.train.loss.kept_logits_loss
        }
        if self.hidden_states:
            batch.update(logits_to_keep=torch.zeros(0, dtype=torch.long), output_hidden_states=True)
        return batch


class PadCollator:
    """Unpacked batches: right-padded rows with an attention mask (sample_packing: false)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.tokens_seen = 0

    def __call__(self, batch: list[list[Encoded]]) -> dict:
        import torch

        rows = [s for bin_ in batch for s in bin_]
        width = max(len(s.input_ids) for s in rows)
        self.tokens_seen += sum(len(s.input_ids) for s in rows)

        def pad(xs: list[int], v: int) -> list[int]:
            return xs + [v] * (width - len(xs))

        return {
            "input_ids": torch.tensor([pad(s.input_ids, self.pad_id) for s in rows]),
            "labels": torch.tensor([pad(s.labels, IGNORE) for s in rows]),
            "attention_mask": torch.tensor([pad([1] * len(s.input_ids), 0) for s in rows]),
        }
