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
    "preference and reward training (DPO, KTO, ORPO, GRPO, reward models)": (
        "rl", "rl_beta", "dpo_beta", "kto_desirable_weight", "kto_undesirable_weight", "orpo_alpha", "reward_model",
        "process_reward_model", "num_labels", "center_rewards_coefficient", "trl", "vllm", "ebft", "max_completion_length"),
    "vision and audio models (processors, multimodal towers)": (
        "processor_type", "freeze_mm_modules", "image_size", "image_resize_algorithm"),
    "quantisation-aware training and low-bit training formats (QAT, FP8, NVFP4, MXFP4, GPTQ, compressed bases)": (
        "qat", "fp8", "fp8_enable_fsdp_float8_all_gather", "nvfp4_merge_aware", "model_quantization_config",
        "model_quantization_config_kwargs", "gptq", "gptq_groupsize", "gptq_model_v1", "quantize_moe_experts",
        "llmcompressor", "use_onebitllms", "dsv4_fp4_grouped_mode", "bnb_config_kwargs"),
    "mixture-of-experts kernels and expert parallelism": (
        "expert_parallel_size", "expert_parallel_num_nvl_bytes", "expert_parallel_token_capacity", "use_scattermoe",
        "use_sonicmoe", "experts_implementation", "llama4_linearized_experts", "lora_target_parameters"),
    "tensor, context and sequence parallelism": (
        "tensor_parallel_size", "context_parallel_size", "context_parapllel_size", "dp_shard_size", "dp_replicate_size",
        "sequence_parallel_degree"),
    "diffusion language models": ("diffusion",),
    "ReLoRA, LISA and jagged-restart schedules": (
        "relora", "relora_steps", "relora_prune_ratio", "relora_cpu_offload", "lisa_n_layers", "lisa_step_interval",
        "lisa_layers_attribute", "jagged_restart_steps", "jagged_restart_warmup_steps", "jagged_restart_anneal_steps"),
    "partial unfreezing and model surgery": (
        "unfrozen_parameters", "reinit_weights", "resize_token_embeddings_to_32x", "model_config", "peft_use_dora",
        "peft_use_rslora", "peft", "lora_fan_in_fan_out"),
    "streaming and pretraining datasets": (
        "pretraining_dataset", "streaming", "streaming_multipack_buffer_size", "pretrain_multipack_attn",
        "min_sample_len", "curriculum_sampling", "sample_packing_sequentially"),
    "Axolotl's cloud and cluster launchers (Modal, Ray)": (
        "gpu", "gpu_count", "memory", "timeout", "memory_preprocess", "timeout_preprocess", "volumes", "secrets",
        "branch", "dockerfile_commands", "project_name", "use_ray", "ray_num_workers"),
    "other trackers than Weights & Biases, trackio and MLflow (SwanLab, OpenTelemetry)": (
        "use_swanlab", "swanlab_project", "swanlab_experiment_name", "swanlab_description", "swanlab_mode",
        "swanlab_log_completions", "swanlab_completion_log_interval", "swanlab_completion_max_buffer",
        "swanlab_workspace", "swanlab_log_model", "use_otel_metrics", "otel_metrics_host", "otel_metrics_port"),
    "generation-based evaluation during training (eval_causal_lm_metrics; use evals: after training)": (
        "do_causal_lm_eval", "eval_causal_lm_metrics", "eval_max_new_tokens", "eval_table_size"),
    "NEFTune noise, RoPE scaling and shifted-sparse attention": (
        "noisy_embedding_alpha", "neftune_noise_alpha", "rope_scaling", "s2_attention"),
    "Mistral's own tokenizer library (mistral-common)": ("tokenizer_use_mistral_common",),
}
VISION = "vision and audio models (processors, multimodal towers)"
CAPABILITY_OF = {k: cap for cap, keys in CAPABILITIES.items() for k in keys}

