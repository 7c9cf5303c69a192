"""Judging a model on preference pairs: the log-probability it gives each answer, scored on packed rows, and the
table of held-out preference accuracy, reward margin and mean log-probs, base against finetuned.

A row packs several sequences (prompt + answer) end to end with position ids restarting at 0 and no attention
mask, so transformers isolates them (the packed-sequence mask): no padding is computed. Logits are taken only at
the positions that predict a scored token. The trainer's losses use the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Packed:
    """Sequences packed in one row: input_ids and position_ids [1, N]; for every scored token, the position whose
    logits predict it, the token, its sequence, and whether it is an answer token (else only in the NLL)."""
    input_ids: object
    position_ids: object
    positions: object
    targets: object
    sequence: object
    answer: object
    n: int  # sequences


def pack(sequences: list[tuple[list[int], list[int]]], nll_prompts: set[int] = frozenset()) -> Packed:
    """(prompt ids, answer ids) per sequence; the answer tokens are scored, and for the sequences in nll_prompts
    the prompt's tokens too (ORPO's NLL covers the whole chosen sequence)."""
    import torch

    ids, pos, positions, targets, seq, answer = [], [], [], [], [], []
    for s, (prompt, reply) in enumerate(sequences):
        start, full = len(ids), prompt + reply
        ids += full
        pos += range(len(full))
        first = 1 if s in nll_prompts else max(len(prompt), 1)
        for t in range(first, len(full)):
            positions.append(start + t - 1)
            targets.append(full[t])
            seq.append(s)
            answer.append(t >= len(prompt))
    return Packed(torch.tensor([ids]), torch.tensor([pos]), torch.tensor(positions), torch.tensor(targets),
                  torch.tensor(seq), torch.tensor(answer), len(sequences))


def token_logps(model, packed: Packed):
    """The log-probability of every scored token (float32), computing logits only where they are needed."""
    import torch

    device = next(model.parameters()).device
    out = model(input_ids=packed.input_ids.to(device), position_ids=packed.position_ids.to(device),
                use_cache=False, logits_to_keep=packed.positions.to(device))
    logits = out.logits[0].float()
    return torch.log_softmax(logits, dim=-1).gather(1, packed.targets.to(device)[:, None])[:, 0]


def per_sequence(packed: Packed, logps):
    """(summed answer log-probs, answer token counts) per sequence."""
    import torch

    answer = packed.answer.to(logps.device)
    seq = packed.sequence.to(logps.device)
    sums = torch.zeros(packed.n, device=logps.device, dtype=logps.dtype).index_add(0, seq[answer], logps[answer])
    counts = torch.zeros(packed.n, device=logps.device).index_add(0, seq[answer], torch.ones_like(logps[answer]))
    return sums, counts


def score_pairs(model, pairs: list[tuple[list[int], list[int], list[int]]], tokens_per_row: int = 4096,
                check=None) -> dict:
    """Summed log-probs and lengths of each pair's chosen and rejected answers under `model` (eval mode, no
    gradient), packed about tokens_per_row tokens a forward pass."""
    import torch

    out = {"chosen": [], "rejected": [], "chosen_len": [], "rejected_len": []}
    was_training = model.training
    model.eval()
    try:
        batch: list = []
        size = 0

        def flush():
            if not batch:
                return
            packed = pack([(p, c) for p, c, _ in batch] + [(p, r) for p, _, r in batch])
            with torch.no_grad():
                sums, counts = per_sequence(packed, token_logps(model, packed))
            k = len(batch)
            out["chosen"] += sums[:k].tolist()
            out["rejected"] += sums[k:].tolist()
            out["chosen_len"] += counts[:k].tolist()
            out["rejected_len"] += counts[k:].tolist()
            batch.clear()

        for p, c, r in pairs:
            n = 2 * len(p) + len(c) + len(r)
            if batch and size + n > tokens_per_row:
                flush()
                size = 0
                if check:
                    check()
            batch.append((p, c, r))
            size += n
        flush()
    finally:
        model.train(was_training)
    return out


def _rate(hits: list[float]) -> tuple[float, float]:
    n = len(hits)
    p = sum(hits) / n
    return p, math.sqrt(p * (1 - p) / n) if n > 1 else 0.0


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


def judge(base: dict, tuned: dict, beta: float, per_token: bool) -> dict:
    """The table for the card, over the held-out pairs. For each model: how often it prefers the chosen answer
    (its reward r = beta x log-prob, per token for the reference-free ORPO and SimPO, higher for chosen than for
    rejected; a tie counts a half), the mean reward margin, and the mean log-prob of chosen and of rejected
    answers (both falling is the known failure). For the finetuned model also DPO's implicit reward,
    beta x (log-ratio to the base), chosen over rejected."""
    def reward(scores: dict, side: str) -> list[float]:
        lengths = scores[f"{side}_len"]
        return [beta * (v / max(n, 1) if per_token else v) for v, n in zip(scores[side], lengths)]

    table = {"pairs": len(base["chosen"]), "beta": beta, "per_token": per_token, "models": {}}
    if not table["pairs"]:
        return table
    for name, scores in (("base", base), ("finetuned", tuned)):
        rc, rr = reward(scores, "chosen"), reward(scores, "rejected")
        acc, acc_se = _rate([1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(rc, rr)])
        margin, margin_se = _mean_se([c - r for c, r in zip(rc, rr)])
        table["models"][name] = {
            "accuracy": acc, "accuracy_se": acc_se, "margin": margin, "margin_se": margin_se,
            "logp_chosen": _mean_se(scores["chosen"])[0], "logp_rejected": _mean_se(scores["rejected"])[0]}
    implicit = [beta * ((tc - bc) - (tr - br)) for tc, bc, tr, br in
                zip(tuned["chosen"], base["chosen"], tuned["rejected"], base["rejected"])]
    acc, acc_se = _rate([1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in implicit])
    table["implicit"] = {"accuracy": acc, "accuracy_se": acc_se, "margin": _mean_se(implicit)[0],
                         "margin_se": _mean_se(implicit)[1]}
    return table
