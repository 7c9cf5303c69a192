"""Axolotl configs as requests: which of Axolotl's keys ask for nothing, which are ignored on this machine,
and which need a capability the factory does not have. Applied to the raw YAML dict before the typed
Request sees it, so the Request stays strict: an unknown key is still an error with a 'did you mean'.

Every key this lets through without a Request field is listed back by `factory validate` ("accepted,
no effect" / "ignored on this machine"), so nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Refused when set to anything but an empty or false value: one line per capability, not per key.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "reward models (reward_model, process_reward_model: a scalar head trained on ranked answers)": (
        "reward_model", "process_reward_model", "num_labels", "center_rewards_coefficient"),
    "online RL with generation during training (GRPO, GDPO, EBFT: the trl and vllm sections)": (
        "trl", "vllm", "ebft", "max_completion_length"),
    "vision and audio models (processors, multimodal towers)": (
        "processor_type", "freeze_mm_modules", "image_size", "image_resize_algorithm"),
    "quantisation-aware training and low-bit training formats (QAT, FP8, NVFP4, MXFP4, GPTQ, compressed bases)": (
        "qat", "fp8", "fp8_enable_fsdp_float8_all_gather", "nvfp4_merge_aware", "model_quantization_config",
        "model_quantization_config_kwargs", "gptq", "gptq_groupsize", "gptq_model_v1",
        "llmcompressor", "use_onebitllms", "dsv4_fp4_grouped_mode"),
    "mixture-of-experts kernels and expert parallelism": (
        "expert_parallel_size", "expert_parallel_num_nvl_bytes", "expert_parallel_token_capacity",
        "llama4_linearized_experts"),
    "diffusion language models": ("diffusion",),
    "learning-rate schedules other than cosine (with a floor or a quadratic warmup), linear and constant (eta_min)": (
        "eta_min",),
    "ReLoRA and jagged-restart schedules": (
        "relora", "relora_steps", "relora_prune_ratio", "relora_cpu_offload", "jagged_restart_steps",
        "jagged_restart_warmup_steps", "jagged_restart_anneal_steps"),
    "partial unfreezing and model surgery": (
        "reinit_weights", "peft", "lora_fan_in_fan_out"),
    "streaming and pretraining datasets": (
        "pretraining_dataset", "pretrain_multipack_attn"),
    "NEFTune noise, RoPE scaling and shifted-sparse attention": (
        "noisy_embedding_alpha", "neftune_noise_alpha", "rope_scaling", "s2_attention"),
    "Mistral's own tokenizer library (mistral-common)": ("tokenizer_use_mistral_common",),
}
VISION = "vision and audio models (processors, multimodal towers)"
CAPABILITY_OF = {k: cap for cap, keys in CAPABILITIES.items() for k in keys}

# Speed or memory only: the model trained is the same without them. Ignored, and listed so by validate.
SPEED_ONLY = {
    "liger_rms_norm", "liger_glu_activation", "liger_layer_norm", "liger_rope", "liger_fused_linear_cross_entropy",
    "liger_rms_norm_gated", "liger_cross_entropy", "lora_mlp_kernel", "lora_qkv_kernel",
    "lora_o_kernel", "use_kernels", "tiled_mlp", "fused_attn_kernel", "flash_attn_fuse_mlp", "flash_attn_rms_norm",
    "flash_attn_cross_entropy", "gemma4_hybrid_attn_impl", "use_glm_dsa_kernels", "torch_compile",
    "torch_compile_mode", "flex_attn_compile_kwargs", "activation_offloading", "experimental_skip_move_to_device",
    "low_cpu_mem_usage", "ddp_find_unused_parameters", "torchdistx_path", "flash_optimum", "save_safetensors",
    "save_only_model", "dataloader_num_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
    "skip_prepare_dataset", "group_by_length", "eval_batch_size", "plugins", "sample_packing_eff_est",
    "sample_packing_seq_len_multiplier", "total_num_tokens", "max_packed_sequence_len",
    "quantize_moe_experts", "use_scattermoe", "use_sonicmoe", "experts_implementation", "resize_token_embeddings_to_32x",
    "streaming", "streaming_multipack_buffer_size",  # SFT datasets are downloaded and read whole instead of streamed
}
# Tensor, context and sequence parallelism split one sample or one layer over GPUs: the same arithmetic as data
# parallelism, with less memory per GPU. The factory shards data-parallel only (FSDP, DeepSpeed): ignored, and lint
# warns that each GPU then holds whole sequences and whole layers.
PARALLELISM = {"tensor_parallel_size", "context_parallel_size", "context_parapllel_size", "dp_replicate_size",
               "sequence_parallel_degree", "ring_attn_func", "heads_k_stride"}
# Reporting during training to places the factory does not report to: the model trained is the same.
LOGGING_ONLY = {
    "use_swanlab", "swanlab_project", "swanlab_experiment_name", "swanlab_description", "swanlab_mode",
    "swanlab_log_completions", "swanlab_completion_log_interval", "swanlab_completion_max_buffer", "swanlab_workspace",
    "swanlab_log_model", "use_otel_metrics", "otel_metrics_host", "otel_metrics_port", "do_causal_lm_eval",
    "eval_causal_lm_metrics", "eval_max_new_tokens", "eval_table_size", "debug",
}
# Axolotl's Modal and Ray launchers: where Axolotl would run the job; the factory's operator decides that
# (its workers, or Hugging Face Jobs; `accelerate launch` for several GPUs).
LAUNCHER = {"gpu", "gpu_count", "memory", "timeout", "memory_preprocess", "timeout_preprocess", "volumes", "secrets",
            "branch", "dockerfile_commands", "project_name", "use_ray", "ray_num_workers", "resources_per_worker"}

# Keys whose listed values are what the factory does anyway.
SAME_AS_FACTORY: dict[str, tuple] = {
    "strict": (False,),
    "remove_unused_columns": (False,),
    "eval_sample_packing": (True, False),  # packed evaluation isolates samples: the eval loss is the same either way
    "pad_to_sequence_len": (True, False),  # packed rows hold no padding; unpacked batches pad to their longest row
    "tokenizer_use_fast": (True,),
    "tokenizer_legacy": (True, False),
    "hf_use_auth_token": (True, False),  # the token is the operator's, never the request's
    "use_wandb": (False,),
    "ddp": (True, False),
    "float16": (False,), "bfloat16": (False,),
    "hub_strategy": ("end", None),
    "dataset_exact_deduplication": (True,),  # the factory always drops exact duplicates
    "auto_resume_from_checkpoints": (True,),  # re-running a request resumes it
    "is_llama_derived_model": (True, False), "is_mistral_derived_model": (True, False),
    "is_qwen_derived_model": (True, False), "push_dataset_to_hub": (None, ""),
    "test_value": (True, False),
}
# model_type / tokenizer_type: the factory takes the class from the base model's own files.
CLASS_KEYS = ("model_type", "tokenizer_type", "tokenizer_config", "torch_dtype", "device_map")

# chat_template names: Axolotl's spelling of a template the factory ships, and the names of Axolotl's copies
# of a model family's own template (the base model's tokenizer carries the same one: the factory uses it).
TEMPLATE_ALIASES = {"phi_3": "phi3", "phi3": "phi3", "chatml": "chatml", "llama3": "llama3", "mistral": "mistral",
                    "zephyr": "zephyr"}
TEMPLATE_FAMILIES = {
    "alpaca", "aya", "cohere", "command_a", "deepseek_v2", "deepseek_v3", "exaone", "exaone4", "falcon_h1", "gemma",
    "gemma3", "gemma3n", "gemma4", "gemma4_unified", "granite", "internlm2", "jamba", "llama2", "llama3_2_vision",
    "llama4", "llava", "metharme", "mistral_v1", "mistral_v2v3", "mistral_v3_tekken", "mistral_v7_tekken", "phi_35",
    "phi_4", "pixtral", "qwen2_vl", "qwen3", "qwen3_5", "qwen_25", "seed_oss", "smolvlm2", "lfm2", "lfm2vl", "gpt_oss",
    "olmo", "apertus", "arcee", "ernie", "hunyuan", "kimi", "magistral", "devstral", "voxtral", "glm4", "glm4_moe",
}


def template_choice(name: str) -> tuple[str | None, str | None]:
    """(built-in name to use, fallback built-in) for a chat_template name; (None, None) means the tokenizer's own."""
    if name in TEMPLATE_ALIASES:
        return TEMPLATE_ALIASES[name], None
    if name.startswith("tokenizer_default_fallback_"):
        fallback = name.removeprefix("tokenizer_default_fallback_")
        return None, TEMPLATE_ALIASES.get(fallback, fallback)
    return None, None  # tokenizer_default or a family name


