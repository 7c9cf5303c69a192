"""Training: load the base, wrap it (LoRA / QLoRA / full), run the transformers Trainer on packed bins.

Every setting comes from the typed Request; the Trainer handles gradient accumulation (loss
normalised by the number of target tokens across accumulation steps), checkpoints and resume.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.base import interrupt
from factory.data.chat import Encoded
from factory.request.config import Request
from factory.data.encoded_store import Samples
from factory.base.errors import Stopped
from factory.train.packing import FlattenCollator, PadCollator, pack_lengths
from factory.base.progress import Event, MainOnly, Reporter
from factory.train import schedules
from factory.train.train_options import (environ, loss_watchdog, optim_args, report_to, schedule_args, tracker_args,
                                          tracker_env)


@dataclass
class TrainResult:
    output: Path  # adapter folder (LoRA/QLoRA) or full model folder
    steps: int
    seconds: float
    train_loss: float
    eval_loss: float | None
    tokens: int  # real tokens in one epoch of the training set
    packing_efficiency: float | None
    tokens_seen: int = 0  # real tokens trained on, all processes and resumed runs included, padding excluded
    kept: dict | None = None  # the checkpoint kept at the end (load_best_model_at_end): step, metric, value


def use_bf16(request: Request) -> bool:
    import torch

    if request.weights_dtype:  # the weights themselves are half precision: no mixed precision on top
        return False
    if request.bf16 == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(request.bf16)


def compute_dtype(request: Request):
    import torch

    if request.weights_dtype:
        return getattr(torch, request.weights_dtype)
    return torch.bfloat16 if use_bf16(request) else (torch.float16 if request.fp16 else torch.float32)


def pick_attention(request: Request, cuda: bool, has_flash: bool) -> str:
    """The request's kernel; when the request leaves it at the default, flash-attention 2 if it can run here
    (packed rows then use its varlen path through position_ids)."""
    explicit = "attn_implementation" in request.model_fields_set or request.flash_attention
    if not explicit and cuda and has_flash and (use_bf16(request) or request.fp16):
        return "flash_attention_2"
    if request.attention.startswith("flash_attention") and not (cuda and has_flash):
        return "sdpa"  # asked for (Axolotl configs nearly all do), but it cannot run here: the same attention, slower
    return request.attention


def overridden_config(request: Request, model_dir: Path):
    """The base's config with base_config_overrides set on it; a key the config does not have is refused (a
    loader argument such as subfolder or gguf_file would read other files than the base's)."""
    from transformers import AutoConfig

    from factory.base.errors import UserError

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=request.trust_remote_code)
    for key, value in (request.base_config_overrides or {}).items():
        if not hasattr(config, key):
            raise UserError(f"base_config_overrides: `{key}` is not a setting of this model's config "
                            f"({type(config).__name__}); overrides change the config only")
        setattr(config, key, value)
    return config


