"""The request keys a stranger may set (the Space, Discord, the API), and those that are the operator's alone.

Every key of the request schema is in exactly one table. STRANGER keys are safe for strangers (the
remote policy bounds their values where a value could make the work run away). OPERATOR keys name
paths or run code on the worker, pass dicts through to transformers or peft, hold regular expressions,
report to the operator's accounts, or decide how the operator's machines are used. A key added to the
schema is in neither table, so a front door refuses it ("not on the allow-list") until someone places
it, and tests/test_strangers.py fails until then.
"""

from __future__ import annotations

from pydantic import BaseModel

from factory.request.config import Request
from factory.base.errors import UserError

STRANGER = {  # key: what keeps it safe
    "base_model": "a Hub repo id (hub-ids-only), among the operator's base_models",
    "revision_of_model": "a branch, tag or commit (schema)",
    "chat_template": "a built-in name or Jinja, rendered in a bounded sandbox everywhere",
    "attn_implementation": "one of five kernels (schema)",
    "special_tokens": "at most 7 tokens of max_token_chars each",
    "tokens": "at most max_added_tokens tokens of max_token_chars each",
    "liger_kernel": "speed only", "cut_cross_entropy": "speed only", "flash_attention": "speed only",
    "datasets[].path": "a Hub repo id (hub-ids-only); at most max_datasets datasets",
    "datasets[].type": "a format name (schema)", "datasets[].split": "a split name or slice (schema)",
    "datasets[].name": "a config name of the dataset repo", "datasets[].field": "a column name",
    "datasets[].field_instruction": "a column name", "datasets[].field_input": "a column name",
    "datasets[].field_output": "a column name", "datasets[].field_system": "a column name",
    "datasets[].field_messages": "a column name", "datasets[].message_property_mappings": "column names",
    "datasets[].roles": "role names", "datasets[].drop_system_message": "a switch",
    "datasets[].field_prompt": "a column name", "datasets[].field_chosen": "a column name",
    "datasets[].field_rejected": "a column name",
    "datasets[].prompt_format": "a format naming {prompt} and {system} only, no format specs (schema)",
    "datasets[].chosen_format": "a format naming {chosen} only (schema)",
    "datasets[].rejected_format": "a format naming {rejected} only (schema)",
    "datasets[].field_thinking": "a message key", "datasets[].template_thinking_key": "a message key",
    "datasets[].split_thinking": "a switch",
    "rl": "dpo, ipo, orpo, simpo or kto (schema); both sequences of a pair count toward max_batch_tokens",
    "rl_beta": "a positive number", "dpo_loss_type": "loss names (schema)", "dpo_loss_weights": "numbers",
    "dpo_label_smoothing": "below 0.5 (schema)", "orpo_alpha": "a positive number", "cpo_alpha": "a number",
    "simpo_gamma": "a number", "kto_desirable_weight": "a positive number", "kto_undesirable_weight": "a positive number",
    "precompute_ref_log_probs": "a switch (no effect)",
    "val_set_size": "a fraction or a row count", "sequence_len": "at most max_sequence_len",
    "sample_packing": "a switch", "sample_packing_sequentially": "a switch", "curriculum_sampling": "a switch",
    "shuffle_merged_datasets": "a switch", "excess_length_strategy": "drop or truncate",
    "min_sample_len": "a token count", "train_on_inputs": "a switch", "max_malformed_fraction": "a fraction",
    "adapter": "among the operator's adapters", "load_in_4bit": "a switch (QLoRA)", "load_in_8bit": "a switch",
    "lora_r": "at most max_lora_r", "lora_alpha": "at most 4 x max_lora_r", "lora_dropout": "a fraction",
    "lora_target_modules": "a list of module names (a regular expression is the operator's)",
    "lora_target_linear": "a switch", "lora_modules_to_save": "a list of module names",
    "lora_target_parameters": "a list of parameter names", "peft_use_rslora": "a switch", "peft_use_dora": "a switch",
    "lora_fan_in_fan_out": "a switch", "peft_layers_to_transform": "layer indices",
    "peft_trainable_token_indices": "token indices", "peft_ensure_weight_tying": "a switch",
    "peft_autocast_adapter_dtype": "a switch", "loraplus_lr_ratio": "a positive number",
    "loraplus_lr_embedding": "a positive number", "cosine_constant_lr_ratio": "a fraction",
    "micro_batch_size": "at most max_micro_batch_size, and max_batch_tokens a step",
    "gradient_accumulation_steps": "max_batch_tokens a step", "num_epochs": "at most max_epochs",
    "max_steps": "at most max_steps", "learning_rate": "below 1 (schema)", "lr_scheduler": "a schedule name",
    "cosine_min_lr_ratio": "a fraction", "lr_quadratic_warmup": "a switch", "warmup_ratio": "a fraction",
    "warmup_steps": "at most max_steps", "optimizer": "a Trainer optimizer name (schema)",
    "adam_beta1": "a fraction", "adam_beta2": "a fraction", "adam_epsilon": "a small number",
    "weight_decay": "a number", "max_grad_norm": "a number", "bf16": "a switch", "fp16": "a switch",
    "weights_dtype": "float16 or bfloat16", "tf32": "a switch", "gradient_checkpointing": "a switch",
    "seed": "0 to 2**32-1", "logging_steps": "a step count (every logged loss is one event)",
    "save_steps": "at most max_checkpoints saves, save_total_limit kept",
    "saves_per_epoch": "at most max_checkpoints saves", "save_total_limit": "set, at most 3",
    "eval_steps": "at most max_evaluations", "evals_per_epoch": "at most max_evaluations",
    "early_stopping_patience": "a count", "load_best_model_at_end": "a switch",
    "metric_for_best_model": "eval_loss or one of evals.tasks", "greater_is_better": "a switch",
    "loss_watchdog_threshold": "a loss", "loss_watchdog_patience": "a count",
    "hub_model_id": "in the submitter's own namespace (own-namespace)",
    "evals.tasks": "known tasks, at most max_eval_tasks", "evals.limit": "required, at most max_eval_items",
    "evals.seed": "a number",
    "evals.during_training_limit": "evaluations x tasks x items at most max_training_eval_items", "evals.max_new_tokens": "at most max_new_tokens",
    "contamination.benchmarks": "built-in benchmark names only", "contamination.policy": "warn, block or drop",
    "contamination.fields": "field names",
    "distributed.strategy": "ddp, fsdp or deepspeed (the configs are the factory's)",
    "distributed.zero_stage": "1, 2 or 3",
    "publish.enabled": "a switch", "publish.private": "a switch", "publish.adapter": "a switch",
    "publish.into_existing": "in the submitter's own namespace only",
    "publish.writers": "identities (hf:<user>, discord:<id>, api:<name>) that may publish new revisions",
    "export.gguf": "types among the operator's gguf_types, at most max_gguf_files",
    "compute.flavor": "among the operator's flavors", "compute.timeout": "at most max_timeout",
}

