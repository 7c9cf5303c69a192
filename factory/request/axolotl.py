"""Axolotl configs as requests: which of Axolotl's keys ask for nothing, which are ignored on this machine,
and which need a capability the factory does not have. Applied to the raw YAML dict before the typed
Request sees it, so the Request stays strict: an unknown key is still an error with a 'did you mean'.

Every key this lets through without a Request field is listed back by `factory validate` ("accepted,
no effect" / "ignored on this machine"), so nothing is dropped silently. The tables are axolotl_tables.py;
a key in neither them nor the Request is unknown, and the error says which Axolotl release the factory knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.request import axolotl_keys
from factory.request.axolotl_tables import (ASSISTANT_ROLES, CAPABILITY_OF, CLASS_KEYS, DATASET_CAPABILITY_OF,
                                            DATASET_SPEED_ONLY, DATASET_TYPES, DPO_SPEED_ONLY,
                                            KTO_STYLES, LAUNCHER, LOGGING_ONLY, PAIR_STYLES, PARALLELISM, PREFERENCE,
                                            RENAMED, RL_REFUSED, SAME_AS_FACTORY, SPEED_ONLY, TEMPLATE_ALIASES,
                                            TEMPLATE_FAMILIES, VISION, ZERO_IS_OFF)


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
    return value is None or value is False or value == "" or value == [] or value == {} or (
        isinstance(value, (int, float)) and value == 0)


def _classify(key: str, value, compat: Compat, model_fields: set[str]) -> bool:
    """True when the key is taken out of the dict (handled here); False leaves it to the Request."""
    if key == "rl" and isinstance(value, str) and value in RL_REFUSED:
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
    if key in SAME_AS_FACTORY and key != "hub_strategy":
        compat.refuse(f"{key} other than {' or '.join(map(str, SAME_AS_FACTORY[key]))} (what the factory does)",
                      f"{key}: {value!r}")
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
    if key == "dp_shard_size" and (value == 1 or asks_for_nothing(value)):
        compat.no_effect.append(f"{key}: {value}")
        return True
    if key in PARALLELISM:
        (compat.no_effect if asks_for_nothing(value) or value == 1 else compat.ignored_here).append(key)
        return True
    if key.startswith(("wandb_", "mlflow_", "trackio_", "comet_")) and asks_for_nothing(value):
        compat.no_effect.append(key)
        return True
    if key in axolotl_keys.TOP or key in axolotl_keys.PLUGIN:  # Axolotl's key, with a value no rule above takes
        compat.refuse("values of Axolotl keys the factory does not take", f"{key}: {value!r}")
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
    if "fsdp_final_state_dict_type" in data:  # the factory always saves one full safetensors folder at the end
        compat.no_effect.append(f"fsdp_final_state_dict_type: {data.pop('fsdp_final_state_dict_type')}")
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


def _relative(data: dict, compat: Compat) -> None:
    """Axolotl keys whose meaning depends on another key: no effect where they agree with it, translated or
    refused where they do not."""
    if "chat_template_jinja" in data:  # Axolotl: chat_template: jinja, and the Jinja string in this key
        jinja = data.pop("chat_template_jinja")
        if asks_for_nothing(jinja):
            compat.no_effect.append("chat_template_jinja")
        elif data.get("chat_template") in (None, "jinja", "tokenizer_default"):
            data["chat_template"] = jinja
            compat.translated.append("chat_template_jinja -> chat_template (the Jinja string)")
        else:
            compat.refuse("two chat templates at once (chat_template names one, chat_template_jinja gives another)",
                          f"chat_template: {data['chat_template']}, chat_template_jinja")
    if "eval_strategy" in data:  # the Trainer's key (and evaluation_strategy, its older name)
        value = data.pop("eval_strategy")
        value = "no" if value is False else value  # YAML reads a bare `no` as false
        cadence = data.get("eval_steps") or data.get("evals_per_epoch")
        if asks_for_nothing(value) or value == "steps" or (value == "no" and not cadence):
            compat.no_effect.append(f"eval_strategy: {value}")
        elif value == "epoch" and not cadence:
            data["evals_per_epoch"] = 1
            compat.translated.append("eval_strategy: epoch -> evals_per_epoch: 1")
        else:
            compat.refuse("an eval_strategy that contradicts eval_steps/evals_per_epoch", f"eval_strategy: {value}")
    if "float32" in data:  # the dtype the weights load in: float32 is the factory's unless bf16/fp16 train
        value = data.pop("float32")
        if asks_for_nothing(value) or not (data.get("bf16") is True or data.get("fp16") is True):
            compat.no_effect.append(f"float32: {value}")
        else:
            compat.refuse("loading the weights in another dtype than training uses", "float32: true with bf16/fp16")
    for key, same_as in (("base_model_config", "base_model"), ("eval_sequence_len", "sequence_len")):
        if key in data:
            value = data.pop(key)
            if asks_for_nothing(value) or value == data.get(same_as):
                compat.no_effect.append(f"{key} (the same as {same_as})")
            else:
                compat.refuse({"base_model_config": "a model config from another repo than the weights",
                               "eval_sequence_len": "evaluating at another sequence length than training"}[key],
                              f"{key}: {value}")


def _kernels(data: dict, compat: Compat) -> None:
    """Liger (by plugin or liger_* switch) becomes liger_kernel, the Cut Cross Entropy plugin (or key)
    cut_cross_entropy: each applied where CUDA and its package are present."""
    plugins = data.get("plugins") or []
    plugins = plugins if isinstance(plugins, list) else [plugins]
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
        elif key in ("step_separator", "train_on_last_step_only", "max_completion_length"):
            compat.refuse(PREFERENCE, where)
        elif key == "roles_to_train":
            if asks_for_nothing(value) or (isinstance(value, list) and set(map(str, value)) <= ASSISTANT_ROLES):
                compat.no_effect.append(where)
            else:
                compat.refuse("training on turns of other roles than the assistant's", f"{where}: {value}")
        elif key in ("train_on_eos", "train_on_eot"):
            if value in (None, "turn"):
                compat.no_effect.append(where)  # the factory trains each assistant turn's end token
            else:
                compat.refuse(f"{key} other than 'turn'", f"{where}: {value}")
        elif key in ("chat_template", "chat_template_jinja"):
            top_template = top.get("chat_template")
            if asks_for_nothing(value) or value == top_template or (value == "tokenizer_default" and not top_template):
                compat.no_effect.append(f"{where} (the request's chat template)")
            else:
                compat.refuse("a chat template per dataset (set chat_template once, at the top)", where)
        elif key in DATASET_CAPABILITY_OF:
            if asks_for_nothing(value):
                compat.no_effect.append(where)
            else:
                compat.refuse(DATASET_CAPABILITY_OF[key], where)
        elif key in DATASET_SPEED_ONLY:
            (compat.no_effect if asks_for_nothing(value) else compat.ignored_here).append(where)
        elif key == "train_on_inputs":
            if value == top.get("train_on_inputs", False):
                compat.no_effect.append(where)
            else:
                compat.refuse("train_on_inputs per dataset (set it once, at the top)", where)
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
        value = "no" if value is False else value
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
    attn = data.get("attn_implementation")
    if attn == "xformers":
        data["attn_implementation"] = "sdpa"
        compat.translated.append("attn_implementation: xformers -> sdpa (the same attention; xformers is not used)")
    elif isinstance(attn, str) and "/" in attn:  # a kernel from the Hub: code the request would choose
        data["attn_implementation"] = "sdpa"
        compat.translated.append(f"attn_implementation: {attn} -> sdpa (the same attention; the factory loads no "
                                 "attention kernel named by a request)")
    _relative(data, compat)
    out = {}
    for key, value in data.items():
        if key in model_fields and (value is None or (key in ZERO_IS_OFF and value == 0 and value is not False)):
            compat.no_effect.append(f"{key}: {'null' if value is None else value}")  # Axolotl's "unset" or "none"
            continue
        if not isinstance(key, str) or not _classify(key, value, compat, model_fields):
            out[key] = value
            if key in model_fields:
                compat.implemented.append(key)
    return out, compat
