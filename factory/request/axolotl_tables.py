"""What each of Axolotl's config keys means to the factory, as tables: refused by capability, ignored (speed,
memory, logging, launcher), the same as what the factory does anyway, or spelled otherwise. factory/request/axolotl.py
applies them; tests/test_axolotl_keys.py checks that every key of Axolotl's pinned schema (axolotl_keys.py) is in
a table or is a Request field.
"""

from __future__ import annotations

# Refused when set to anything but an empty or false value: one line per capability, not per key.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "reward models (reward_model, process_reward_model: a scalar head trained on ranked answers)": (
        "reward_model", "process_reward_model", "num_labels", "center_rewards_coefficient", "cls_model_config"),
    "online RL with generation during training (GRPO, GDPO, EBFT, NeMo Gym: the trl and vllm sections)": (
        "trl", "vllm", "ebft", "max_completion_length", *(f"nemo_gym_{k}" for k in (
            "auto_clone", "auto_start", "config_paths", "datasets", "dir", "enabled", "head_port", "max_turns",
            "model_name", "multi_turn", "run_timeout", "server_timeout", "verify_timeout"))),
    "vision and audio models (processors, multimodal towers)": (
        "processor_type", "freeze_mm_modules", "image_size", "image_resize_algorithm", "processor_kwargs"),
    "quantisation-aware training and low-bit training formats (QAT, FP8, NVFP4, MXFP4, GPTQ, compressed bases)": (
        "qat", "fp8", "fp8_enable_fsdp_float8_all_gather", "nvfp4_merge_aware", "nvfp4_merge_aware_start_step",
        "model_quantization_config", "model_quantization_config_kwargs", "gptq", "gptq_groupsize", "gptq_model_v1",
        "llmcompressor", "recipe", "save_compressed", "use_onebitllms", "dsv4_fp4_grouped_mode", "quantization",
        "nonexpert_quantization", "gemma4_fp8_nonexpert", "gemma4_nf4_nonexpert", "dsv4_fp8_nonexpert_mode",
        "dsv4_fp8_lora_kernel"),
    "mixture-of-experts kernels and expert parallelism": (
        "expert_parallel_size", "expert_parallel_num_nvl_bytes", "expert_parallel_token_capacity",
        "expert_parallel_backend", "expert_parallel_fallback_on_unsupported", "expert_parallel_num_rdma_bytes",
        "llama4_linearized_experts", "dense_mixer", "expert_backend", "moe_bnb_fast", "moe_dequant_chunk_size",
        "moe_grouped_backend", "use_dsv4_kernels", "dsv4_bf16_all", "dsv4_shared_mlp_lora_kernel"),
    "diffusion language models": (
        "diffusion", "eps", "generation_interval", "generation_max_length", "generation_steps", "importance_weighting",
        "mask_token_id", "mask_token_str", "max_mask_ratio", "min_mask_ratio", "noise_schedule", "num_diffusion_steps"),
    "learning-rate schedules of older Axolotl releases (eta_min)": ("eta_min",),
    "ReLoRA and jagged-restart schedules": (
        "relora", "relora_steps", "relora_prune_ratio", "relora_prune_method", "relora_cpu_offload",
        "jagged_restart_steps", "jagged_restart_warmup_steps", "jagged_restart_anneal_steps"),
    "model surgery (reinitialised weights, resized or rewritten embeddings, scaled softmax, replicated layers)": (
        "reinit_weights", "mean_resizing_embeddings", "shrink_embeddings", "fix_untrained_tokens",
        "added_tokens_overrides", "scaling_softmax", "scaling_softmax_bias", "scaling_softmax_factor",
        "peft_layer_replication"),
    "LoftQ initialisation of LoRA (peft: {loftq_config})": ("peft",),
    "streaming and pretraining datasets": (
        "pretraining_dataset", "pretrain_multipack_attn", "pretrain_multipack_buffer_size",
        "pretraining_sample_concatenation"),
    "NEFTune noise, RoPE scaling and shifted-sparse attention": (
        "noisy_embedding_alpha", "neftune_noise_alpha", "rope_scaling", "s2_attention"),
    "context extension by positional skip-wise training (PoSE)": (
        "use_pose", "pose_max_context_len", "pose_num_chunks", "pose_split_on_token_ids"),
    "optimizers the factory does not have (Dion, Q-GaLore, GrokFast, CAME's third beta)": (
        "dion_lr", "dion_momentum", "dion_rank_fraction", "dion_rank_multiple_of", "grokfast_alpha", "grokfast_lamb",
        "adam_beta3", "adam_epsilon2", *(f"qgalore_{k}" for k in (
            "cos_threshold", "gamma_proj", "proj_bits", "proj_group_size", "proj_quant", "proj_type", "queue_size",
            "rank", "scale", "update_proj_gap"))),
    "per-parameter-group learning rates (lr_groups, embedding_lr; loraplus_lr_ratio is implemented)": (
        "lr_groups", "embedding_lr", "embedding_lr_scale"),
    "other training losses (entropy-adaptive EAFT, knowledge distillation from a teacher's logits)": (
        "use_eaft", "eaft_alpha", "eaft_k", "kd_alpha", "kd_beta", "kd_ce_alpha", "kd_normalize_topk",
        "kd_online_server", "kd_online_server_base_url", "kd_online_timeout", "kd_online_topk", "kd_temperature",
        "kd_temperature_min", "kd_trainer"),
    "other adapters than LoRA (MoRA)": ("mora", "mora_type", "use_mora"),
    "Spectrum's layer scan (spectrum plugin; name the layers in unfrozen_parameters instead)": (
        "spectrum_model_name", "spectrum_top_fraction"),
    "Axolotl's hosted training backends (hatchery, tinker: the run and its key go to another service)": (
        "hatchery", "backend", "base_url", "api_key", "project_id", "pipeline", "future_timeout", "lora_rank",
        "loss_fn", "loss_fn_config", "reward_funcs", "num_samples", "max_sample_tokens", "sample_temperature",
        "save_name_prefix", "train_attn", "train_mlp", "train_unembed"),
    "code chosen by the request (trainer_cls, model_kwargs: a class to import, arguments to from_pretrained)": (
        "trainer_cls", "model_kwargs"),
    "pushing the prepared dataset to the Hub (push_dataset_to_hub; the factory publishes the model)": (
        "push_dataset_to_hub",),
    "separate evaluation datasets (test_datasets; the factory holds out val_set_size of the training rows)": (
        "test_datasets",),
    "training on one shard of a dataset (dataset_shard_num, dataset_shard_idx)": ("dataset_shard_num", "dataset_shard_idx"),
    "dropping the last incomplete batch (dataloader_drop_last)": ("dataloader_drop_last",),
    "label masks by custom role boundaries (role_boundaries)": ("role_boundaries",),
    "norms kept in float32 inside a lower-precision model (fp32_norms)": ("fp32_norms", "fp32_norm_classes"),
    "publishing to a branch of the Hub repo (hub_revision)": ("hub_revision",),
    "DPO's RPO term and prompt truncation (rpo_alpha, max_prompt_len)": ("rpo_alpha", "max_prompt_len"),
    "Mistral's own tokenizer library (mistral-common)": ("tokenizer_use_mistral_common",),
    "arguments to the chat template and a default system message (chat_template_kwargs, default_system_message)": (
        "chat_template_kwargs", "default_system_message"),
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
    "streaming", "streaming_multipack_buffer_size", "preprocess_iterable",  # SFT datasets are read whole
    # attention kernels: each computes the same attention
    "xformers_attention", "sdp_attention", "flex_attention", "eager_attention", "sage_attention", "flash_attn_d512",
    "sdpa_varlen", "large_head_attention", "batch_flattening",
    # memory: checkpointing, offloading, chunking, caches, limits
    "dynamic_checkpoint", "selective_checkpointing", "layer_offloading", "lora_on_cpu", "chunked_cross_entropy",
    "chunked_cross_entropy_num_chunks", "tiled_mlp_num_shards", "tiled_mlp_use_original_mlp", "gc_steps",
    "gc_collect_steps", "torch_empty_cache_steps", "gpu_memory_limit", "max_memory", "qlora_sharded_model_loading",
    "embeddings_skip_upcast", "auto_find_batch_size", "lora_embedding_kernel", "merge_method",
    # compilation, process groups, data loading and preparation
    "torch_compile_backend", "torch_compile_options", "deepcompile", "ddp_timeout", "ddp_bucket_cap_mb",
    "ddp_broadcast_buffers", "accelerator_config", "dataset_keep_in_memory", "dataset_num_proc",
    "num_dataset_shards_to_save", "pad_to_multiple_of", "multipack_real_batches", "sample_packing_bin_size",
    "sample_packing_group_size", "sample_packing_mp_start_method", "lr_div_factor",  # (Axolotl 0.18 reads it nowhere)
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
    "eval_causal_lm_metrics", "eval_max_new_tokens", "eval_table_size", "debug", "swanlab_api_host",
    "swanlab_api_key", "swanlab_lark_secret", "swanlab_lark_webhook_url", "swanlab_web_host",
    "use_comet", "use_mlflow", "comet_api_key", "comet_experiment_config", "comet_experiment_key", "comet_mode",
    "comet_online", "comet_project_name", "comet_workspace", "hf_mlflow_log_artifacts", "include_tkps", "include_tokens_per_second",
    "profiler_steps", "profiler_steps_start", "total_supervised_tokens", "save_first_step", "tokenizer_save_jinja_files",
    # samples and benchmarks printed during training (the factory's eval stage and evals.during_training_limit score)
    "bench_dataset", "bench_split", "do_bench_eval", "generate_samples", "generation_do_sample",
    "generation_max_new_tokens", "generation_prompt_ratio", "generation_temperature", "generation_top_k",
    "generation_top_p", "num_generation_samples", "dpo_generate_during_eval",
    "lm_eval_batch_size", "lm_eval_model", "lm_eval_post_train", "lm_eval_tasks",
    # Axolotl's own Gradio inference page (the factory has `factory chat` and the Space's chat tab)
    "gradio_max_new_tokens", "gradio_server_name", "gradio_server_port", "gradio_share", "gradio_temperature",
    "gradio_title",
}
# Axolotl's Modal and Ray launchers: where Axolotl would run the job; the factory's operator decides that
# (its workers, or Hugging Face Jobs; `accelerate launch` for several GPUs).
LAUNCHER = {"gpu", "gpu_count", "memory", "timeout", "memory_preprocess", "timeout_preprocess", "volumes", "secrets",
            "branch", "dockerfile_commands", "project_name", "use_ray", "ray_num_workers", "resources_per_worker",
            "ray_run_name", "local_rank", "world_size", "device", "is_preprocess", "axolotl_config_path"}