def known_template_name(name: str) -> bool:
    return (name in TEMPLATE_ALIASES or name in TEMPLATE_FAMILIES or name == "tokenizer_default"
            or (name.startswith("tokenizer_default_fallback_")
                and TEMPLATE_ALIASES.get(name.removeprefix("tokenizer_default_fallback_")) is not None))


# Implemented under another spelling in the Request.
RENAMED = {"adam_eps": "adam_epsilon", "model_config": "base_config_overrides", "dpo_beta": "rl_beta"}  # pydantic reserves model_config


PREFERENCE = "reward models (reward_model, process_reward_model: a scalar head trained on ranked answers)"
# rl: values the factory does not train, each with its own reason.
RL_REFUSED = {
    "grpo": "online RL with generation during training (rl: grpo samples answers and scores them with reward "
            "functions; the factory trains on fixed preference data: rl: dpo, ipo, orpo, simpo or kto)",
    "gdpo": "online RL with generation during training (rl: gdpo, GRPO with several rewards; the factory trains on "
            "fixed preference data: rl: dpo, ipo, orpo, simpo or kto)",
    "ebft": "energy-based finetuning (rl: ebft needs generation and a feature network during training)",
}
# Axolotl's preference dataset types (prompt_strategies/dpo, orpo and kto): the factory reads them all by their
# columns, so each is `preference` (pairs) or `kto` (labelled completions); chatml.* and llama3.* also name the
# template Axolotl hard-codes for them.
PAIR_STYLES = ("default", "argilla", "argilla_chat", "icr", "intel", "prompt_pairs", "ultra")
KTO_STYLES = ("argilla", "argilla_chat", "intel", "prompt_pairs", "ultra")
DPO_SPEED_ONLY = {"dpo_use_weighting", "dpo_padding_free", "dpo_use_liger_kernel", "rl_adapter_ref_model",
                  "dpo_norm_loss", "use_logits_to_keep"}