def load_base(request: Request, model_dir: Path, for_training: bool = True):
    """The base model as the request wants it: dtype, attention kernel, 4-bit for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": compute_dtype(request), "trust_remote_code": request.trust_remote_code,
              "attn_implementation": pick_attention(request, torch.cuda.is_available(),
                                                    importlib.util.find_spec("flash_attn") is not None)}
    if request.base_config_overrides:  # settings of the model's config, never the loader's own arguments
        kwargs["config"] = overridden_config(request, model_dir)
    if request.adapter == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(**{
            "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": kwargs["dtype"], **(request.bnb_config_kwargs or {})})
        kwargs["device_map"] = "auto" if torch.cuda.is_available() else "cpu"
    elif request.load_in_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = "auto" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.config.use_cache = False  # a cache silently turns packed-sample isolation off
    if request.adapter == "qlora":
        import bitsandbytes as bnb
        from peft import prepare_model_for_kbit_training

        for m in model.modules():  # CPU repack after an eval pass breaks LoRA gradients (STACK_NOTES)
            if isinstance(m, bnb.nn.Linear4bit):
                m.support_avx512bf16_for_cpu = False
        if for_training:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(request.gradient_checkpointing))
    elif request.load_in_8bit and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(request.gradient_checkpointing))
    return model


def wrap_adapter(request: Request, model, train_in_full: list[str] | None = None):
    """LoRA/QLoRA around the model; train_in_full: layers trained whole and saved with the adapter (new tokens' rows)."""
    if request.adapter is None:
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if request.lora_model_dir:  # continue training an existing adapter (its own r, alpha and targets)
        return PeftModel.from_pretrained(model, request.lora_model_dir, is_trainable=True)

    targets = "all-linear" if request.lora_target_linear else request.lora_target_modules
    if isinstance(targets, str) and targets != "all-linear":  # peft's meaning: one expression over full names
        from factory.base.patterns import matching

        targets = matching([targets], [n for n, _ in model.named_modules() if n], full=True, what="lora_target_modules")
        if not targets:
            from factory.base.errors import UserError

            raise UserError(f"lora_target_modules {request.lora_target_modules!r} matches no module of the model")
    config = LoraConfig(
        r=request.lora_r, lora_alpha=request.lora_alpha, lora_dropout=request.lora_dropout,
        target_modules=targets,
        modules_to_save=sorted(set(request.lora_modules_to_save or []) | set(train_in_full or [])) or None,
        target_parameters=request.lora_target_parameters, use_rslora=request.peft_use_rslora,
        use_dora=request.peft_use_dora, fan_in_fan_out=request.lora_fan_in_fan_out,
        layers_to_transform=request.peft_layers_to_transform, layers_pattern=request.peft_layers_pattern,
        rank_pattern=request.lora_rank_pattern or {}, alpha_pattern=request.lora_alpha_pattern or {},
        init_lora_weights=True if request.peft_init_lora_weights is None else request.peft_init_lora_weights,
        trainable_token_indices=request.peft_trainable_token_indices,
        ensure_weight_tying=request.peft_ensure_weight_tying,
        task_type="CAUSAL_LM",
    )
    import warnings

    with warnings.catch_warnings():  # peft 0.21 asks transformers 5 for the renamed is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config, autocast_adapter_dtype=request.peft_autocast_adapter_dtype)


def _pause_here(step: int) -> None:
    """FACTORY_PAUSE_AT_STEP=N freezes this process (SIGSTOP) at the end of step N, after its checkpoint
    when one is saved there: a debugging and test hook to crash or signal a run at a known point."""
    if os.environ.get("FACTORY_PAUSE_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGSTOP)


def _progress_callback(reporter: Reporter, collator, metrics_path: Path, efficiency: float | None,
                       epoch_scale: float):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.tok0, self.last = time.time(), collator.tokens_seen, {}

        def on_step_end(self, args, state, control, **kw):
            reporter.emit(Event("train", step=state.global_step, total=state.max_steps,
                                loss=self.last.get("loss"), extra=dict(self.last)))
            if getattr(reporter, "stop_requested", None) == "preempt":  # SIGTERM: checkpoint, then stop
                control.should_save = True
                control.should_training_stop = True
            if not control.should_save:
                _pause_here(state.global_step)
            _safe_point_on_every_rank()

        def on_train_end(self, args, state, control, **kw):  # the last step's losses, logged after its step end
            if self.last.get("step") == state.global_step:
                reporter.emit(Event("train", step=state.global_step, total=state.max_steps,
                                    loss=self.last.get("loss"), extra=dict(self.last)))

        def on_prediction_step(self, args, state, control, **kw):  # the eval loss's batches
            if world_size() == 1:
                interrupt.safe_point()

        def on_save(self, args, state, control, **kw):
            _pause_here(state.global_step)
            if getattr(reporter, "stop_requested", None) == "preempt":
                raise Stopped("preempt", f"checkpoint saved at step {state.global_step}")

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            elapsed = max(time.time() - self.t0, 1e-9)
            row = {"step": state.global_step, **logs, "epoch": round((state.epoch or 0.0) * epoch_scale, 4),
                   "tokens_per_s": (collator.tokens_seen - self.tok0) * world_size() / elapsed}  # every process alike
            if efficiency is not None:
                row["packing_efficiency"] = efficiency
            # an evaluation logs after the train loss of the same step: keep both for the next progress event
            self.last = {**self.last, **row} if self.last.get("step") == row["step"] else row
            if state.is_world_process_zero:  # one metrics.jsonl per job, not per process
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")

    return Progress()


def _score_callback(score: Callable, reporter: Reporter, metrics_path: Path):
    """At each evaluation during training, the held-out task scores of the model as it is, beside the eval loss:
    written to metrics.jsonl as eval_<task>, and into the evaluation's metrics, where the kept-checkpoint
    choice and early stopping (callbacks after this one) read them."""
    from transformers import TrainerCallback

    class Scores(TrainerCallback):
        training = True

        def on_train_end(self, args, state, control, **kw):
            self.training = False  # the evaluation after training is of the kept model, not a new point

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            if not self.training or metrics is None:
                return
            was_training = model.training
            model.eval()
            try:
                values = {f"eval_{task}": value for task, value in score(model).items()}
            finally:
                model.train(was_training)
            metrics.update(values)
            reporter.emit(Event("train", step=state.global_step, total=state.max_steps,
                                extra={"scores": {k.removeprefix("eval_"): v for k, v in values.items()}}))
            reporter.emit(Event("train", f"step {state.global_step}: " + ", ".join(
                f"{k.removeprefix('eval_')} {v:.3f}" for k, v in values.items())
                + (f", eval loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "")))
            if state.is_world_process_zero:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": state.global_step, **values}) + "\n")

    return Scores()


def _safe_point_on_every_rank() -> None:
    """A safe point between two steps. Under several processes, a stop asked of any of them (Ctrl-C reaches
    each at a slightly different moment) stops all of them after the same step: the others would wait
    for it in their next collective for ever."""
    if world_size() > 1:
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([1.0 if interrupt.requested() else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and not interrupt.requested():
                raise interrupt.Interrupted(interrupt.MESSAGE)
    interrupt.safe_point()


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed_args(request: Request) -> dict:
    """TrainingArguments for the request's strategy when launched with `accelerate launch` (else none).

    ddp runs anywhere (gloo on CPU, nccl on GPU). fsdp and deepspeed are passed to the Trainer as
    configured here but were only checked on the CPU for validation, not run: they need GPUs.
    """
    import torch

    if world_size() == 1:
        return {}
    spec = request.distributed
    args: dict = {"ddp_backend": "nccl" if torch.cuda.is_available() else "gloo", "ddp_find_unused_parameters": False}
    if spec.strategy == "fsdp":
        args.update(fsdp="full_shard auto_wrap", fsdp_config={
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "activation_checkpointing": request.gradient_checkpointing,
            "use_orig_params": request.adapter is not None})
    elif spec.strategy == "deepspeed":
        args["deepspeed"] = {
            "zero_optimization": {"stage": spec.zero_stage, "overlap_comm": True, "contiguous_gradients": True},
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "gradient_clipping": "auto",
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "train_batch_size": "auto"}
    return args


def epoch_order(n: int, epochs: float, rows_needed: int | None, seed: int, shuffle: bool = True) -> list[int]:
    """Row indices for the whole run: each epoch a fresh seeded shuffle (or, without shuffle, the rows in
    their order: Axolotl's curriculum_sampling), concatenated.

    The order is fixed before training, so a run resumed from a checkpoint (the Trainer skips the
    rows already seen) trains on exactly what an uninterrupted run would have.
    """
    import random

    total = rows_needed or max(1, round(epochs * n))
    order: list[int] = []
    epoch = 0
    while len(order) < total:
        perm = list(range(n))
        if shuffle:
            random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        order += perm
        epoch += 1
    return order[:total]


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint that was fully written; one cut short by a kill is removed."""
    import shutil

    found = sorted((p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if ckpt_dir.is_dir() else []
    for p in found:
        try:  # the Trainer writes trainer_state.json after weights, optimizer and RNG state
            json.loads((p / "trainer_state.json").read_text())
            return str(p)
        except (OSError, ValueError):
            pass
        shutil.rmtree(p, ignore_errors=True)
    return None


def lengths_of(samples: Sequence[Encoded]) -> list[int]:
    return samples.lengths.tolist() if isinstance(samples, Samples) else [len(s.input_ids) for s in samples]


class Rows:
    """The Trainer's dataset: row k is bin order[k], its samples read when the row is batched (a Samples
    reads them from disk then), so a run holds the bins' indices in memory, not the data."""

    def __init__(self, samples: Sequence[Encoded], bins: list[list[int]], order: Sequence[int]):
        self.samples, self.bins, self.order = samples, bins, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> list[Encoded]:
        return [self.samples[i] for i in self.bins[self.order[k]]]


def training_arguments(request: Request, ckpt_dir: Path, steps_per_epoch: int, has_eval: bool, rows_per_batch: int,
                       include_num_input_tokens_seen: str):
    """The Trainer's arguments from the request: one pass over rows that already hold every epoch in order.
    include_num_input_tokens_seen: real tokens trained (packed rows hold no padding: "all"; padded batches count
    their attention mask: "non_padding")."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=rows_per_batch,
        per_device_eval_batch_size=rows_per_batch,
        gradient_accumulation_steps=request.gradient_accumulation_steps,
        num_train_epochs=1,  # one pass over `rows`, which already holds every epoch in its seeded order
        max_steps=request.max_steps or -1,
        train_sampling_strategy="sequential",
        learning_rate=request.learning_rate,
        **schedules.trainer_args(request),
        warmup_steps=request.warmup_steps if request.warmup_steps is not None else request.warmup_ratio,
        optim=request.optimizer,
        optim_args=optim_args(request.optim_args),
        optim_target_modules=request.optim_target_modules,
        adam_beta1=request.adam_beta1,
        adam_beta2=request.adam_beta2,
        adam_epsilon=request.adam_epsilon,
        weight_decay=request.weight_decay,
        max_grad_norm=request.max_grad_norm,
        bf16=use_bf16(request),
        fp16=request.fp16,
        tf32=request.tf32 if torch.cuda.is_available() else None,  # TF32 exists on NVIDIA GPUs only
        use_liger_kernel=request.liger_kernel and torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None,
        activation_checkpointing=bool(request.gradient_checkpointing),  # the Axolotl key; transformers 5 renamed it
        gradient_checkpointing_kwargs=request.gradient_checkpointing_kwargs,
        seed=request.seed,
        data_seed=request.seed,
        logging_steps=request.logging_steps,
        logging_first_step=True,
        **schedule_args(request, steps_per_epoch, has_eval),
        report_to=report_to(request),
        **tracker_args(request),
        disable_tqdm=True,
        remove_unused_columns=False,
        prediction_loss_only=True,  # evaluation needs the loss; gathering every logit costs GBs for a large vocabulary
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        include_num_input_tokens_seen=include_num_input_tokens_seen,
        **distributed_args(request),
    )


def train(request: Request, model_dir: Path, tokenizer, train_set: Sequence[Encoded], eval_set: Sequence[Encoded],
          run_dir: Path, reporter: Reporter, score: Callable | None = None) -> TrainResult:
    """score(model) -> {task: value}, when given, runs at each evaluation during training."""
    import torch
    from transformers import PrinterCallback, Trainer

    reporter = MainOnly(reporter)

    train_lengths = lengths_of(train_set)
    if request.sample_packing:
        packed = pack_lengths(train_lengths, request.sequence_len, request.seed, request.sample_packing_sequentially)
        train_bins = packed.bins
        eval_bins = pack_lengths(lengths_of(eval_set), request.sequence_len, request.seed).bins if len(eval_set) else []
        from factory.train.loss import cce_unavailable

        cce = cce_unavailable(request, torch.cuda.is_available(), world_size()) is None
        collator, efficiency = FlattenCollator(hidden_states=cce), packed.efficiency
        reporter.emit(Event("train", f"packed {len(train_set)} samples into {len(train_bins)} rows of "
                                     f"{request.sequence_len} tokens, efficiency {efficiency:.1%}"))
    else:
        train_bins, eval_bins = [[i] for i in range(len(train_set))], [[i] for i in range(len(eval_set))]
        collator, efficiency, cce = PadCollator(tokenizer.pad_token_id or 0), None, False

    from transformers import set_seed

    set_seed(request.seed)  # LoRA's initial weights come from the global RNG: same seed, same run
    from factory.train.tokens import grow_embeddings

    model = load_base(request, model_dir)
    grown = grow_embeddings(model, tokenizer)  # the request added tokens: new embedding rows must train
    if grown:
        reporter.emit(Event("train", f"vocabulary grown to {len(tokenizer):,} tokens; "
                                     + (f"{', '.join(grown)} train in full" if request.adapter else "new rows train")))
    model = wrap_adapter(request, model, grown)
    if request.unfrozen_parameters:
        from factory.base.patterns import matching

        params = dict(model.named_parameters())
        short = {name: name.removeprefix("base_model.model.") for name in params}
        chosen = set(matching(request.unfrozen_parameters, list(short.values()), full=False, what="unfrozen_parameters"))
        for name, param in params.items():
            if param.requires_grad or not request.adapter:  # an adapter's frozen base stays frozen
                param.requires_grad = short[name] in chosen
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if n == 0:
            from factory.base.errors import UserError

            raise UserError(f"unfrozen_parameters {request.unfrozen_parameters} match no parameter of the model")
        reporter.emit(Event("train", f"unfrozen_parameters: {n:,} of {sum(p.numel() for p in model.parameters()):,} "
                                     "parameters train"))
    if request.adapter:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        reporter.emit(Event("train", f"{request.adapter}: {trainable:,} trainable of {total:,} parameters"))

    ckpt_dir = run_dir / "checkpoints"
    per_step = request.micro_batch_size * request.gradient_accumulation_steps * world_size()  # rows per optimizer step
    steps_per_epoch = max(1, -(-len(train_bins) // per_step))
    order = epoch_order(len(train_bins), request.num_epochs, request.max_steps and request.max_steps * per_step,
                        request.seed, shuffle=not request.curriculum_sampling)
    rows = Rows(train_set, train_bins, order)
    args = training_arguments(request, ckpt_dir, steps_per_epoch, bool(eval_bins), request.micro_batch_size,
                              include_num_input_tokens_seen="all" if request.sample_packing else "non_padding")
    from factory.train.loss import cce_loss, kept_logits_loss

    loss_func = kept_logits_loss if request.sample_packing else None  # packed rows: logits only where a token is trained
    if cce:
        try:
            loss_func = cce_loss(model)
            reporter.emit(Event("train", "loss: Cut Cross Entropy (the trained positions' logits are never materialised)"))
        except ValueError as exc:  # an LM head it cannot read: the factory's own loss, and the logits again
            collator.hidden_states = False
            reporter.emit(Event("train", f"loss: Cut Cross Entropy not applied: {exc}"))
    from factory.train.train_options import trainer_class

    Trainer = trainer_class(Trainer, request)  # noqa: N806 - with the request's schedule and LoRA+
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      eval_dataset=Rows(eval_set, eval_bins, range(len(eval_bins))) if eval_bins else None,
                      data_collator=collator,
                      compute_loss_func=loss_func,
                      callbacks=[_progress_callback(reporter, collator, run_dir / "metrics.jsonl", efficiency,
                                                 len(rows) / len(train_bins))])
    trainer.remove_callback(PrinterCallback)  # our Progress callback draws the bar and writes metrics.jsonl
    if request.loss_watchdog_threshold:
        trainer.add_callback(loss_watchdog(request))
    if request.lisa_n_layers:
        from factory.train.train_options import lisa

        trainer.add_callback(lisa(request, model, reporter))
    if score is not None and args.eval_strategy == "steps":
        if world_size() > 1:  # lm-eval would run on each process's shard of the model
            if request.best_metric[0] != "eval_loss":
                from factory.base.errors import UserError

                raise UserError(f"metric_for_best_model '{request.metric_for_best_model}' is scored during "
                                "training, which runs on one process only; use eval_loss with several processes")
            reporter.emit(Event("train", "held-out task scores during training: not under several processes"))
        else:
            trainer.add_callback(_score_callback(score, reporter, run_dir / "metrics.jsonl"))
    if request.early_stopping_patience and eval_bins:
        from transformers import EarlyStoppingCallback

        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=request.early_stopping_patience))
    last = last_complete_checkpoint(ckpt_dir) or request.resume_from_checkpoint
    if last:
        reporter.emit(Event("train", f"resuming from {last if last == request.resume_from_checkpoint else Path(last).name}"))
    t0 = time.time()
    with environ(tracker_env(request)), interrupt.cleaning(lambda: last_complete_checkpoint(ckpt_dir)):
        out = trainer.train(resume_from_checkpoint=last)  # a hard stop removes a checkpoint it cut short
    seconds = time.time() - t0
    seen = trainer.state.num_input_tokens_seen  # kept in checkpoints, so it counts across a resume too
    eval_loss = trainer.evaluate()["eval_loss"] if eval_bins else None

    final = run_dir / ("adapter" if request.adapter else "model")
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(final)
    kept = None
    if args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        kept = {"step": int(Path(trainer.state.best_model_checkpoint).name.rpartition("-")[2]),
                "metric": args.metric_for_best_model, "value": float(trainer.state.best_metric),
                "greater_is_better": bool(args.greater_is_better), "last_step": out.global_step}
        reporter.emit(Event("train", f"kept the checkpoint of step {kept['step']} of {out.global_step}: best "
                                     f"{kept['metric']} {kept['value']:.4f}"))
    return TrainResult(final, out.global_step, seconds, float(out.training_loss), eval_loss,
                       sum(train_lengths), efficiency, seen, kept)