# Keys whose listed values are what the factory does anyway.
SAME_AS_FACTORY: dict[str, tuple] = {
    "strict": (True, False),  # Axolotl's strict schema: the factory's is always strict about keys
    "remove_unused_columns": (True, False),  # the factory tokenises rows itself: no dataset column reaches the Trainer
    "eval_sample_packing": (True, False),  # packed evaluation isolates samples: the eval loss is the same either way
    "pad_to_sequence_len": (True, False),  # packed rows hold no padding; unpacked batches pad to their longest row
    "tokenizer_use_fast": (True,),
    "tokenizer_legacy": (True, False),
    "hf_use_auth_token": (True, False),  # the token is the operator's, never the request's
    "use_wandb": (True, False),  # the factory reports to Weights & Biases when wandb_project is set
    "ddp": (True, False),
    "float16": (False,), "bfloat16": (False,),
    "hub_strategy": ("end", None),
    "dataset_exact_deduplication": (True,),  # the factory always drops exact duplicates
    "auto_resume_from_checkpoints": (True,),  # re-running a request resumes it
    "is_llama_derived_model": (True, False), "is_mistral_derived_model": (True, False),
    "is_qwen_derived_model": (True, False),
    "test_value": (True, False), "is_falcon_derived_model": (True, False),
    "merge_lora": (True,),  # the factory always merges the adapter into the published model
    "shuffle_before_merging_datasets": (True, False),  # each epoch's order is a seeded shuffle of all rows anyway
}
# Counts where Axolotl reads 0 as "none" (no evaluation, no extra checkpoints, no step limit): unset here.
ZERO_IS_OFF = ("evals_per_epoch", "eval_steps", "saves_per_epoch", "save_steps", "max_steps", "early_stopping_patience",
               "loraplus_lr_ratio", "loraplus_lr_embedding", "cosine_min_lr_ratio", "cosine_constant_lr_ratio")
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