# Dataset `type`s: Axolotl's names for formats the factory reads under its own name.
DATASET_TYPES = {"chat_template": "messages", "chat_template.default": "messages", "alpaca:chat": "alpaca",
                 "alpaca:phi": "alpaca", "sharegpt": "sharegpt", "messages": "messages", "alpaca": "alpaca",
                 "completion": "completion", "jeopardy": "jeopardy"}
ASSISTANT_ROLES = {"assistant", "gpt", "model"}


@dataclass
class Compat:
    """What happened to each Axolotl key that is not a Request field."""
    implemented: list[str] = field(default_factory=list)
    no_effect: list[str] = field(default_factory=list)
    ignored_here: list[str] = field(default_factory=list)
    translated: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)  # capability -> keys

    def refuse(self, capability: str, what: str) -> None:
        self.refused.setdefault(capability, []).append(what)

    def summary(self) -> list[str]:
        """The compatibility summary, for a config that carries Axolotl keys the factory has no field for."""
        if not (self.translated or self.no_effect or self.ignored_here):
            return []
        out = []
        if self.implemented:
            out.append(f"implemented: {', '.join(self.implemented)}")
        if self.translated:
            out.append(f"translated: {'; '.join(self.translated)}")
        if self.no_effect:
            out.append(f"accepted, no effect: {', '.join(self.no_effect)}")
        if self.ignored_here:
            out.append("ignored (speed, memory, logging or launcher settings; the same model is trained): "
                       f"{', '.join(self.ignored_here)}")
        return out


