"""Learning-rate schedules the transformers Trainer does not have, with Axolotl's meaning: cosine after a quadratic
warmup, cosine to a floor held from a fraction of the steps on (cosine_constant_lr_ratio), REX, and one-cycle
(torch's OneCycleLR). transformers' own schedules (polynomial, cosine_with_restarts, ...) go through
TrainingArguments and need nothing here."""

from __future__ import annotations

import math
from functools import partial

from factory.request.config import Request

OWN = ("rex", "one_cycle")


def custom(request: Request) -> bool:
    """True when the request's schedule is one of this module's (the Trainer then gets with_schedule)."""
    return (request.lr_scheduler in OWN or request.lr_quadratic_warmup
            or (request.cosine_constant_lr_ratio is not None and request.cosine_min_lr_ratio is not None))


def trainer_args(request: Request) -> dict:
    """lr_scheduler_type and its kwargs for TrainingArguments: transformers' own schedules as named (cosine with a
    floor is its cosine_with_min_lr); for this module's, a placeholder the Trainer never builds."""
    kwargs = dict(request.lr_scheduler_kwargs or {})
    kind = request.lr_scheduler
    if request.cosine_min_lr_ratio is not None and kind == "cosine":
        kind, kwargs = "cosine_with_min_lr", {"min_lr_rate": request.cosine_min_lr_ratio, **kwargs}
    if kind in OWN:
        kind, kwargs = "constant", {}
    return {"lr_scheduler_type": kind, "lr_scheduler_kwargs": kwargs or None}


def quadratic_warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step / max(1, warmup)) ** 2
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def cosine_floor_constant(step: int, warmup: int, total: int, min_ratio: float, constant_ratio: float) -> float:
    """Linear warmup, cosine from 1 to min_ratio until constant_ratio of the steps, then min_ratio (Axolotl's
    get_cosine_schedule_with_warmup_decay_constant)."""
    if step < warmup:
        return step / max(1, warmup)
    constant = int(total * constant_ratio)
    step = min(step, constant)
    progress = (step - warmup) / max(1, constant - warmup)
    return min_ratio + (1 - min_ratio) * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def rex(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Reflected exponential (Axolotl's RexLR, arXiv 2107.04197): linear warmup, then
    min + (1 - min) * (1 - z) / (1 - z/2) for z the share of the decay steps done."""
    if step < warmup:
        return step / max(1, warmup)
    z = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * max(0.0, (1 - z) / (1 - z / 2))


def with_schedule(trainer_cls, request: Request):
    """The Trainer with the request's own schedule built in create_scheduler."""
    from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

    class Scheduled(trainer_cls):
        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                optimizer = optimizer or self.optimizer
                warmup = self.args.get_warmup_steps(num_training_steps)
                floor = request.cosine_min_lr_ratio or 0.0
                if request.lr_scheduler == "one_cycle":
                    kwargs = {"pct_start": warmup / max(1, num_training_steps), "anneal_strategy": "cos",
                              **(request.lr_scheduler_kwargs or {})}
                    self.lr_scheduler = OneCycleLR(optimizer, max_lr=self.args.learning_rate,
                                                   total_steps=num_training_steps, **kwargs)
                else:
                    if request.lr_scheduler == "rex":
                        shape = partial(rex, min_ratio=floor)
                    elif request.lr_quadratic_warmup:
                        shape = quadratic_warmup_cosine
                    else:
                        shape = partial(cosine_floor_constant, min_ratio=floor,
                                        constant_ratio=request.cosine_constant_lr_ratio)
                    self.lr_scheduler = LambdaLR(optimizer, partial(shape, warmup=warmup, total=num_training_steps))
                self._created_lr_scheduler = True
            return self.lr_scheduler

    return Scheduled
