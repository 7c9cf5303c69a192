"""The finetune request: one typed pydantic model with Axolotl key names, and its YAML loader.

Unknown keys are errors with a 'did you mean'; Axolotl keys this factory does not implement are
errors that say so by name. Imports no torch: `factory validate` must stay fast.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from factory.base.errors import UserError
from factory.base.ids import looks_like_repo_id, repo_id_problem, revision_problem

DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".jsonl.gz")
MAX_PROBLEMS = 20  # schema errors listed at most (a document of aliases can hold millions)
MAX_REQUEST_BYTES = 1 << 20  # a request is a page of YAML; front doors accept far less (yaml_guard)

# Axolotl options the factory does not implement yet, named in the error (see factory/request/axolotl.py for the
# keys that ask for nothing, those ignored on this machine, and capabilities refused as a whole).
AXOLOTL_UNSUPPORTED = {
    "unsloth_lora_mlp": "Unsloth kernels",
}

# from_pretrained's own arguments: they choose files, devices and code, not the model's settings.
LOADER_ARGUMENTS = {"subfolder", "gguf_file", "device_map", "offload_folder", "offload_state_dict", "cache_dir",
                    "revision", "local_files_only", "token", "use_auth_token", "trust_remote_code", "code_revision",
                    "force_download", "proxies", "max_memory", "quantization_config", "dtype", "torch_dtype",
                    "from_tf", "from_flax", "use_safetensors", "weights_only", "key_mapping", "tp_plan", "tp_size",
                    "device_mesh", "adapter_name", "adapter_kwargs", "variant", "low_cpu_mem_usage",
                    "attn_implementation", "output_loading_info", "state_dict", "pretrained_model_name_or_path"}

ONE_CYCLE_ARGS = {"pct_start", "anneal_strategy", "cycle_momentum", "base_momentum", "max_momentum", "div_factor",
                  "final_div_factor", "three_phase"}  # torch.optim.lr_scheduler.OneCycleLR's own arguments

Role = Literal["system", "user", "assistant"]
# The transformers Trainer's optimizer names; some need their own package (bitsandbytes for the 8-bit, paged and
# lion ones, torchao for adamw_torch_8bit/4bit, galore-torch, schedulefree, lomo-optim, apollo-torch).
Optimizer = Literal["adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit",
                    "paged_adamw_32bit", "adamw_torch_8bit", "adamw_torch_4bit", "adamw_anyprecision", "adafactor",
                    "sgd", "adagrad", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "lion_8bit",
                    "lion_32bit", "paged_lion_8bit", "paged_lion_32bit", "ademamix", "ademamix_8bit",
                    "paged_ademamix_8bit", "paged_ademamix_32bit", "schedule_free_adamw", "schedule_free_sgd",
                    "schedule_free_radam", "stable_adamw", "grokadamw", "lomo", "adalomo", "apollo_adamw",
                    "galore_adamw", "galore_adamw_8bit", "galore_adafactor"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    path: str = Field(description="Hub dataset id 'org/name' or a local .json/.jsonl/.parquet/.csv file")
    type: Literal["alpaca", "sharegpt", "messages", "completion", "jeopardy", "preference", "kto"] = Field(
        "alpaca", description="the row format; preference: chosen/rejected pairs (rl: dpo/ipo/orpo/simpo), kto: "
        "prompt/completion/label rows (rl: kto)")
    split: str = "train"
    name: str | None = Field(None, description="dataset config name (Hub datasets)")
    field: str | None = Field(None, description="column with the raw text (completion)")
    field_instruction: str = "instruction"
    field_input: str = "input"
    field_output: str = "output"
    field_system: str = Field("system", description="column whose text is the system message (all formats; a conversation that starts with its own system turn keeps it)")
    field_messages: str | None = Field(None, description="conversation column (sharegpt: conversations, messages: messages)")
    message_property_mappings: dict[Literal["role", "content"], str] | None = None
    roles: dict[Role, list[str]] | None = Field(None, description="extra source role names mapped to system/user/assistant")
    drop_system_message: bool = Field(False, description="leave out system turns (conversation formats)")
    field_thinking: str | None = Field(None, description="the assistant messages' key holding a reasoning trace "
                                       "(default reasoning_content); the trace is trained with its reply")
    template_thinking_key: str | None = Field(None, description="the message key the chat template reads the "
                                              "trace from (default reasoning_content; gpt-oss: thinking)")
    split_thinking: bool = Field(False, description="take a reasoning trace in <think>...</think> (or <reasoning>, "
                                 "<|begin_of_thought|>) out of the reply into the trace")
    data_files: list[str] | None = Field(None, description="the dataset repo's files to read (instead of by split)")
    # preference rows (type: preference / kto): the columns, found by name when not given
    field_prompt: str | None = Field(None, description="preference/kto: prompt column (default: the first of prompt, "
                                     "input, question, instruction)")
    field_chosen: str | None = Field(None, description="preference: chosen column (default chosen, chosen_response)")
    field_rejected: str | None = Field(None, description="preference: rejected column (default rejected, "
                                       "rejected_response)")
    prompt_format: str | None = Field(None, description="preference/kto: the prompt as raw text, {prompt} and {system} "
                                      "filled in, instead of the chat template (Axolotl's user_defined)")
    chosen_format: str | None = Field(None, description="preference: the chosen answer's raw text, {chosen} filled in")
    rejected_format: str | None = Field(None, description="preference: the rejected answer's raw text, {rejected} filled in")

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if "[" in v and not re.fullmatch(r"[\w.-]+\[(-?\d*%?):(-?\d*%?)\]", v):
            raise ValueError(f"'{v}': a slice is written like train[:20%] or train[100:2000]")
        return v

    @field_validator("prompt_format", "chosen_format", "rejected_format")
    @classmethod
    def _formats(cls, v: str | None, info) -> str | None:
        allowed = {"prompt_format": {"prompt", "system"}, "chosen_format": {"chosen"},
                   "rejected_format": {"rejected"}}[info.field_name]
        if v is None:
            return v
        import string

        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(v) if name is not None]
        except ValueError as exc:
            raise ValueError(f"'{v}' is not a format string ({exc}); write {{braces}} around field names, "
                             "{{{{ for a literal brace") from None
        if any(name not in allowed or spec or conv for name, spec, conv in fields):  # no attributes, no widths
            raise ValueError(f"'{v}' may name only {', '.join('{' + a + '}' for a in sorted(allowed))}, "
                             "without a format spec or conversion")
        return v

    @field_validator("data_files", mode="before")
    @classmethod
    def _files(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if v.endswith(DATA_SUFFIXES):
            if ".." in Path(v).parts:
                raise ValueError(f"'{v}' climbs out of the request's folder with '..'; give a path inside it or an absolute path")
            return v
        problem = repo_id_problem(v)
        if problem:
            raise ValueError(problem + f", nor a local data file ({', '.join(DATA_SUFFIXES)})")
        return v

    @property
    def is_local(self) -> bool:
        return self.path.endswith(DATA_SUFFIXES)


class EvalSpec(Strict):
    tasks: list[str] = Field(default_factory=list, description="lm-eval task names (or registry names)")
    limit: int | None = Field(None, ge=1, description="a seeded random subset of this many items per task")
    seed: int = Field(1234, ge=0, lt=2**32)
    max_new_tokens: int = Field(256, ge=1, description="generation budget for generative tasks (gsm8k)")
    during_training_limit: int | None = Field(None, ge=0, description="items per task scored at each evaluation "
                                              "during training (eval_steps/evals_per_epoch; default: limit; 0: none)")


class ContaminationSpec(Strict):
    benchmarks: list[str] = Field(default_factory=list, description="built-in names (gsm8k, mmlu, arc_easy, ...) or NAME=PATH")
    policy: Literal["warn", "block", "drop"] = Field("warn", description="on overlap: warn, stop before training, or drop the rows")
    fields: list[str] | None = Field(None, description="benchmark fields to check (default: every text field)")
    embedding_model: str | None = Field(None, description="local sentence-embedding model folder for paraphrases")

    @field_validator("benchmarks")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        from evals.benchmarks import BUILTIN
        from evals.harness import home_files

        for b in v:
            name, eq, path = b.partition("=")
            if not eq and b not in BUILTIN and not home_files(b):  # or a shipped task over a file the factory writes
                raise ValueError(f"unknown benchmark '{b}'; built in: {', '.join(BUILTIN)}; or NAME=PATH to a file")
            if eq and (not name or not path):
                raise ValueError(f"'{b}': give NAME=PATH")
        return v


class DistributedSpec(Strict):
    """How one job spans processes under `accelerate launch`. Ignored in a single process."""
    strategy: Literal["ddp", "fsdp", "deepspeed"] = "ddp"
    zero_stage: Literal[1, 2, 3] | None = Field(None, description="DeepSpeed ZeRO stage (strategy: deepspeed)")

    @model_validator(mode="after")
    def _stage(self) -> "DistributedSpec":
        if self.strategy == "deepspeed" and self.zero_stage is None:
            raise ValueError("strategy: deepspeed needs zero_stage: 1, 2 or 3")
        if self.strategy != "deepspeed" and self.zero_stage is not None:
            raise ValueError(f"zero_stage applies to strategy: deepspeed, not {self.strategy}")
        return self


class PublishSpec(Strict):
    enabled: bool = True
    private: bool = False
    adapter: bool = Field(False, description="publish the LoRA adapter alone (a PEFT repo) instead of the merged model")
    into_existing: bool = Field(False, description="publish into a repo that exists but was not made by the factory "
                                "(its own files are kept; only files the factory wrote are ever replaced or deleted)")
    writers: list[str] = Field(default_factory=list, description="identities besides yours (hf:<user>, "
                               "discord:<id>, api:<name>) that may publish new revisions of this repo; recorded "
                               "in its manifest")


GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")  # factory/publish/gguf_export.TYPES


class ExportSpec(Strict):
    """Files written beside the merged model and published as a companion repo (<name>-GGUF)."""
    gguf: list[str] = Field(default_factory=list, description="GGUF quantisation types for llama.cpp, Ollama and LM "
                            "Studio: f16, bf16, q8_0 (the factory writes these), q4_0, q4_k_m, q5_k_m, q6_k (llama.cpp's "
                            "quantizer); empty: no export")

    @field_validator("gguf", mode="before")
    @classmethod
    def _gguf(cls, v):
        if v is None or v == []:
            return []
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            raise ValueError("export.gguf is a list of types, e.g. [q8_0, q4_k_m]")
        out = []
        for t in v:
            key = str(t).strip().lower()
            if key not in GGUF_TYPES:
                close = difflib.get_close_matches(key, GGUF_TYPES, n=1)
                raise ValueError(f"GGUF type {t!r} is not one the factory can write"
                                 + (f"; did you mean '{close[0]}'?" if close else "")
                                 + f" (types: {', '.join(GGUF_TYPES)})")
            if key not in out:
                out.append(key)
        return out


class ComputeSpec(Strict):
    """Where the job runs when the operator's backend is Hugging Face Jobs (FACTORY_BACKEND=hf-jobs)."""
    flavor: str | None = Field(None, description="a Jobs hardware flavor (t4-small, a10g-large, h200x8, ...); "
                               "default the operator's FACTORY_JOBS_FLAVOR")
    timeout: str | None = Field(None, description="longest the job may run: seconds, or 90m, 2h, 1d; default "
                                "the operator's FACTORY_JOBS_TIMEOUT")

    @field_validator("flavor")
    @classmethod
    def _flavor(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", v):
            raise ValueError(f"'{v}' is not a Jobs flavor name such as a10g-large or h200x8")
        return v

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v):
        from factory.request.durations import timeout_seconds

        if v is not None:
            try:
                timeout_seconds(str(v))
            except UserError as exc:
                raise ValueError(str(exc)) from None
        return None if v is None else str(v)


