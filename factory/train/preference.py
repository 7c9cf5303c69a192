"""Preference training (DPO, IPO, ORPO, SimPO, KTO) on the transformers Trainer, with the factory's losses.

The examples are grouped once, seeded, into fixed micro-batches of micro_batch_size pairs (KTO: completions, each
also scored after the previous prompt of its group for the KL estimate, TRL's rotation); a group's sequences are
packed into one row without padding (evals.preference.pack). The reference log-probs (DPO, IPO, KTO) are computed
once before training, from the model as it starts: the base with a new adapter switched off, so no second copy of
the model is held, or the starting weights of a full finetune. ORPO and SimPO need none.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from evals.preference import pack, per_sequence, token_logps
from factory.base import interrupt
from factory.base.progress import Event, MainOnly, Reporter
from factory.request.config import Request
from factory.train.preference_loss import Answers, dpo, kto, orpo, simpo
from factory.train.train import (TrainResult, _progress_callback, epoch_order, last_complete_checkpoint, load_base,
                                 training_arguments, world_size, wrap_adapter)

NEEDS_REFERENCE = ("dpo", "ipo", "kto")


def groups(n: int, size: int, seed: int) -> list[list[int]]:
    """The examples' fixed micro-batches: a seeded shuffle cut into groups of `size` (the last may be smaller)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i:i + size] for i in range(0, n, size)]


def sequences(examples: list, rl: str) -> tuple[list[tuple[list[int], list[int]]], list[tuple[list[int], list[int]]]]:
    """(the sequences the loss scores, the KTO KL sequences): pairs as [chosen..., rejected...] (TRL's order),
    KTO completions as they are, each KL sequence the next example's prompt with this one's completion."""
    if rl == "kto":
        scored = [(e.prompt, e.chosen) for e in examples]
        kl = [(e.prompt, examples[i - 1].chosen) for i, e in enumerate(examples)]
        return scored, kl
    return [(e.prompt, e.chosen) for e in examples] + [(e.prompt, e.rejected) for e in examples], []


class PairCollator:
    """One group -> one packed row (and the KTO KL row), with its reference log-probs and labels."""

    def __init__(self, rl: str):
        self.rl = rl
        self.tokens_seen = 0  # real tokens collated (the progress callback's tokens/s)

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        (item,) = batch  # one group per micro-batch
        scored, kl = sequences(item["examples"], self.rl)
        packed = pack(scored, nll_prompts=set(range(len(item["examples"]))) if self.rl == "orpo" else set())
        self.tokens_seen += packed.input_ids.numel()
        out = {"input_ids": packed.input_ids, "packed": packed, "ref": item.get("ref"), "kl": None, "kl_ref": None,
               "label": None}
        if self.rl == "kto":
            out["kl"] = pack(kl)
            out["kl_ref"] = item.get("kl_ref")
            out["label"] = torch.tensor([e.label for e in item["examples"]], dtype=torch.bool)
        return out


class Groups:
    """The Trainer's dataset: row k is group order[k] with its reference log-probs."""

    def __init__(self, examples: list, bins: list[list[int]], order, refs: list | None, kl_refs: list | None):
        self.examples, self.bins, self.order, self.refs, self.kl_refs = examples, bins, order, refs, kl_refs

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> dict:
        g = self.order[k]
        item = {"examples": [self.examples[i] for i in self.bins[g]]}
        if self.refs is not None:
            item["ref"] = self.refs[g]
        if self.kl_refs is not None:
            item["kl_ref"] = self.kl_refs[g]
        return item


def batch_loss(request: Request, model, inputs: dict) -> tuple[object, dict]:
    """The method's loss on one collated group, and the figures logged with it."""
    import torch

    packed, rl = inputs["packed"], request.rl
    logps = token_logps(model, packed)
    sums, counts = per_sequence(packed, logps)
    device = sums.device
    ref = inputs["ref"].to(device) if inputs.get("ref") is not None else None
    beta = request.beta
    if rl == "kto":
        with torch.no_grad():
            kl_sums, _ = per_sequence(inputs["kl"], token_logps(model, inputs["kl"]))
        label = inputs["label"].to(device)
        loss, rewards, kl = kto(Answers(sums, counts, ref), label, kl_sums, inputs["kl_ref"].to(device), beta,
                                request.kto_desirable_weight, request.kto_undesirable_weight)
        good, bad = rewards[label], rewards[~label]
        figures = {"kl": kl.item(), "logps/completion": sums.detach().mean().item()}
        if len(good):
            figures["rewards/desirable"] = good.mean().item()
        if len(bad):
            figures["rewards/undesirable"] = bad.mean().item()
        return loss, figures
    k = packed.n // 2
    chosen = Answers(sums[:k], counts[:k], None if ref is None else ref[:k])
    rejected = Answers(sums[k:], counts[k:], None if ref is None else ref[k:])
    extra = {}
    if rl in ("dpo", "ipo"):
        types = ["ipo"] if rl == "ipo" else (request.dpo_loss_type or ["sigmoid"])
        loss, rc, rr = dpo(chosen, rejected, beta, types, request.dpo_loss_weights or [1.0] * len(types),
                           request.dpo_label_smoothing)
    else:
        seq = packed.sequence.to(device)
        nll_tokens = seq < k if rl == "orpo" else (seq < k) & packed.answer.to(device)
        nll = -logps[nll_tokens].sum() / nll_tokens.sum().clamp(min=1)
        if rl == "orpo":
            loss, rc, rr = orpo(chosen, rejected, beta, nll)
        else:
            loss, rc, rr = simpo(chosen, rejected, beta, request.simpo_gamma, request.cpo_alpha, nll)
        extra["nll"] = nll.item()
    return loss, {"rewards/chosen": rc.mean().item(), "rewards/rejected": rr.mean().item(),
                  "rewards/margins": (rc - rr).mean().item(), "rewards/accuracies": (rc > rr).float().mean().item(),
                  "logps/chosen": chosen.logps.detach().mean().item(), "logps/rejected": rejected.logps.detach().mean().item(),
                  **extra}


