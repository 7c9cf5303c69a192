"""Causal-LM loss on packed rows that computes logits only where a token is trained.

A model's own loss projects every position through the LM head (hidden x vocabulary: 576 x 49,152
for SmolLM2) and then ignores the masked ones. Prompts are masked in SFT, so a third or more of
that work is thrown away. The collator names the positions whose next token is trained
(`logits_to_keep`, which transformers' causal LMs accept as an index tensor); this loss scores those
against their next tokens. Same value and gradients as the model's loss (tests/test_loss.py); the
saving is measured in bench/real_model.py.
"""

from __future__ import annotations

from factory.chat import IGNORE


def trained_positions(labels):
    """Positions t of a [1, L] row whose next token t+1 is trained: the logits the loss needs."""
    return (labels[0, 1:] != IGNORE).nonzero().squeeze(1)


def kept_logits_loss(outputs, labels, num_items_in_batch=None):
    """Sum of the cross-entropies at the kept positions, over the batch's trained-token count
    (the Trainer's num_items_in_batch across gradient accumulation), as transformers' own loss."""
    import torch.nn.functional as F

    idx = trained_positions(labels)
    targets = labels[0, idx + 1].to(outputs.logits.device)
    total = F.cross_entropy(outputs.logits[0].float(), targets, reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else max(len(idx), 1)
    if hasattr(denom, "to"):
        denom = denom.to(total.device)
    return total / denom