def asks_for_nothing(value) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {}


def _classify(key: str, value, compat: Compat, model_fields: set[str]) -> bool:
    """True when the key is taken out of the dict (handled here); False leaves it to the Request."""
    if key == "rl" and value in RL_REFUSED:
        compat.refuse(RL_REFUSED[value], f"rl: {value}")
        return True
    if key in model_fields:
        return False
    if key in DPO_SPEED_ONLY:
        (compat.no_effect if asks_for_nothing(value) else compat.ignored_here).append(key)
        return True
    if key in CAPABILITY_OF:
        if asks_for_nothing(value):
            compat.no_effect.append(key)
        else:
            compat.refuse(CAPABILITY_OF[key], key)
        return True
    if key in SAME_AS_FACTORY and (asks_for_nothing(value) or value in SAME_AS_FACTORY[key]):
        compat.no_effect.append(key)
        return True
    if key == "hub_strategy":  # every_save, checkpoint, all_checkpoints
        compat.refuse("pushing checkpoints to the Hub during training (the factory publishes the finished model)",
                      f"hub_strategy: {value}")
        return True
    if key in CLASS_KEYS:
        if isinstance(value, str) and value.endswith("ForConditionalGeneration"):
            compat.refuse(VISION, f"{key}: {value}")
        else:
            compat.no_effect.append(key)
        return True
    if key in SPEED_ONLY or key in LOGGING_ONLY or key in LAUNCHER:
        (compat.no_effect if asks_for_nothing(value) else compat.ignored_here).append(key)
        return True
    if key == "dp_shard_size" and value in (1, None):
        compat.no_effect.append(f"{key}: {value}")
        return True
    if key in PARALLELISM:
        (compat.no_effect if asks_for_nothing(value) or value == 1 else compat.ignored_here).append(key)
        return True
    if key == "cosine_constant_lr_ratio":
        if value in (0, None):
            compat.no_effect.append(f"{key}: {value}")
        else:
            compat.refuse("learning-rate schedules other than cosine (with a floor or a quadratic warmup), linear and constant (eta_min)",
                          f"{key}: {value}")
        return True
    if key.startswith(("wandb_", "mlflow_", "trackio_", "comet_")) and asks_for_nothing(value):
        compat.no_effect.append(key)
        return True
    return False


def _zero_stage(value: str) -> int | None:
    """ZeRO stage from Axolotl's deepspeed value: a name like deepspeed_configs/zero3_bf16.json, or a JSON file."""
    import json
    import re
    from pathlib import Path

    p = Path(value).expanduser()
    if p.suffix == ".json" and p.is_file():
        try:
            stage = json.loads(p.read_text()).get("zero_optimization", {}).get("stage")
            return stage if stage in (1, 2, 3) else None
        except (ValueError, OSError, AttributeError):
            return None
    m = re.search(r"zero([123])", p.name)
    return int(m.group(1)) if m else None