def reference_logps(model, examples: list, bins: list[list[int]], rl: str, fresh_adapter: bool, reporter: Reporter):
    """Each group's reference log-probs (and KTO's KL sequences'), from the model as it is before training."""
    import contextlib

    import torch

    refs, kl_refs = [], []
    was = model.training
    model.eval()
    off = model.disable_adapter() if fresh_adapter else contextlib.nullcontext()  # the base, exactly
    step = max(1, len(bins) // 10)
    t0 = time.time()
    with torch.no_grad(), off:
        for g, members in enumerate(bins):
            if not g % 8:
                interrupt.safe_point()
            scored, kl = sequences([examples[i] for i in members], rl)
            refs.append(per_sequence(p := pack(scored), token_logps(model, p))[0].cpu())
            if kl:
                kl_refs.append(per_sequence(q := pack(kl), token_logps(model, q))[0].cpu())
            if (g + 1) % step == 0 or g + 1 == len(bins):
                reporter.emit(Event("train", f"reference log-probs: {g + 1}/{len(bins)} groups ({time.time() - t0:.0f} s)"))
    model.train(was)
    return refs, (kl_refs if rl == "kto" else None)


def preference_trainer(request: Request):
    """The transformers Trainer with the method's loss and its figures averaged into each log line."""
    from transformers import Trainer

    class PreferenceTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # the loss is a mean per group: the Trainer averages accumulation
            self.figures: dict[str, list[float]] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, figures = batch_loss(request, model, inputs)
            for key, value in figures.items():
                self.figures.setdefault(key, []).append(value)
            return (loss, None) if return_outputs else loss

        def log(self, logs: dict, start_time: float | None = None) -> None:
            for key, values in self.figures.items():
                logs[key] = sum(values) / len(values)
            self.figures = {}
            super().log(logs, start_time)

    return PreferenceTrainer


def train_preference(request: Request, model_dir: Path, tokenizer, examples: list, run_dir: Path,
                     reporter: Reporter) -> TrainResult:
    """Train the request's method on the examples (data.pair_data.Tokens); the result as train.train's."""
    from transformers import PrinterCallback, set_seed

    from factory.train.tokens import grow_embeddings

    reporter = MainOnly(reporter)
    bins = groups(len(examples), request.micro_batch_size, request.seed)
    set_seed(request.seed)
    model = load_base(request, model_dir)
    grown = grow_embeddings(model, tokenizer)
    model = wrap_adapter(request, model, grown)
    if request.adapter:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        reporter.emit(Event("train", f"{request.adapter}: {trainable:,} trainable of "
                                     f"{sum(p.numel() for p in model.parameters()):,} parameters"))
    refs = kl_refs = None
    if request.rl in NEEDS_REFERENCE:
        fresh = bool(request.adapter) and not request.lora_model_dir
        reporter.emit(Event("train", "reference: " + ("the base with the adapter switched off" if fresh else
                                                      "the model's starting weights") + ", computed once"))
        refs, kl_refs = reference_logps(model, examples, bins, request.rl, fresh, reporter)
    ckpt_dir = run_dir / "checkpoints"
    per_step = request.gradient_accumulation_steps * world_size()  # groups per optimizer step, every process
    steps_per_epoch = max(1, -(-len(bins) // per_step))
    order = epoch_order(len(bins), request.num_epochs, request.max_steps and request.max_steps * per_step,
                        request.seed, shuffle=not request.curriculum_sampling)
    rows = Groups(examples, bins, order, refs, kl_refs)
    collator = PairCollator(request.rl)
    args = training_arguments(request, ckpt_dir, steps_per_epoch, False, 1, include_num_input_tokens_seen="all")
    from factory.train.train_options import trainer_class

    trainer = trainer_class(preference_trainer(request), request)(
        model=model, args=args, train_dataset=rows, data_collator=collator,
        callbacks=[_progress_callback(reporter, collator, run_dir / "metrics.jsonl", None, len(rows) / len(bins))])
    trainer.remove_callback(PrinterCallback)
    last = last_complete_checkpoint(ckpt_dir) or request.resume_from_checkpoint
    if last:
        reporter.emit(Event("train", f"resuming from {Path(last).name}"))
    from factory.train.train_options import environ, tracker_env

    t0 = time.time()
    with environ(tracker_env(request)), interrupt.cleaning(lambda: last_complete_checkpoint(ckpt_dir)):
        out = trainer.train(resume_from_checkpoint=last)
    seconds = time.time() - t0
    final = run_dir / ("adapter" if request.adapter else "model")
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(final)
    tokens = sum(len(e.prompt) * (1 if e.rejected is None else 2) + len(e.chosen) + len(e.rejected or [])
                 for e in examples)
    return TrainResult(final, out.global_step, seconds, float(out.training_loss), None, tokens, None,
                       trainer.state.num_input_tokens_seen)