# Implemented under another spelling in the Request.
RENAMED = {"adam_eps": "adam_epsilon", "model_config": "base_config_overrides", "dpo_beta": "rl_beta",
           "model_revision": "revision_of_model", "evaluation_strategy": "eval_strategy"}  # pydantic reserves model_config


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
                  "dpo_norm_loss", "use_logits_to_keep", "dpo_use_logits_to_keep"}
# Dataset `type`s: Axolotl's names for formats the factory reads under its own name.
DATASET_TYPES = {"chat_template": "messages", "chat_template.default": "messages", "alpaca:chat": "alpaca",
                 "alpaca:phi": "alpaca", "sharegpt": "sharegpt", "messages": "messages", "alpaca": "alpaca",
                 "completion": "completion", "jeopardy": "jeopardy"}
ASSISTANT_ROLES = {"assistant", "gpt", "model"}



# Dataset entries' keys refused when set (Axolotl's dataset models: SFTDataset, DPODataset, KTODataset, ...).
DATASET_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "Axolotl's other prompt formats and custom dataset transforms": (
        "completion_format", "conversation", "field_completion", "field_human", "field_model", "format",
        "input_format", "no_input_format", "system_format", "system_prompt", "input_transform"),
    "synthetic datasets (type: synthetic)": ("length", "sequence_length", "min_input_id", "max_input_id", "seed"),
    "other training losses (entropy-adaptive EAFT, knowledge distillation from a teacher's logits)": (
        "logprobs_field", "temperature"),
    "per-turn training flags in the data (message_field_training)": (
        "message_field_training", "message_field_training_detail"),
    "tool schemas in their own column rendered by the template (field_tools; field_system can carry them)": (
        "field_tools",),
    "a dataset's revision, shard or skipped rows (revision, shards_idx, skip)": ("revision", "shards", "shards_idx",
                                                                                 "skip"),
    "code chosen by the request (trainer_cls, model_kwargs: a class to import, arguments to from_pretrained)": (
        "trust_remote_code",),
    "KTO labels in a column of another name (field_label)": ("field_label",),
    "streaming and pretraining datasets": ("text_column",),
}
DATASET_CAPABILITY_OF = {k: cap for cap, keys in DATASET_CAPABILITIES.items() for k in keys}
DATASET_SPEED_ONLY = {"preprocess_shards", "ds_type"}  # ds_type: the factory reads a file by its suffix