OPERATOR = {  # key: why a stranger may not set it
    "base_config_overrides": "is passed to the model's config on the worker (Axolotl's model_config)",
    "unfrozen_parameters": "holds regular expressions matched on the worker",
    "bnb_config_kwargs": "is passed through to bitsandbytes on the worker",
    "gradient_checkpointing_kwargs": "is passed through to torch on the worker",
    "lisa_n_layers": "switches the model's layers through an attribute path on the worker",
    "lisa_step_interval": "belongs to lisa_n_layers, the operator's",
    "lisa_layers_attribute": "names an attribute path of the model on the worker",
    "datasets[].data_files": "names files on the worker",
    "dataset_processes": "decides how many of the worker's cores the job takes",
    "resume_from_checkpoint": "names a folder on the worker",
    "lora_model_dir": "names a folder on the worker",
    "dataset_prepared_path": "names a folder on the worker",
    "output_dir": "names a folder on the worker",
    "trust_remote_code": "runs code from the model repo on the worker",
    "hub_endpoint": "chooses which of the operator's Hub endpoints (and tokens) the job talks to",
    "contamination.embedding_model": "names a model folder on the worker",
    **{k: "reports to the operator's tracking account" for k in (
        "wandb_project", "wandb_entity", "wandb_name", "wandb_run_id", "wandb_mode", "wandb_watch", "wandb_log_model",
        "use_trackio", "trackio_project_name", "trackio_run_name", "trackio_space_id", "mlflow_experiment_name",
        "mlflow_run_name", "use_tensorboard")},
    "mlflow_tracking_uri": "sends the run's metrics to a server the request names",
    "lr_scheduler_kwargs": "is passed through to the scheduler on the worker",
    "optim_args": "is passed through to the optimizer on the worker",
    "optim_target_modules": "holds module names and patterns matched on the worker",
    "peft_layers_pattern": "names a module path of the model on the worker",
    "lora_rank_pattern": "holds regular expressions matched on the worker (and ranks beyond max_lora_r)",
    "lora_alpha_pattern": "holds regular expressions matched on the worker",
    "peft_init_lora_weights": "starts the adapter with an SVD or data pass (pissa, olora, eva) costing the worker's time",
}

AXOLOTL_NAMES = {"base_config_overrides": "model_config"}  # what an Axolotl config calls an operator key


def schema_keys(model: type[BaseModel] = Request, prefix: str = "") -> list[str]:
    """Every key path of the schema: `key`, `section.key`, `list[].key`."""
    out = []
    for name, f in model.model_fields.items():
        sub = _submodel(f.annotation)
        if sub is None:
            out.append(prefix + name)
        else:
            out += schema_keys(sub, f"{prefix}{name}{'[]' if 'list' in str(f.annotation) else ''}.")
    return out


def _submodel(annotation) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (X, X | None, list[X]), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in getattr(annotation, "__args__", ()):
        if (inner := _submodel(a)) is not None:
            return inner
    return None


def keys_set(model: BaseModel, prefix: str = "") -> list[tuple[str, object, object]]:
    """(key path, value, default) of every key the request sets to something other than its default."""
    out = []
    for name in sorted(model.model_fields_set):
        field = type(model).model_fields[name]
        value = getattr(model, name)
        items = value if isinstance(value, list) and value and isinstance(value[0], BaseModel) else None
        if isinstance(value, BaseModel):
            out += keys_set(value, f"{prefix}{name}.")
        elif items is not None:
            for item in items:
                out += keys_set(item, f"{prefix}{name}[].")
        else:
            default = field.get_default(call_default_factory=True)
            if value != default:
                out.append((prefix + name, value, default))
    return out


def check_keys(request: Request, source: str) -> None:
    """Refuse, by name, any key a stranger's request sets that is not on the allow-list."""
    for key, _value, _default in keys_set(request):
        if key in STRANGER:
            continue
        axolotl = f" (Axolotl's {AXOLOTL_NAMES[key]})" if key in AXOLOTL_NAMES else ""
        why = OPERATOR.get(key, "is not on the front doors' allow-list")
        raise UserError(f"{source}: operator-only: `{key}`{axolotl} {why}; requests from front doors may not set it")