def _distributed(data: dict, compat: Compat) -> None:
    """Axolotl's deepspeed / fsdp keys as the factory's `distributed:`."""
    shard = data.get("dp_shard_size")
    if isinstance(shard, int) and shard > 1:  # (tensor/context parallel sizes beside it are ignored: PARALLELISM)
        data.pop("dp_shard_size")
        data.setdefault("fsdp_version", 2)  # sharded data parallel over all processes is FSDP
    ds, fsdp_keys = data.pop("deepspeed", None), {k: data.pop(k) for k in ("fsdp", "fsdp_config", "fsdp_version") if k in data}
    wants_fsdp = any(not asks_for_nothing(v) for v in fsdp_keys.values())
    for k, v in fsdp_keys.items():
        if asks_for_nothing(v):
            compat.no_effect.append(k)
    if ds is not None and asks_for_nothing(ds):
        compat.no_effect.append("deepspeed")
        ds = None
    if ds is None and not wants_fsdp:
        return
    if ds is not None and wants_fsdp:
        compat.refuse("DeepSpeed and FSDP at once", "deepspeed, fsdp")
        return
    if "distributed" in data:
        compat.translated.append("deepspeed/fsdp left out: the request's own `distributed:` wins")
        return
    if ds is not None:
        stage = _zero_stage(str(ds))
        if stage is None:
            compat.refuse("a DeepSpeed config whose ZeRO stage cannot be read", f"deepspeed: {ds}")
            return
        data["distributed"] = {"strategy": "deepspeed", "zero_stage": stage}
        compat.translated.append(f"deepspeed: {ds} -> distributed: {{strategy: deepspeed, zero_stage: {stage}}}")
    else:
        data["distributed"] = {"strategy": "fsdp"}
        compat.translated.append(f"{', '.join(k for k, v in fsdp_keys.items() if not asks_for_nothing(v))} -> "
                                 "distributed: {strategy: fsdp} (full shard, transformer-layer wrap; other fsdp_config "
                                 "settings are the factory's own)")


def _kernels(data: dict, compat: Compat) -> None:
    """Liger (by plugin or liger_* switch) becomes liger_kernel, the Cut Cross Entropy plugin (or key)
    cut_cross_entropy: each applied where CUDA and its package are present."""
    plugins = data.get("plugins") or []
    liger = any(k.startswith("liger_") and data.get(k) for k in list(data)) or any("liger" in str(p).lower() for p in plugins)
    for k in [k for k in data if k.startswith("liger_")]:
        data.pop(k)
        compat.translated.append(f"{k} -> liger_kernel") if liger else compat.no_effect.append(k)
    cce = [p for p in plugins if "cut_cross_entropy" in str(p).lower()]
    if plugins:
        data.pop("plugins")
        for p in cce:
            compat.translated.append(f"plugins: {p} -> cut_cross_entropy")
        others = [p for p in plugins if "liger" not in str(p).lower() and p not in cce]
        if others:
            compat.ignored_here.extend(f"plugins: {p}" for p in others)
    if liger:
        data["liger_kernel"] = True
    if cce and "cut_cross_entropy" not in data:
        data["cut_cross_entropy"] = True


def _preference_type(entry: dict, i: int, compat: Compat, top: dict) -> dict | None:
    """An Axolotl preference dataset entry under rl: as type preference or kto, or None when its type is not one."""
    kind, rl = entry.get("type"), top.get("rl")
    if isinstance(kind, dict):  # user_defined: the field names and formats in the type itself
        entry = {**{k: v for k, v in entry.items() if k != "type"}, **kind, "type": "kto" if rl == "kto" else "preference"}
        compat.translated.append(f"datasets[{i}].type: {{...}} -> {entry['type']} (user_defined)")
        return entry
    if not isinstance(kind, str) or kind in ("preference", "kto"):
        return None
    family, _, style = kind.partition(".")
    style = style or "default"
    target = None
    if kind in ("chat_template.default", "chat_template"):
        target = "preference"
        entry = {**entry, "field_prompt": entry.pop("field_messages", None) or "messages"}
    elif family == "chat_template" and style in ("argilla_chat", "argilla"):
        target = "preference"  # full conversations in chosen and rejected; the prompt is what they share
    elif family in ("chatml", "llama3") and rl == "kto" and style in KTO_STYLES:
        target = "kto"
    elif family in ("chatml", "llama3") and style in PAIR_STYLES:
        target = "preference"
    elif family == "user_defined" and style == "default":
        target = "kto" if rl == "kto" else "preference"
    if target is None:
        return None
    if family in ("chatml", "llama3") and not top.get("chat_template"):
        top["chat_template"] = family  # Axolotl hard-codes this template for the type
        compat.translated.append(f"datasets[{i}].type: {kind} -> chat_template: {family}")
    compat.translated.append(f"datasets[{i}].type: {kind} -> {target}")
    return {**entry, "type": target}


