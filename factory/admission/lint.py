"""Cross-field lint rules: what a finetuner learns the hard way, reported before compute is spent.

Each rule is a small function with an id, a severity and the reason it exists. Rules never change
the request; they report. An `error` finding makes `factory validate` exit 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from factory.request.axolotl_tables import PARALLELISM
from factory.request.config import Request

Severity = Literal["error", "warning", "info"]

# Architectures whose transformers implementation isolates packed samples from position_ids.
PACKING_SAFE = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
                "gemma3_text", "phi3", "olmo", "olmo2", "granite", "starcoder2", "smollm3", "cohere"}


@dataclass(frozen=True)
class Facts:
    """What is known about the base model and data when linting (None where unknown)."""

    model_type: str | None = None
    max_positions: int | None = None
    has_chat_template: bool | None = None
    train_rows: int | None = None
    config: dict | None = field(default=None, compare=False)  # the base's config.json


def _gguf_problem(r: Request, f: Facts) -> str | None:
    if not r.export.gguf or f.config is None:
        return None
    from factory.base.errors import UserError
    from factory.publish.gguf_export import check_model

    try:
        check_model(f.config, f"the base model {r.base_model}")
    except UserError as exc:
        return str(exc)
    return None


def _gguf_engine(r: Request) -> str | None:
    from factory.base.errors import UserError
    from factory.publish.gguf_export import check_engine

    try:
        check_engine(r.export.gguf)
    except UserError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    reason: str
    check: Callable[[Request, Facts], str | None]


def _eval_rows(r: Request, f: Facts) -> int | None:
    if r.val_set_size >= 1:
        return int(r.val_set_size)
    if f.train_rows is None or r.val_set_size == 0:
        return None
    return int(round(r.val_set_size * f.train_rows))


def _trackers_missing(r: Request) -> str | None:
    from factory.train.train_options import trackers

    missing = [f"{name}: {why}" for name, why in trackers(r).items() if why]
    return f"the run will not report to {'; '.join(missing)}" if missing else None


def _cce_not_applied(r: Request) -> str | None:
    if not r.cut_cross_entropy:
        return None
    import torch

    from factory.train.loss import cce_unavailable

    why = cce_unavailable(r, torch.cuda.is_available())
    return f"cut_cross_entropy (Axolotl's CutCrossEntropyPlugin) is ignored here: {why}; the same loss is computed " \
           "without it" if why else None


RULES: list[Rule] = [
    Rule("tracker-unavailable", "warning",
         "A tracker the request names that cannot report from this machine is skipped; this says so before the run.",
         lambda r, f: _trackers_missing(r)),
    Rule("kernels-need-cuda", "warning",
         "Liger kernels are CUDA (Triton) code: on a machine without a CUDA GPU and liger-kernel the run goes on without them.",
         lambda r, f: "liger_kernel (Axolotl's liger_* / plugin) applies on a CUDA GPU with liger-kernel installed; "
                      "elsewhere it is ignored and the same model is trained, more slowly"
         if r.liger_kernel else None),
    Rule("cce-not-applied", "warning",
         "Cut Cross Entropy is a CUDA (Triton) loss for packed rows: elsewhere the factory's own loss is used, the "
         "same value with more memory for the logits.",
         lambda r, f: _cce_not_applied(r)),
    Rule("parallelism-not-available", "warning",
         "Tensor, context and sequence parallelism split a layer or a sequence over GPUs to save memory; the factory "
         "shards data-parallel only, so each GPU holds whole layers and whole sequences.",
         lambda r, f: f"{', '.join(k for k in r.compat.ignored_here if k in PARALLELISM)} ignored: the same model is "
                      "trained data-parallel (FSDP/DeepSpeed), with more memory per GPU than this config planned for"
         if any(k in PARALLELISM for k in r.compat.ignored_here) else None),
    Rule("seq-len-beyond-positions", "error",
         "Positions past max_position_embeddings were never trained; the model degrades or crashes there.",
         lambda r, f: f"sequence_len {r.sequence_len} is beyond the base model's {f.max_positions} positions"
         if f.max_positions and r.sequence_len > f.max_positions else None),
    Rule("chat-template-missing", "error",
         "Chat-format data needs a chat template to render turns and find the assistant tokens to train.",
         lambda r, f: "the base tokenizer has no chat template and the request sets none (chat_template: chatml|llama3|...)"
         if f.has_chat_template is False and not r.chat_template
         and any(d.type != "completion" for d in r.datasets) else None),
    Rule("lora-lr-too-low", "warning",
         "LoRA updates a small low-rank delta; at full-finetune learning rates (~1e-5) it barely moves.",
         lambda r, f: f"learning_rate {r.learning_rate:g} is a full-finetune rate; LoRA usually needs 1e-4 to 1e-3"
         if r.adapter and r.learning_rate < 5e-5 else None),
    Rule("full-lr-too-high", "warning",
         "A full finetune at LoRA learning rates (>=1e-4) often destroys what the base model knew.",
         lambda r, f: f"learning_rate {r.learning_rate:g} is high for a full finetune; try 1e-5 to 5e-5"
         if r.adapter is None and r.learning_rate >= 1e-4 else None),
    Rule("packing-no-isolation", "warning",
         "Packing is only safe when the attention kernel keeps samples apart; otherwise samples attend to each other.",
         lambda r, f: f"sample_packing with model type '{f.model_type}', whose packed-sample isolation is not known; "
                      "set sample_packing: false or check it with a packed-vs-unpacked logit test"
         if r.sample_packing and f.model_type and f.model_type not in PACKING_SAFE else None),
    Rule("packing-eager-attention", "info",
         "Eager attention isolates packed samples with a dense mask: correct, but O(n^2) memory per row.",
         lambda r, f: "sample_packing with attn_implementation: eager; sdpa or flash attention is faster"
         if r.sample_packing and r.attention == "eager" else None),
    Rule("eval-split-too-small", "warning",
         "An eval loss over a handful of samples is noise; it cannot tell overfitting from luck.",
         lambda r, f: f"val_set_size gives only {_eval_rows(r, f)} eval samples; use at least 20"
         if (n := _eval_rows(r, f)) is not None and 0 < n < 20 else None),
    Rule("batch-larger-than-data", "warning",
         "When the effective batch is close to the dataset size, an epoch is a handful of optimiser steps (fewer still when packed).",
         lambda r, f: f"effective batch {r.micro_batch_size * r.gradient_accumulation_steps} rows vs {f.train_rows} training rows: "
                      "under 4 optimiser steps per epoch"
         if f.train_rows and r.micro_batch_size * r.gradient_accumulation_steps * 4 > f.train_rows else None),
    Rule("lora-alpha-ratio", "warning",
         "LoRA's update is scaled by lora_alpha/lora_r; far from 1-4 it is effectively a hidden learning-rate change.",
         lambda r, f: f"lora_alpha/lora_r = {r.lora_alpha / r.lora_r:g}; usual values are 1 to 4"
         if r.adapter and not 0.5 <= r.lora_alpha / r.lora_r <= 4 else None),
    Rule("lora-settings-without-adapter", "warning",
         "lora_* keys do nothing in a full finetune; usually `adapter: lora` was forgotten.",
         lambda r, f: "lora_target_modules/lora_target_linear/lora_modules_to_save are set but adapter is not (full finetune)"
         if r.adapter is None and (r.lora_target_modules or r.lora_target_linear or r.lora_modules_to_save) else None),
    Rule("no-warmup-high-lr", "info",
         "Adam's first steps are large and noisy; without warmup a high learning rate can spike the loss early.",
         lambda r, f: f"learning_rate {r.learning_rate:g} with no warmup; set warmup_ratio: 0.03 or warmup_steps"
         if r.learning_rate >= 1e-4 and not r.warmup_ratio and not r.warmup_steps else None),
    Rule("train-on-inputs-chat", "info",
         "Training on prompts teaches the model to write user turns too, and spends capacity on text it will be given.",
         lambda r, f: "train_on_inputs: true trains on user and system turns as well as assistant turns"
         if r.train_on_inputs and any(d.type != "completion" for d in r.datasets) else None),
    Rule("max-steps-overrides-epochs", "info",
         "When max_steps is set the Trainer ignores num_epochs; a user setting both usually expects epochs.",
         lambda r, f: f"max_steps {r.max_steps} overrides num_epochs {r.num_epochs:g}"
         if r.max_steps and r.num_epochs != 1 else None),
    Rule("no-hub-model-id", "info",
         "Without hub_model_id the model is published under a generated name nobody will find again.",
         lambda r, f: "hub_model_id is not set; the model is published as local/<run-id>"
         if r.hub_model_id is None and r.publish.enabled else None),
    Rule("qlora-gradient-checkpointing", "info",
         "QLoRA is chosen to save memory; activations then dominate, and checkpointing them is the next big saving.",
         lambda r, f: "adapter: qlora without gradient_checkpointing: true"
         if r.adapter == "qlora" and not r.gradient_checkpointing else None),
    Rule("preference-full-high-lr", "warning",
         "Preference training moves a full model far faster than imitation does: DPO papers and TRL's examples use "
         "5e-7 to 5e-6; at SFT learning rates both answers' log-probs collapse and the model degrades.",
         lambda r, f: f"rl: {r.rl} on a full finetune at learning_rate {r.learning_rate:g}; try 5e-7 to 5e-6 (LoRA "
                      "takes about 10x more)"
         if r.rl and not r.adapter and r.learning_rate > 1e-5 else None),
    Rule("preference-nothing-held-out", "warning",
         "A preference run is judged on pairs it never trained on; with none held out the card cannot say whether "
         "the model's preferences moved.",
         lambda r, f: f"rl: {r.rl} with val_set_size: 0 holds out no pairs; the card will make no claim about "
                      "preference accuracy (leave val_set_size out for 10%)"
         if r.rl and r.val_set_size == 0 else None),
    Rule("gguf-architecture", "error",
         "llama.cpp runs an architecture only when its tensors and settings are written the way its graph for that "
         "architecture reads them; a file written for another would load and answer nonsense, or not load at all.",
         _gguf_problem),
    Rule("gguf-engine", "error",
         "Q4_0 and the k-quants are made by llama.cpp's quantizer; without it the export would fail after training.",
         lambda r, f: _gguf_engine(r)),
    Rule("sample-packing-ignored-for-pairs", "info",
         "Preference batches are always packed without padding (each micro-batch's sequences in one row); "
         "sample_packing does not change that.",
         lambda r, f: "sample_packing: false has no effect with rl: each micro-batch's pairs are packed into one row "
                      "without padding, isolated from each other"
         if r.rl and "sample_packing" in r.model_fields_set and not r.sample_packing else None),
]


def lint(request: Request, facts: Facts = Facts()) -> list[Finding]:
    findings = []
    for rule in RULES:
        message = rule.check(request, facts)
        if message:
            findings.append(Finding(rule.id, rule.severity, message))
    return findings


def facts_from_folder(config: dict | None, tokenizer_config: dict | None, chat_template_file: bool) -> Facts:
    """Facts from a model's config.json and tokenizer_config.json (plain JSON, no torch)."""
    config = config or {}
    has_template = None
    if tokenizer_config is not None:
        has_template = bool(tokenizer_config.get("chat_template")) or chat_template_file
    return Facts(model_type=config.get("model_type"), max_positions=config.get("max_position_embeddings"),
                 has_chat_template=has_template, config=config or None)