class Request(Strict):
    # model
    base_model: str
    revision_of_model: str | None = None
    chat_template: str | None = Field(None, description="built-in name (chatml, llama3, zephyr, mistral, phi3), an "
                                      "Axolotl template name (a model family's: the base tokenizer's own template), "
                                      "tokenizer_default_fallback_NAME, or a Jinja string")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"] = "sdpa"
    special_tokens: dict[Literal["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                                 "mask_token"], str] | None = Field(None, description="set (and add when new) the "
                                                                     "tokenizer's special tokens")
    tokens: list[str] | None = Field(None, description="tokens to add to the vocabulary (embeddings grow; with LoRA "
                                     "the embedding and output layers then train in full)")
    base_config_overrides: dict[str, Any] | None = Field(None, description="overrides of the base model's config "
                                                         "(e.g. output_router_logits: true; Axolotl's model_config)")
    unfrozen_parameters: list[str] | None = Field(None, description="only parameters whose names match one of these "
                                                  "regular expressions train (with an adapter: only its weights inside them)")
    liger_kernel: bool = Field(False, description="Liger kernels when a CUDA device and liger-kernel are present "
                               "(Axolotl's liger_* switches and plugin turn it on); ignored elsewhere")
    cut_cross_entropy: bool = Field(False, description="Cut Cross Entropy's loss (no logits materialised) when a "
                                    "CUDA device and cut-cross-entropy are present and samples are packed (Axolotl's "
                                    "CutCrossEntropyPlugin turns it on); ignored elsewhere")
    flash_attention: bool = False
    # data
    datasets: list[DatasetSpec] = Field(min_length=1)
    val_set_size: float = Field(0.0, ge=0, description="fraction (<1) or number of rows (>=1) held out for eval loss")
    sequence_len: int = Field(2048, ge=16)
    sample_packing: bool = True
    sample_packing_sequentially: bool = Field(False, description="pack samples in their order (each row holds "
                                              "consecutive samples) instead of best fit")
    curriculum_sampling: bool = Field(False, description="train the rows in the data's order, not reshuffled each epoch")
    shuffle_merged_datasets: bool = Field(True, description="shuffle the samples (seeded) before the eval split; "
                                          "false keeps the datasets' order for training")
    excess_length_strategy: Literal["drop", "truncate"] = "drop"
    min_sample_len: int | None = Field(None, ge=1, description="drop samples shorter than this many tokens")
    train_on_inputs: bool = False
    max_malformed_fraction: float = Field(0.05, ge=0, le=1, description="fail when more rows than this are malformed")
    dataset_processes: int | None = Field(None, ge=1, description="processes that tokenise (default: every core)")
    # method
    adapter: Literal["lora", "qlora"] | None = None
    load_in_4bit: bool = False
    load_in_8bit: bool = Field(False, description="LoRA on the base loaded in 8 bits (bitsandbytes LLM.int8); the "
                               "adapter merges into the full-precision base")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] | str | None = Field(None, description="module names, or one regular expression "
                                                         "over the full module names (peft's meaning)")
    lora_target_linear: bool = False
    lora_modules_to_save: list[str] | None = None
    lora_target_parameters: list[str] | None = Field(None, description="parameters (not modules) to adapt, e.g. fused "
                                                     "MoE experts: experts.gate_up_proj (peft's target_parameters)")
    peft_use_rslora: bool = Field(False, description="rank-stabilised LoRA scaling (alpha / sqrt(r))")
    peft_use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA")
    # more of peft's LoraConfig, under Axolotl's names
    lora_fan_in_fan_out: bool = Field(False, description="the layers store weights as (fan_in, fan_out): GPT-2's Conv1D")
    peft_layers_to_transform: list[int] | int | None = Field(None, description="adapt only these layer indices")
    peft_layers_pattern: list[str] | None = Field(None, description="the name of the layer list that "
                                                  "peft_layers_to_transform indexes (default: peft finds it)")
    lora_rank_pattern: dict[str, int] | None = Field(None, description="another r for modules matching a name or "
                                                     "regular expression")
    lora_alpha_pattern: dict[str, int] | None = Field(None, description="another alpha for modules matching a name "
                                                      "or regular expression")
    peft_init_lora_weights: bool | Literal["gaussian", "eva", "olora", "pissa", "pissa_niter_4", "pissa_niter_16",
                                           "corda", "loftq", "orthogonal"] | None = Field(
        None, description="how LoRA's matrices start (peft's init_lora_weights; default: B = 0)")
    peft_trainable_token_indices: list[int] | dict[str, list[int]] | None = Field(
        None, description="train only these rows of the embedding (new tokens) instead of all of it")
    peft_ensure_weight_tying: bool = Field(False, description="keep tied embedding and LM head tied in the adapter")
    peft_autocast_adapter_dtype: bool = Field(True, description="keep the adapter's weights in float32 under "
                                              "bf16/fp16 bases (peft's default)")
    loraplus_lr_ratio: float | None = Field(None, gt=0, description="LoRA+: B matrices learn this many times faster "
                                            "than A (the paper suggests 16)")
    loraplus_lr_embedding: float | None = Field(None, gt=0, description="LoRA+: the learning rate of embedding "
                                                "adapters (default 1e-6)")
    bnb_config_kwargs: dict[str, Any] | None = Field(None, description="QLoRA: more BitsAndBytesConfig arguments")
    # preference training (Axolotl's keys; the defaults are TRL's, as Axolotl passes them through)
    rl: Literal["dpo", "ipo", "orpo", "simpo", "kto"] | None = Field(
        None, description="train on preferences instead of imitation: dpo, ipo (DPO with the IPO loss), orpo, simpo, "
        "kto; datasets then hold chosen/rejected pairs (type: preference) or labelled completions (type: kto)")
    rl_beta: float | None = Field(None, gt=0, description="DPO/IPO/KTO/SimPO beta (default 0.1; SimPO's paper uses 2.0)")
    dpo_loss_type: list[Literal["sigmoid", "hinge", "ipo", "robust", "bco_pair", "nca_pair", "sigmoid_norm"]] | None = (
        Field(None, min_length=1, description="DPO losses, summed with dpo_loss_weights (default [sigmoid])"))
    dpo_loss_weights: list[float] | None = Field(None, min_length=1, description="one weight per dpo_loss_type")
    dpo_label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="robust DPO: the share of labels assumed flipped")
    orpo_alpha: float | None = Field(None, gt=0, description="ORPO: weight of the odds-ratio term (TRL's beta; "
                                     "default 0.1)")
    cpo_alpha: float = Field(1.0, ge=0, description="SimPO: weight of the chosen answers' NLL term (TRL's default 1.0; "
                             "0 is the SimPO paper's)")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO: target reward margin")
    kto_desirable_weight: float = Field(1.0, gt=0, description="KTO: weight of desirable completions' loss")
    kto_undesirable_weight: float = Field(1.0, gt=0, description="KTO: weight of undesirable completions' loss")
    precompute_ref_log_probs: bool | None = Field(None, description="accepted; the factory always computes the "
                                                  "reference log-probs once, before training (same values)")
    # optimisation
    micro_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    num_epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts",
                          "polynomial", "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay", "one_cycle",
                          "rex"] = Field("cosine", description="transformers' schedules, and Axolotl's one_cycle "
                                         "(torch's OneCycleLR) and rex (reflected exponential)")
    lr_scheduler_kwargs: dict[str, Any] | None = Field(None, description="the schedule's own arguments (num_cycles, "
                                                       "power, lr_end, min_lr_rate, num_decay_steps, ...)")
    cosine_min_lr_ratio: float | None = Field(None, ge=0, le=1, description="cosine (and rex) decays to this fraction "
                                              "of learning_rate instead of 0")
    cosine_constant_lr_ratio: float | None = Field(None, ge=0, le=1, description="with cosine_min_lr_ratio: reach "
                                                   "the floor at this fraction of the steps and stay there")
    lisa_n_layers: int | None = Field(None, ge=1, description="LISA: train only this many randomly chosen decoder "
                                      "layers at a time (full finetune); the rest of the model trains throughout")
    lisa_step_interval: int = Field(20, ge=1, description="LISA: choose new layers every this many steps")
    lisa_layers_attribute: str = Field("model.layers", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
                                       description="LISA: where the model keeps its decoder layers")
    lr_quadratic_warmup: bool = Field(False, description="warm the learning rate up along (step/warmup)^2 "
                                      "instead of a straight line (lr_scheduler: cosine)")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0)
    optimizer: Optimizer = Field("adamw_torch", description="the transformers Trainer's optimizer names (adamw_bnb_8bit "
                                 "and the paged ones need bitsandbytes)")
    optim_args: str | dict[str, Any] | None = Field(None, description="the optimizer's own arguments "
                                                   "(key=value,... or a mapping)")
    optim_target_modules: list[str] | Literal["all_linear"] | None = Field(
        None, description="the modules GaLore/APOLLO optimizers project (galore_*, apollo_adamw need it)")
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    bf16: bool | Literal["auto"] = "auto"
    fp16: bool = False
    weights_dtype: Literal["float16", "bfloat16"] | None = Field(
        None, description="load and train the weights in this dtype, without mixed precision (Axolotl's float16: "
        "true or bfloat16: true with fp16/bf16 false); the optimizer then updates half-precision weights")
    tf32: bool = Field(False, description="TF32 matmuls on Ampere+ GPUs (ignored elsewhere)")
    gradient_checkpointing: bool | Literal["offload"] = False
    gradient_checkpointing_kwargs: dict[str, Any] | None = Field(None, description="passed to the Trainer (use_reentrant: false ...)")
    seed: int = Field(42, ge=0, lt=2**32, description="0 to 2**32-1 (numpy's and torch's seeds)")
    logging_steps: int = Field(10, ge=1)
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps (default: once per epoch)")
    saves_per_epoch: int | None = Field(None, ge=1, description="checkpoints per epoch (instead of save_steps)")
    save_total_limit: int | None = Field(2, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="eval loss every N steps (needs val_set_size)")
    evals_per_epoch: int | None = Field(None, ge=1, description="eval loss this many times per epoch (instead of eval_steps)")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after this many evaluations without a "
                                                "better metric_for_best_model (keeps the best checkpoint)")
    load_best_model_at_end: bool = Field(False, description="keep the checkpoint with the best metric_for_best_model "
                                         "(needs eval_steps or evals_per_epoch)")
    metric_for_best_model: str = Field("eval_loss", description="eval_loss, or an evals.tasks name: its score at each "
                                       "evaluation during training")
    greater_is_better: bool | None = Field(None, description="default: false for eval_loss, true for a task's score")
    loss_watchdog_threshold: float | None = Field(None, gt=0, description="stop the run when the training loss stays "
                                                  "above this for loss_watchdog_patience logged steps")
    loss_watchdog_patience: int = Field(3, ge=1)
    resume_from_checkpoint: str | None = Field(None, description="a checkpoint folder to resume from (operator's CLI)")
    lora_model_dir: str | None = Field(None, description="an existing LoRA adapter folder to continue training")
    dataset_prepared_path: str | None = Field(None, description="folder for the tokenised-data cache "
                                              "(default $FACTORY_HOME/cache/encoded)")
    trust_remote_code: bool = Field(False, description="run the base model repo's own code (operator's CLI only; "
                                    "front doors refuse it)")
    # tracking (when the package is installed; the Trainer reports to it)
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_name: str | None = None
    wandb_run_id: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    wandb_watch: Literal["gradients", "parameters", "all", "false"] | None = None
    wandb_log_model: Literal["end", "checkpoint", "false"] | None = None
    use_trackio: bool = False
    trackio_project_name: str | None = None
    trackio_run_name: str | None = None
    trackio_space_id: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_name: str | None = None
    mlflow_run_name: str | None = None
    use_tensorboard: bool = False
    # output
    output_dir: str | None = Field(None, description="run folder (default: $FACTORY_HOME/runs/<job-id>)")
    hub_model_id: str | None = Field(None, description="'org/name' to publish the merged model as")
    hub_endpoint: str | None = Field(None, description="one of the operator's Hub endpoints (HF_ENDPOINT, "
                                     "FACTORY_HUB_ENDPOINTS); default HF_ENDPOINT or huggingface.co")
    evals: EvalSpec = Field(default_factory=EvalSpec)
    contamination: ContaminationSpec = Field(default_factory=ContaminationSpec)
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    publish: PublishSpec = Field(default_factory=PublishSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)

    @field_validator("base_model")
    @classmethod
    def _base_model(cls, v: str) -> str:
        if looks_like_repo_id(v):
            return v
        if ".." in Path(v).parts:
            raise ValueError(f"'{v}' contains '..'; give a Hub id 'org/name' or a model folder")
        if v.lower().endswith(".gguf") and Path(v).expanduser().is_file():
            return v  # a GGUF file: dequantised into a model folder on first use
        if not (Path(v).expanduser() / "config.json").is_file():
            problem = repo_id_problem(v)
            raise ValueError(f"{problem}, nor a local model folder with a config.json, nor a .gguf file")
        return v

    @field_validator("base_config_overrides")
    @classmethod
    def _overrides(cls, v: dict | None) -> dict | None:
        loader = sorted(set(v or {}) & LOADER_ARGUMENTS)
        if loader:
            raise ValueError(f"{', '.join(loader)}: an argument of the model loader, not a setting of the model's config; "
                             "base_config_overrides only changes config settings (output_router_logits, rope_theta ...)")
        return v

    @field_validator("chat_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        from factory.request.axolotl import known_template_name

        if v is None or "{{" in v or "{%" in v or v in ("chatml", "llama3", "zephyr", "phi3", "mistral") or known_template_name(v):
            return v
        close = difflib.get_close_matches(v, ["chatml", "llama3", "zephyr", "phi3", "mistral", "tokenizer_default"], n=1)
        raise ValueError(f"'{v}' is not a template name the factory knows"
                         + (f"; did you mean '{close[0]}'?" if close else "; give a Jinja string instead"))

    @field_validator("hub_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        """The operator's endpoints only: a request never chooses where a token is sent."""
        from factory.hub.credentials import check_endpoint

        if v is not None:
            try:
                return check_endpoint(v)
            except UserError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("revision_of_model")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        if v is not None and (problem := revision_problem(v)):
            raise ValueError(problem)
        return v

    @field_validator("hub_model_id")
    @classmethod
    def _hub_model_id(cls, v: str | None) -> str | None:
        if v is not None and (problem := repo_id_problem(v)):
            raise ValueError(problem)
        return v

    @model_validator(mode="before")
    @classmethod
    def _preference_held_out(cls, data):
        """Preference runs are judged on held-out pairs: without a val_set_size, 10% are held out."""
        if isinstance(data, dict) and data.get("rl") and "val_set_size" not in data:
            data = {**data, "val_set_size": 0.1}
        return data

    @model_validator(mode="after")
    def _combinations(self) -> "Request":
        if self.adapter == "qlora" and not self.load_in_4bit:
            raise ValueError("adapter: qlora needs load_in_4bit: true (QLoRA trains LoRA on a 4-bit base)")
        if self.cosine_min_lr_ratio is not None and self.lr_scheduler not in ("cosine", "rex"):
            raise ValueError("cosine_min_lr_ratio needs lr_scheduler: cosine (or rex)")
        if self.cosine_constant_lr_ratio is not None and (self.cosine_min_lr_ratio is None or self.lr_scheduler != "cosine"):
            raise ValueError("cosine_constant_lr_ratio needs lr_scheduler: cosine and cosine_min_lr_ratio (the floor "
                             "it holds)")
        if self.lr_scheduler == "one_cycle" and set(self.lr_scheduler_kwargs or {}) - ONE_CYCLE_ARGS:
            raise ValueError(f"lr_scheduler_kwargs for one_cycle may set {', '.join(sorted(ONE_CYCLE_ARGS))} "
                             f"(torch's OneCycleLR), not {', '.join(sorted(set(self.lr_scheduler_kwargs) - ONE_CYCLE_ARGS))}")
        if self.lr_scheduler == "rex" and self.lr_scheduler_kwargs:
            raise ValueError("lr_scheduler: rex takes no lr_scheduler_kwargs (its floor is cosine_min_lr_ratio)")
        if self.optimizer.startswith(("galore", "apollo")) and not self.optim_target_modules:
            raise ValueError(f"optimizer: {self.optimizer} projects the gradients of the modules optim_target_modules "
                             "names: set it (e.g. [attn, mlp] or all_linear)")
        peft_options = [k for k in ("lora_fan_in_fan_out", "peft_layers_to_transform", "peft_layers_pattern",
                                    "lora_rank_pattern", "lora_alpha_pattern", "peft_init_lora_weights",
                                    "peft_trainable_token_indices", "peft_ensure_weight_tying", "loraplus_lr_ratio",
                                    "loraplus_lr_embedding") if getattr(self, k) not in (None, False, {}, [])]
        if peft_options and not self.adapter:
            raise ValueError(f"{', '.join(peft_options)} set{'s' if len(peft_options) == 1 else ''} up a LoRA adapter: "
                             "add adapter: lora (or qlora), or remove "
                             f"{'it' if len(peft_options) == 1 else 'them'}")
        if self.loraplus_lr_embedding is not None and self.loraplus_lr_ratio is None:
            raise ValueError("loraplus_lr_embedding is part of LoRA+: set loraplus_lr_ratio too")
        if self.lisa_n_layers and self.adapter:
            raise ValueError("lisa_n_layers is a full finetune (it switches which layers train); remove `adapter`")
        if self.lr_quadratic_warmup and (self.lr_scheduler != "cosine" or self.cosine_min_lr_ratio is not None):
            raise ValueError("lr_quadratic_warmup needs lr_scheduler: cosine (without cosine_min_lr_ratio)")
        if self.load_in_8bit and (self.adapter != "lora" or self.load_in_4bit):
            raise ValueError("load_in_8bit: true needs adapter: lora (and not load_in_4bit: that is adapter: qlora)")
        if self.load_in_4bit and self.adapter != "qlora":
            raise ValueError("load_in_4bit: true needs adapter: qlora (4-bit weights cannot be trained directly)")
        if self.adapter and not (self.lora_target_modules or self.lora_target_linear or self.lora_target_parameters):
            raise ValueError("an adapter needs lora_target_modules (e.g. [q_proj, v_proj]) or lora_target_linear: true")
        if self.publish.adapter and not self.adapter:
            raise ValueError("publish.adapter: true needs an adapter (adapter: lora or qlora); a full finetune has none")
        if self.export.gguf and self.hub_model_id and (problem := repo_id_problem(self.hub_model_id + "-GGUF")):
            raise ValueError(f"export.gguf publishes {self.hub_model_id}-GGUF beside the model: {problem}")
        if self.export.gguf and self.publish.adapter:
            raise ValueError("export.gguf converts the merged model, and publish.adapter: true publishes no merged "
                             "model; drop one of them")
        if self.bf16 is True and self.fp16:
            raise ValueError("bf16 and fp16 are both true; choose one")
        if self.weights_dtype and (self.bf16 is True or self.fp16):
            raise ValueError("weights_dtype trains the weights in that dtype without mixed precision; set bf16: false "
                             "and fp16: false with it")
        if self.weights_dtype and self.adapter == "qlora":
            raise ValueError("weights_dtype does not apply to adapter: qlora (its base is 4-bit)")
        self._check_best_metric()
        self._check_preference()
        return self

    def _check_best_metric(self) -> None:
        metric = self.metric_for_best_model.removeprefix("eval_")
        metric = None if metric == "loss" else metric
        if metric is not None and metric not in self.evals.tasks:
            raise ValueError(f"metric_for_best_model '{self.metric_for_best_model}' is neither eval_loss nor one of "
                             f"evals.tasks ({', '.join(self.evals.tasks) or 'none'})")
        if metric is not None and self.rl:
            raise ValueError(f"metric_for_best_model '{metric}': held-out task scores during training are for "
                             "supervised runs; a preference run keeps the best by eval_loss")
        if metric is not None and self.evals.during_training_limit == 0:
            raise ValueError(f"metric_for_best_model '{metric}' is scored during training, and "
                             "evals.during_training_limit: 0 turns that off")
        if (self.load_best_model_at_end or metric is not None) and not (self.eval_steps or self.evals_per_epoch
                                                                        or self.early_stopping_patience):
            raise ValueError("load_best_model_at_end and metric_for_best_model choose among evaluations during "
                             "training: set eval_steps or evals_per_epoch (and val_set_size)")
        if (self.load_best_model_at_end or metric is not None) and not self.val_set_size:
            raise ValueError("evaluations during training need an eval split: set val_set_size (e.g. 0.05)")

    @property
    def best_metric(self) -> tuple[str, bool]:
        """The Trainer's metric name for the kept checkpoint, and whether greater is better."""
        key = "eval_" + self.metric_for_best_model.removeprefix("eval_")  # a task's score is logged as eval_<task>
        greater = self.greater_is_better if self.greater_is_better is not None else key != "eval_loss"
        return key, greater

    def _check_preference(self) -> None:
        kinds = {d.type for d in self.datasets}
        if not self.rl:
            if kinds & {"preference", "kto"}:
                raise ValueError("datasets of type preference or kto need rl: dpo, ipo, orpo, simpo or kto")
            for key in ("rl_beta", "dpo_loss_type", "orpo_alpha", "dpo_loss_weights"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} applies to preference training; add rl: (dpo, ipo, orpo, simpo or kto)")
            return
        allowed = {"preference", "kto"} if self.rl == "kto" else {"preference"}
        wrong = sorted(kinds - allowed)
        if wrong:
            what = "pairs (type: preference) or labelled completions (type: kto)" if self.rl == "kto" else \
                "chosen/rejected pairs (type: preference; KTO's unpaired rows need rl: kto)"
            raise ValueError(f"rl: {self.rl} trains on {what}, not type: {', '.join(wrong)}")
        if self.rl == "kto" and self.micro_batch_size < 2:
            raise ValueError("rl: kto needs a micro_batch_size of at least 2: its KL estimate pairs each prompt with "
                             "another completion of the same micro-batch (TRL's rule)")
        if self.dpo_loss_type and self.rl != "dpo":
            raise ValueError(f"dpo_loss_type applies to rl: dpo (rl: {self.rl} has its own loss)")
        if self.dpo_loss_weights and len(self.dpo_loss_weights) != len(self.dpo_loss_type or ["sigmoid"]):
            raise ValueError("dpo_loss_weights needs one weight per dpo_loss_type")
        if self.orpo_alpha is not None and self.rl != "orpo":
            raise ValueError("orpo_alpha applies to rl: orpo; the other methods take rl_beta")
        if self.rl == "orpo" and self.rl_beta is not None:
            raise ValueError("rl: orpo weighs its odds-ratio term with orpo_alpha, not rl_beta")
        if self.dpo_label_smoothing and "robust" not in (self.dpo_loss_type or []):
            raise ValueError("dpo_label_smoothing applies to dpo_loss_type: [robust]")
        if self.lisa_n_layers or self.unfrozen_parameters:
            raise ValueError("lisa_n_layers and unfrozen_parameters are for supervised finetuning; leave them out with rl:")

    @property
    def beta(self) -> float:
        """The method's temperature: rl_beta, or orpo_alpha for ORPO (TRL's mapping), default 0.1."""
        value = self.orpo_alpha if self.rl == "orpo" else self.rl_beta
        return 0.1 if value is None else value

    _compat: Any = PrivateAttr(default=None)  # factory.request.axolotl.Compat: the Axolotl keys taken out before validation

    @property
    def compat(self):
        from factory.request.axolotl import Compat

        return self._compat or Compat()

    @property
    def attention(self) -> str:
        return "flash_attention_2" if self.flash_attention else self.attn_implementation

    def sanitized_yaml(self) -> str:
        """The request as YAML, defaults included. It holds no secrets: the schema has no secret fields."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ---- loading with useful errors ----------------------------------------------------------------

def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path (tuple of keys/indices) in the YAML document to its 1-based line.

    Each node is visited once: an alias points back at a node already seen, so a "billion laughs" document
    (nine aliases of nine aliases ...) costs its size here, not its expansion."""
    lines: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: tuple) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*path, k.value)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of loc (for 'did you mean' suggestions)."""
    model: type[BaseModel] | None = Request
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ()) or (ann,)
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value) -> str:
    """A value as the user wrote it, cut short: nested aliases can make one value billions of items long."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 2, 4, 4, 80, 80
    return short.repr(value)