def _dataset(entry: dict, i: int, compat: Compat, dataset_fields: set[str], top: dict) -> dict:
    entry = dict(entry)
    if top.get("rl") and (translated := _preference_type(entry, i, compat, top)) is not None:
        entry = translated
    kind = entry.get("type")
    if isinstance(kind, str) and kind not in DATASET_TYPES and kind not in ("preference", "kto"):
        if kind.startswith(("bradley_terry", "stepwise")):
            compat.refuse(PREFERENCE, f"datasets[{i}].type: {kind}")
        elif kind.startswith("rwd."):
            compat.refuse(RL_REFUSED["grpo"], f"datasets[{i}].type: {kind}")
        elif kind.startswith("ebft_"):
            compat.refuse(RL_REFUSED["ebft"], f"datasets[{i}].type: {kind}")
        elif not top.get("rl") and (kind.startswith(("chatml.", "llama3.", "chat_template.argilla", "user_defined."))):
            compat.refuse("a preference dataset type without rl: (add rl: dpo, ipo, orpo, simpo or kto)",
                          f"datasets[{i}].type: {kind}")
        else:
            compat.refuse("Axolotl's other prompt formats and custom dataset transforms", f"datasets[{i}].type: {kind}")
        return entry
    if isinstance(kind, str) and kind not in ("preference", "kto"):
        entry["type"] = DATASET_TYPES[kind]
        if kind == "alpaca:phi" and not top.get("chat_template"):
            top["chat_template"] = "phi3"  # Axolotl's phi prompt style is the Phi-3 chat format
        if kind != entry["type"]:
            compat.translated.append(f"datasets[{i}].type: {kind} -> {entry['type']}")
    for legacy, prop in (("message_field_role", "role"), ("message_field_content", "content")):
        if legacy in entry:
            entry.setdefault("message_property_mappings", {})[prop] = entry.pop(legacy)
    for key in list(entry):
        value = entry[key]
        if key in dataset_fields:
            continue
        where = f"datasets[{i}].{key}"
        if key in ("chosen_key", "rejected_key"):
            compat.refuse(PREFERENCE, where)
        elif key in ("field_thinking", "template_thinking_key"):
            compat.refuse("reasoning traces in their own field", where)
        elif key in ("step_separator", "train_on_last_step_only", "max_completion_length"):
            compat.refuse(PREFERENCE, where)
        elif key == "roles_to_train":
            if value is None or set(value) <= ASSISTANT_ROLES:
                compat.no_effect.append(where)
            else:
                compat.refuse("training on turns of other roles than the assistant's", f"{where}: {value}")
        elif key == "train_on_eos":
            if value in (None, "turn"):
                compat.no_effect.append(where)  # the factory trains each assistant turn's end token
            else:
                compat.refuse("train_on_eos other than 'turn'", f"{where}: {value}")
        elif key == "train_on_inputs":
            if value == top.get("train_on_inputs", False):
                compat.no_effect.append(where)
            else:
                compat.refuse("train_on_inputs per dataset (set it once, at the top)", where)
        elif key in ("ds_type", "shards", "trust_remote_code") and asks_for_nothing(value):
            compat.no_effect.append(where)
        else:
            continue
        entry.pop(key)
    return entry


