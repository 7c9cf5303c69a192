"""The preference losses, from per-answer log-probabilities: DPO (and its loss variants, IPO among them), ORPO,
SimPO and KTO, each written as TRL 1.x computes it (tests/test_preference.py checks each against TRL's trainer
on the same batch to 1e-5).

Inputs are per answer: `logps` the summed log-probability of the answer's tokens, `lengths` its token count,
`ref` the same sum under the reference model (the model before training). A batch holds B pairs (chosen and
rejected tensors of B) or, for KTO, B completions with their labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Answers:
    """One side of a batch: summed log-probs, token counts, and the reference's sums (None without one)."""
    logps: object  # torch tensor [B]
    lengths: object
    ref: object | None = None

    @property
    def mean(self):
        return self.logps / self.lengths.clamp(min=1)


def dpo(chosen: Answers, rejected: Answers, beta: float, loss_types: list[str], weights: list[float],
        label_smoothing: float = 0.0):
    """DPO with TRL's loss_type list (sigmoid, hinge, ipo, robust, bco_pair, nca_pair, sigmoid_norm), weighted sum
    of each loss's mean over the pairs. Returns (loss, chosen rewards, rejected rewards)."""
    import torch.nn.functional as F

    chosen_ratio, rejected_ratio = chosen.logps - chosen.ref, rejected.logps - rejected.ref
    delta = chosen_ratio - rejected_ratio
    loss = 0.0
    for loss_type, weight in zip(loss_types, weights, strict=True):
        if loss_type == "sigmoid":
            per_pair = -F.logsigmoid(beta * delta)
        elif loss_type == "hinge":
            per_pair = (1 - beta * delta).relu()
        elif loss_type == "ipo":  # TRL's IPO: log-ratios averaged per token, then (delta - 1/(2 beta))^2
            ipo_delta = chosen_ratio / chosen.lengths.clamp(min=1) - rejected_ratio / rejected.lengths.clamp(min=1)
            per_pair = (ipo_delta - 1 / (2 * beta)) ** 2
        elif loss_type == "robust":
            per_pair = ((-(1 - label_smoothing) * F.logsigmoid(beta * delta)
                         + label_smoothing * F.logsigmoid(-beta * delta)) / (1 - 2 * label_smoothing))
        elif loss_type == "bco_pair":
            per_pair = -F.logsigmoid(beta * chosen_ratio) - F.logsigmoid(-beta * rejected_ratio)
        elif loss_type == "nca_pair":
            per_pair = (-F.logsigmoid(beta * chosen_ratio) - 0.5 * F.logsigmoid(-beta * chosen_ratio)
                        - 0.5 * F.logsigmoid(-beta * rejected_ratio))
        elif loss_type == "sigmoid_norm":
            norm = chosen_ratio / chosen.lengths.clamp(min=1) - rejected_ratio / rejected.lengths.clamp(min=1)
            per_pair = -F.logsigmoid(beta * norm)
        else:
            raise ValueError(f"unknown DPO loss type {loss_type!r}")
        loss = loss + per_pair.mean() * weight
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2 (TRL's)."""
    import torch

    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo(chosen: Answers, rejected: Answers, beta: float, chosen_nll):
    """ORPO: the chosen sequences' NLL (TRL: over prompt and answer) minus beta x the mean log-sigmoid of the log
    odds ratio of the per-token mean log-probs."""
    import torch.nn.functional as F

    c, r = chosen.mean.float(), rejected.mean.float()
    log_odds = (c - r) - (log1mexp(c) - log1mexp(r))
    loss = chosen_nll - beta * F.logsigmoid(log_odds).mean()
    return loss, beta * c.detach(), beta * r.detach()


def simpo(chosen: Answers, rejected: Answers, beta: float, gamma: float, cpo_alpha: float, chosen_nll):
    """SimPO (TRL's CPO trainer, loss_type simpo): -log sigmoid(beta (mean logp_c - mean logp_r) - gamma), plus
    cpo_alpha x the chosen answers' NLL."""
    import torch.nn.functional as F

    margin = chosen.mean - rejected.mean - gamma / beta
    loss = -F.logsigmoid(beta * margin).mean()
    if cpo_alpha:
        loss = loss + cpo_alpha * chosen_nll
    return loss, beta * chosen.mean.detach(), beta * rejected.mean.detach()


def kto(answers: Answers, desirable, kl_logps, kl_ref, beta: float, desirable_weight: float,
        undesirable_weight: float):
    """KTO: desirable completions pulled above, undesirable pushed below, the batch's KL estimate (the policy's
    log-ratio on mismatched prompt/completion pairs, clamped at 0, no gradient). Returns (loss, rewards, kl)."""
    import torch

    ratio = answers.logps - answers.ref
    kl = (kl_logps - kl_ref).mean().detach().clamp(min=0)
    good, bad = ratio[desirable], ratio[~desirable]
    losses = torch.cat((desirable_weight * (1 - torch.sigmoid(beta * (good - kl))),
                        undesirable_weight * (1 - torch.sigmoid(beta * (kl - bad)))))
    return losses.nanmean(), beta * ratio.detach(), kl