def _explain(err: dict, lines: dict[tuple, int], source: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = loc[-1] if loc else ""
    line = lines.get(loc) or lines.get(loc[:-1]) if loc else None
    where = f"{source}:{line}" if line else source
    path = _format_loc(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        if key in AXOLOTL_UNSUPPORTED:
            return f"{where}: `{path}` is an Axolotl option this factory does not support yet ({AXOLOTL_UNSUPPORTED[key]}); remove it"
        owner = _model_at(loc)
        names = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
        from factory.request.axolotl_keys import VERSION

        hint = f"; did you mean `{close[0]}`?" if close else "; see `factory validate --keys` for the accepted keys"
        return (f"{where}: unknown key `{path}`{hint} (it is in neither the factory's schema nor Axolotl {VERSION}'s: "
                f"a config written for a newer Axolotl release than {VERSION} may use keys the factory does not know yet)")
    if err["type"] == "missing":
        return f"{where}: `{path}` is required"
    msg = err["msg"].removeprefix("Value error, ")
    shown = "" if err["type"].startswith("value_error") else f" (got {_short(err.get('input'))})"
    return f"{where}: `{path}`: {msg}{shown}"


def parse_request(data: Any, source: str = "<request>", text: str | None = None) -> Request:
    """Validate a dict into a Request or raise UserError listing every problem."""
    if data is None:
        raise UserError(f"{source}: the request is empty; start from `factory validate --keys` or an examples/ file")
    if not isinstance(data, dict):
        raise UserError(f"{source}: a request is a YAML mapping of keys to values (base_model: ..., datasets: ...), "
                        f"got {'a list' if isinstance(data, list) else type(data).__name__}")
    from factory.request.axolotl import normalise

    data, compat = normalise(data, set(Request.model_fields), set(DatasetSpec.model_fields))
    if compat.refused:
        raise UserError(f"{source}: this config needs what the factory does not do:\n  " + "\n  ".join(
            f"{cap} ({', '.join(keys)})" for cap, keys in compat.refused.items()))
    try:
        request = Request.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text) if text else {}
        errors = exc.errors()
        problems = [_explain(e, lines, source) for e in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - MAX_PROBLEMS:,} more")
        raise UserError("invalid request:\n  " + "\n  ".join(problems)) from None
    request._compat = compat
    return request


def load_request(path: str | Path) -> Request:
    """Read and validate a request YAML file; local dataset paths resolve against its folder."""
    from factory.base.textfiles import read_text

    path = Path(path)
    text, _ = read_text(path, max_bytes=MAX_REQUEST_BYTES, what="request file")
    return loads_request(text, str(path), folder=path.parent)


def loads_request(text: str, source: str = "<request>", folder: Path | None = None) -> Request:
    """Validate request YAML text (from a file, a form or a job row)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if isinstance(data, dict) and folder is not None:
        data = _resolve_local_paths(data, folder)
    return parse_request(data, source, text)


def _resolve_local_paths(data: dict, folder: Path) -> dict:
    cont = data.get("contamination")
    if isinstance(cont, dict) and isinstance(cont.get("benchmarks"), list):
        def absolute(b):
            name, eq, path = b.partition("=") if isinstance(b, str) else ("", "", "")
            if (eq and path and not path.startswith("{") and not Path(path).expanduser().is_absolute()
                    and ".." not in Path(path).parts):
                return f"{name}={(folder / path).resolve()}"
            return b
        data = {**data, "contamination": {**cont, "benchmarks": [absolute(b) for b in cont["benchmarks"]]}}
    for key in ("output_dir", "dataset_prepared_path", "lora_model_dir", "resume_from_checkpoint"):
        value = data.get(key)  # a relative folder is the request's folder's, like a dataset file
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute() and ".." not in Path(value).parts:
            data = {**data, key: str((folder / value).resolve())}
    datasets = data.get("datasets")
    if not isinstance(datasets, list):
        return data
    fixed = []
    for d in datasets:
        if isinstance(d, dict) and isinstance(d.get("path"), str) and d["path"].endswith(DATA_SUFFIXES):
            p = Path(d["path"]).expanduser()
            if not p.is_absolute() and ".." not in p.parts:
                d = {**d, "path": str((folder / p).resolve())}
        fixed.append(d)
    return {**data, "datasets": fixed}


def accepted_keys() -> str:
    """Every key of the request with its type and default, for `factory validate --keys`."""
    out = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            args = getattr(ann, "__args__", ()) or (ann,)
            sub = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if sub is not None:
                walk(sub, f"{prefix}{name}{'[]' if 'list' in str(ann) else ''}.")
                continue
            default = "required" if f.is_required() else f"default {f.get_default(call_default_factory=True)!r}"
            desc = f"  {f.description}" if f.description else ""
            out.append(f"{prefix}{name}: {getattr(ann, '__name__', None) or str(ann).replace('typing.', '')} ({default}){desc}")

    walk(Request, "")
    return "\n".join(out)