def normalise(data: dict, model_fields: set[str], dataset_fields: set[str]) -> tuple[dict, Compat]:
    """The request dict with Axolotl's no-effect and ignored keys taken out, Axolotl's spellings turned
    into the factory's, and what was done with them. Capability refusals are collected, not raised:
    the caller raises one error naming them all."""
    compat = Compat()
    data = {RENAMED.get(k, k): v for k, v in data.items()}
    _distributed(data, compat)
    _kernels(data, compat)
    if data.get("chat_template") == "tokenizer_default":
        data.pop("chat_template")
        compat.no_effect.append("chat_template: tokenizer_default")
    if isinstance(data.get("datasets"), list):
        data["datasets"] = [_dataset(d, i, compat, dataset_fields, data) if isinstance(d, dict) else d
                            for i, d in enumerate(data["datasets"])]
    if "batch_size" in data:  # Axolotl's older spelling: micro_batch_size x gradient_accumulation_steps
        total, micro = data.pop("batch_size"), data.get("micro_batch_size") or 1
        if isinstance(total, int) and isinstance(micro, int) and total % micro == 0 and "gradient_accumulation_steps" not in data:
            data["gradient_accumulation_steps"] = total // micro
            compat.translated.append(f"batch_size: {total} -> gradient_accumulation_steps: {total // micro}")
        elif asks_for_nothing(total):
            compat.no_effect.append("batch_size")
        else:
            compat.refuse("a batch_size that is not micro_batch_size x gradient_accumulation_steps", f"batch_size: {total}")
    for load_key, train_key in (("float16", "fp16"), ("bfloat16", "bf16")):  # Axolotl: the dtype weights load in
        if data.get(load_key) is True:
            data.pop(load_key)
            if data.get(train_key) is None:
                data[train_key] = True
                compat.translated.append(f"{load_key}: true -> {train_key}: true")
            elif data.get(train_key) in (True, "auto"):
                compat.no_effect.append(f"{load_key} (the factory loads the weights in the {train_key} it trains in)")
            elif data.get(train_key) is False and "weights_dtype" not in data:  # Axolotl trains those weights as they are
                data["weights_dtype"] = load_key
                compat.translated.append(f"{load_key}: true, {train_key}: false -> weights_dtype: {load_key}")
            else:
                compat.refuse("loading the weights in another dtype than training uses", f"{load_key}: true, {train_key}: "
                              f"{data.get(train_key)}")
    if isinstance(data.get("tokens"), dict):  # Axolotl's older spelling of special_tokens
        data["special_tokens"] = {**data.pop("tokens"), **(data.get("special_tokens") or {})}
        compat.translated.append("tokens: {...} -> special_tokens")
    if "save_strategy" in data:  # the Trainer's key, which Axolotl passes through
        value = data.pop("save_strategy")
        if value in (None, "steps"):
            compat.no_effect.append(f"save_strategy: {value}")
        elif value == "epoch" and "saves_per_epoch" not in data and "save_steps" not in data:
            data["saves_per_epoch"] = 1
            compat.translated.append("save_strategy: epoch -> saves_per_epoch: 1")
        else:  # no / best: the factory keeps checkpoints so that an interrupted run resumes
            compat.ignored_here.append(f"save_strategy: {value}")
    if "eot_tokens" in data:  # the end-of-turn tokens Axolotl trains: the factory trains each assistant turn's end
        compat.no_effect.append("eot_tokens (each assistant turn's end token, as the template renders it, is trained)")
        data.pop("eot_tokens")
    if data.get("attn_implementation") == "xformers":
        data["attn_implementation"] = "sdpa"
        compat.translated.append("attn_implementation: xformers -> sdpa (the same attention; xformers is not used)")
    out = {}
    for key, value in data.items():
        if key in model_fields and value is None:
            compat.no_effect.append(f"{key}: null")  # Axolotl's "unset": the factory's default applies
            continue
        if not isinstance(key, str) or not _classify(key, value, compat, model_fields):
            out[key] = value
            if key in model_fields:
                compat.implemented.append(key)
    return out, compat