# Speed or memory only: the model trained is the same without them. Ignored here, with a warning.
SPEED_ONLY = {
    "liger_rms_norm", "liger_glu_activation", "liger_layer_norm", "liger_rope", "liger_fused_linear_cross_entropy",
    "liger_rms_norm_gated", "liger_cross_entropy", "cut_cross_entropy", "lora_mlp_kernel", "lora_qkv_kernel",
    "lora_o_kernel", "use_kernels", "tiled_mlp", "fused_attn_kernel", "flash_attn_fuse_mlp", "flash_attn_rms_norm",
    "flash_attn_cross_entropy", "gemma4_hybrid_attn_impl", "use_glm_dsa_kernels", "torch_compile",
    "torch_compile_mode", "flex_attn_compile_kwargs", "activation_offloading", "experimental_skip_move_to_device",
    "low_cpu_mem_usage", "ddp_find_unused_parameters", "torchdistx_path", "flash_optimum", "save_safetensors",
    "save_only_model", "dataloader_num_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
    "skip_prepare_dataset", "shuffle_merged_datasets", "eval_batch_size", "plugins", "sample_packing_eff_est",
    "sample_packing_seq_len_multiplier", "total_num_tokens", "max_packed_sequence_len",
}

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
    "group_by_length": (False,),
    "auto_resume_from_checkpoints": (True,),  # re-running a request resumes it
    "debug": (False, None),
    "test_value": (True, False),
    "tokens": ([],), "special_tokens": ({},),
    "lora_model_dir": (None, ""), "resume_from_checkpoint": (None, ""),
}
# model_type / tokenizer_type: the factory takes the class from the base model's own files.
CLASS_KEYS = ("model_type", "tokenizer_type", "tokenizer_config", "torch_dtype", "device_map")

# Implemented under another spelling in the Request.
RENAMED = {"adam_eps": "adam_epsilon"}


@dataclass
class Compat:
    """What happened to each Axolotl key that is not a Request field."""
    no_effect: list[str] = field(default_factory=list)
    ignored_here: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)  # capability -> keys

    def summary(self) -> list[str]:
        out = []
        if self.no_effect:
            out.append(f"accepted, no effect: {', '.join(self.no_effect)}")
        if self.ignored_here:
            out.append(f"ignored (speed or memory only, the same model is trained): {', '.join(self.ignored_here)}")
        return out


def asks_for_nothing(value) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {}


def _classify(key: str, value, compat: Compat, model_fields: set[str]) -> bool:
    """True when the key is taken out of the dict (handled here); False leaves it to the Request."""
    if key in model_fields:
        return False
    if key in CAPABILITY_OF:
        if asks_for_nothing(value):
            compat.no_effect.append(key)
        else:
            compat.refused.setdefault(CAPABILITY_OF[key], []).append(key)
        return True
    if key in SAME_AS_FACTORY and value in SAME_AS_FACTORY[key]:
        compat.no_effect.append(key)
        return True
    if key in CLASS_KEYS:
        if isinstance(value, str) and value.endswith("ForConditionalGeneration"):
            compat.refused.setdefault(VISION, []).append(f"{key}: {value}")
        else:
            compat.no_effect.append(key)
        return True
    if key in SPEED_ONLY:
        (compat.no_effect if asks_for_nothing(value) else compat.ignored_here).append(key)
        return True
    if key.startswith(("wandb_", "mlflow_", "trackio_", "comet_")) and asks_for_nothing(value):
        compat.no_effect.append(key)
        return True
    return False


def normalise(data: dict, model_fields: set[str]) -> tuple[dict, Compat]:
    """The request dict with Axolotl's no-effect and ignored keys taken out, and what was done with them.

    Capability refusals are collected, not raised: the caller raises one error naming them all."""
    compat = Compat()
    out = {}
    for key, value in data.items():
        key = RENAMED.get(key, key)
        if not isinstance(key, str) or not _classify(key, value, compat, model_fields):
            out[key] = value
    return out, compat
