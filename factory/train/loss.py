"""Causal-LM loss on packed rows that computes logits only where a token is trained.

A model's own loss projects every position through the LM head (hidden x vocabulary: 576 x 49,152
for SmolLM2) and then ignores the masked ones. Prompts are masked in SFT, so a third or more of
that work is thrown away. The collator names the positions whose next token is trained
(`logits_to_keep`, which transformers' causal LMs accept as an index tensor); this loss scores those
against their next tokens. Same value and gradients as the model's loss (tests/test_loss.py); the
saving is measured in bench/real_model.py.
"""

from __future__ import annotations

from factory.data.chat import IGNORE


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


# ---- Cut Cross Entropy: the same loss without the logits ------------------------------------------

def cce_unavailable(request, cuda: bool, processes: int = 1) -> str | None:
    """Why Cut Cross Entropy cannot replace the loss for this request on this machine, in a job of
    `processes` processes (None: it will)."""
    import importlib.util

    if not request.cut_cross_entropy:
        return "not asked for"
    if not cuda:
        return "no CUDA device here"
    if importlib.util.find_spec("cut_cross_entropy") is None:
        return "cut-cross-entropy is not installed (the `gpu` extra has it)"
    if not request.sample_packing:
        return "it scores packed rows only (sample_packing: true)"
    d = request.distributed
    if processes > 1 and (d.strategy == "fsdp" or d.zero_stage == 3):
        return "FSDP and ZeRO-3 shard the LM head's weight, which the loss reads outside the forward pass"
    return None


def cce_loss(model, impl: str = "cce"):
    """kept_logits_loss through Cut Cross Entropy: the kept positions' final hidden states against the LM
    head's weight, never materialising their logits. The collator asks the model for no logits and for its
    hidden states (FlattenCollator(hidden_states=True)); the last of them is the final norm's output."""
    from cut_cross_entropy import linear_cross_entropy

    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None or hasattr(head, "lora_A"):
        raise ValueError("Cut Cross Entropy needs a plain LM head (no bias, no LoRA on it)")
    softcap = getattr(model.config, "final_logit_softcapping", None)

    def loss(outputs, labels, num_items_in_batch=None):
        idx = trained_positions(labels)
        hidden = outputs.hidden_states[-1][0, idx.to(outputs.hidden_states[-1].device)]
        targets = labels[0, idx + 1].to(hidden.device)
        total = linear_cross_entropy(hidden, head.weight, targets, softcap=softcap, reduction="sum", impl=impl)
        denom = num_items_in_batch if num_items_in_batch is not None else max(len(idx), 1)
        if hasattr(denom, "to"):
            denom = denom.to(total.device)
        return total / denom
    return loss
