"""Requests from strangers: what a request from a front door (the Space, the Discord bot) must pass.

On top of everything every request passes (schema, lint, the operator's endpoints and grants):
- its YAML is small, flat and plain (yaml_guard), and a Jinja chat_template renders in a sandbox;
- the base model and every dataset are Hub repo ids: no local file, folder or URL of any spelling;
- no key that names a path on the worker or runs code there;
- the model is published into the submitter's own namespace (or FACTORY_ALLOWED_NAMESPACES);
- the operator's bounds (FACTORY_REMOTE_LIMITS, a YAML file; defaults below) on base models,
  adapters, sequence length, epochs, steps, LoRA rank, estimated training tokens and eval items.

Each refusal is a UserError that starts with the rule's id, so a front door can show it as is.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from factory.request.config import Request
from factory.base.errors import UserError
from factory.base.ids import looks_like_repo_id, repo_id_problem

# Axolotl keys that are no request field but name a file on the worker: refused before anything reads them.
AXOLOTL_WORKER_FILES = {"deepspeed": "names a DeepSpeed JSON file on the worker",
                        "chat_template_jinja": "names a template file on the worker",
                        "tokenizer_config": "names a file on the worker",
                        "pretraining_dataset": "streams data from a path or URL"}


@dataclass(frozen=True)
class RemoteLimits:
    base_models: tuple[str, ...] = ("*",)
    adapters: tuple[str, ...] = ("lora", "qlora")  # a full finetune from a stranger costs too much by default
    max_sequence_len: int = 4096
    max_epochs: float = 3.0
    max_steps: int = 5000
    max_lora_r: int = 64
    max_training_tokens: int = 50_000_000
    max_eval_items: int = 500
    flavors: tuple[str, ...] = ("cpu-*", "t4-*", "l4x1", "a10g-small", "a10g-large")  # Hugging Face Jobs: one GPU
    max_timeout: str = "6h"
    max_micro_batch_size: int = 64
    max_batch_tokens: int = 1_048_576  # micro_batch_size x gradient_accumulation_steps x sequence_len, per step
    max_new_tokens: int = 1024  # evals.max_new_tokens: generation budget per eval item
    max_eval_tasks: int = 8
    max_checkpoints: int = 20  # saves over the whole run (each is a copy of the trainable weights and optimizer)
    max_evaluations: int = 50  # eval-loss passes over the whole run
    max_training_eval_items: int = 2000  # held-out task items scored at those evaluations, all tasks together
    max_datasets: int = 8
    max_added_tokens: int = 64
    max_token_chars: int = 64
    max_gguf_files: int = 3  # export.gguf: each type is a whole copy of the model on disk and in the upload
    gguf_types: tuple[str, ...] = ("f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")  # f32: operator only

    @classmethod
    def load(cls) -> "RemoteLimits":
        path = os.environ.get("FACTORY_REMOTE_LIMITS")
        if not path:
            return cls()
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"FACTORY_REMOTE_LIMITS={path}: cannot be read ({exc})") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise UserError(f"FACTORY_REMOTE_LIMITS={path}: unknown keys {sorted(set(data) - known)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def check_raw(data: object, source: str) -> None:
    """Rules on the request as written, before the schema reads anything: operator-only keys by name (the
    allow-list's, Axolotl's spellings included), Axolotl keys naming files on the worker, and base model and
    dataset paths that are not Hub repo ids (refused before a file system is asked whether they exist)."""
    if not isinstance(data, dict):
        return
    from factory.admission.allow_list import OPERATOR
    from factory.request.axolotl import asks_for_nothing
    from factory.request.axolotl_tables import RENAMED

    def refuse(key: str, why: str):
        raise UserError(f"{source}: operator-only: `{key}` {why}; requests from front doors may not set it")

    for raw_key, value in data.items():
        if asks_for_nothing(value):  # Axolotl configs carry many of these empty
            continue
        key = RENAMED.get(raw_key, raw_key)
        if key in AXOLOTL_WORKER_FILES:
            refuse(key, AXOLOTL_WORKER_FILES[key])
        if key in OPERATOR:
            refuse(key if key == raw_key else f"{raw_key}` (`{key}", OPERATOR[key])
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            if isinstance(entry, dict):
                for inner, v in entry.items():
                    path = f"{key}[].{inner}" if isinstance(value, list) else f"{key}.{inner}"
                    if path in OPERATOR and not asks_for_nothing(v):
                        refuse(path, OPERATOR[path])
    base = data.get("base_model")
    if isinstance(base, str) and not looks_like_repo_id(base):
        raise UserError(f"{source}: hub-ids-only: base_model: {repo_id_problem(base)}; requests from front doors "
                        "name Hub repos, never files or folders")
    for i, d in enumerate(data.get("datasets") or [] if isinstance(data.get("datasets"), list) else []):
        path = d.get("path") if isinstance(d, dict) else None
        if isinstance(path, str) and not looks_like_repo_id(path):
            raise UserError(f"{source}: hub-ids-only: `datasets[{i}].path`: {repo_id_problem(path)}; requests from "
                            "front doors name Hub repos, never files")
    cont = data.get("contamination")
    benchmarks = cont.get("benchmarks") if isinstance(cont, dict) else None
    if isinstance(benchmarks, list) and any(isinstance(b, str) and "=" in b and not _factory_task_file(b)
                                            for b in benchmarks):
        raise UserError(f"{source}: operator-only: `contamination.benchmarks` NAME=PATH names a file on the worker; "
                        "use the built-in benchmark names")


def _factory_task_file(benchmark: str) -> bool:
    """NAME={factory_home}/evals/FILE: a held-out task file the factory itself writes (the demo's)."""
    path = benchmark.partition("=")[2]
    return path.startswith("{factory_home}/evals/") and ".." not in path and "\\" not in path


def namespace_for(submitter: str) -> str:
    """The Hub namespace a submitter publishes into: hf:<user> -> user; discord:<id> -> the operator's."""
    kind, _, who = submitter.partition(":")
    if kind == "hf":
        return who
    if kind == "discord":
        ns = os.environ.get("FACTORY_DISCORD_NAMESPACE", "")
        if not ns:
            raise UserError("discord-namespace: this factory has no FACTORY_DISCORD_NAMESPACE, so models from "
                            "Discord have nowhere to be published; the operator must set it")
        return ns
    raise UserError(f"submitter: '{submitter}' is not hf:<username> or discord:<user id>")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:40] or "model"


def default_repo_name(request: Request, submitter: str, job_id: int) -> str:
    """'<namespace>/<base>-<dataset>-job<id>' (Discord: '-d<user id>' too, so users are told apart)."""
    base = _slug(request.base_model.split("/")[-1])
    data = _slug(request.datasets[0].path.split("/")[-1])
    tag = f"-d{submitter.partition(':')[2]}" if submitter.startswith("discord:") else ""
    return f"{namespace_for(submitter)}/{base}-{data}{tag}-job{job_id}"[:96]


def check_request(request: Request, submitter: str, source: str, limits: RemoteLimits | None = None,
                  hub=None) -> None:
    """The typed request against the front-door rules and the operator's bounds. Every read goes through
    `hub`, the stranger's own view (default: public repos only)."""
    from factory.admission.allow_list import check_keys
    from factory.hub.credentials import allowed_namespace
    from factory.admission.grants import local_paths
    from factory.base.home import factory_home
    from factory.hub.choose import hub_for
    from factory.base.paths import within

    hub = hub or hub_for(submitter)
    lim = limits or RemoteLimits.load()
    own = namespace_for(submitter)  # refuses an identity with nowhere to publish, before anything else
    check_keys(request, source)  # the allow-list: any other key is the operator's, refused by name
    for key, value in local_paths(request):
        if key.startswith("contamination.benchmarks") and within(Path(value), factory_home() / "evals"):
            continue  # the factory's own held-out task file (check_raw allowed only that form)
        raise UserError(f"{source}: hub-ids-only: `{key}` is '{value}', a local path; requests from front doors "
                        "name Hub repos (org/name)")
    if not looks_like_repo_id(request.base_model):
        raise UserError(f"{source}: hub-ids-only: base_model must be a Hub repo id (org/name)")
    if request.hub_model_id:
        ns = request.hub_model_id.split("/")[0]
        allowed = [n.strip() for n in os.environ.get("FACTORY_ALLOWED_NAMESPACES", "").split(",") if n.strip()]
        if ns != own and ns not in allowed:
            raise UserError(f"{source}: own-namespace: hub_model_id '{request.hub_model_id}' is outside your namespace "
                            f"'{own}'; publish as {own}/<name>")
        if problem := allowed_namespace(request.hub_model_id) if ns != own else None:
            raise UserError(f"{source}: own-namespace: {problem}")
    if not any(fnmatch.fnmatchcase(request.base_model, p) for p in lim.base_models):
        raise UserError(f"{source}: limit base_models: '{request.base_model}' is not among the base models this "
                        f"factory finetunes for front doors ({', '.join(lim.base_models)})")
    adapter = request.adapter or "full"
    if adapter not in lim.adapters:
        raise UserError(f"{source}: limit adapters: a {adapter} finetune is not offered here (allowed: "
                        f"{', '.join(lim.adapters)})")
    per_step = tokens_per_step(request)
    bounds = [("max_sequence_len", request.sequence_len, lim.max_sequence_len, "sequence_len"),
              ("max_epochs", request.num_epochs, lim.max_epochs, "num_epochs"),
              ("max_steps", request.max_steps or 0, lim.max_steps, "max_steps"),
              ("max_steps", request.warmup_steps or 0, lim.max_steps, "warmup_steps"),
              ("max_lora_r", request.lora_r if request.adapter else 0, lim.max_lora_r, "lora_r"),
              ("max_lora_r", request.lora_alpha if request.adapter else 0, 4 * lim.max_lora_r, "lora_alpha"),
              ("max_micro_batch_size", request.micro_batch_size, lim.max_micro_batch_size, "micro_batch_size"),
              ("max_batch_tokens", per_step, lim.max_batch_tokens,
               "micro_batch_size x gradient_accumulation_steps x sequence_len"
               + (" x 2 (each pair trains two sequences)" if request.rl else "")),
              ("max_new_tokens", request.evals.max_new_tokens, lim.max_new_tokens, "evals.max_new_tokens"),
              ("max_eval_tasks", len(request.evals.tasks), lim.max_eval_tasks, "the number of evals.tasks"),
              ("max_datasets", len(request.datasets), lim.max_datasets, "the number of datasets"),
              ("max_added_tokens", len(request.tokens or []), lim.max_added_tokens, "the number of tokens"),
              ("max_token_chars", max(map(len, [*(request.tokens or []), *(request.special_tokens or {}).values()]),
                                      default=0), lim.max_token_chars, "the longest added token"),
              ("max_gguf_files", len(request.export.gguf), lim.max_gguf_files, "the number of export.gguf types")]
    for name, value, bound, key in bounds:
        if value > bound:
            raise UserError(f"{source}: limit {name}: {key} is {_num(value)}; this factory allows at most {_num(bound)}")
    if other := [t for t in request.export.gguf if t not in lim.gguf_types]:
        raise UserError(f"{source}: limit gguf_types: GGUF {', '.join(other)} is not offered here "
                        f"(allowed: {', '.join(lim.gguf_types)})")
    if request.evals.tasks:
        if request.evals.limit is None or request.evals.limit > lim.max_eval_items:
            raise UserError(f"{source}: limit max_eval_items: set evals.limit to at most {lim.max_eval_items} "
                            f"items per task (now {request.evals.limit or 'every item'})")
    _check_forms(request, own, source)
    if request.compute.flavor and not any(fnmatch.fnmatchcase(request.compute.flavor, p) for p in lim.flavors):
        raise UserError(f"{source}: limit flavors: compute.flavor '{request.compute.flavor}' is not offered here "
                        f"(allowed: {', '.join(lim.flavors)})")
    if request.compute.timeout:
        from factory.request.durations import timeout_seconds

        if timeout_seconds(request.compute.timeout) > timeout_seconds(lim.max_timeout):
            raise UserError(f"{source}: limit max_timeout: compute.timeout is {request.compute.timeout}; this factory "
                            f"allows at most {lim.max_timeout}")
    for spec in request.datasets:  # read as the stranger: a private dataset they may not read is refused here
        if not hub.exists(spec.path, "dataset"):
            raise UserError(f"{source}: dataset '{spec.path}' was not found, or you may not read it (a private or "
                            "gated dataset needs your own sign-in); check the id")
    try:
        tokens = estimated_tokens(request, hub)
    except UserError as exc:  # the cause first, then the limit it stops
        raise UserError(f"{source}: {exc} (limit max_training_tokens)") from None
    if tokens > lim.max_training_tokens:
        raise UserError(f"{source}: limit max_training_tokens: this request would train on about {tokens:,} tokens; "
                        f"at most {lim.max_training_tokens:,} are allowed (lower max_steps, num_epochs or sequence_len)")
    _check_repeats(request, -(-tokens // per_step), lim, source)
    if request.chat_template and ("{%" in request.chat_template or "{{" in request.chat_template):
        from factory.admission.template_sandbox import check_template

        check_template(request.chat_template, source)


NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # a module or parameter name: matched as a name, never as a pattern
IDENTITY = re.compile(r"^(hf:[A-Za-z0-9][A-Za-z0-9._-]{0,95}|discord:[0-9]{5,25}|api:[A-Za-z0-9._-]{1,64})$")


def _check_forms(request: Request, own: str, source: str) -> None:
    """Values that must have a plain form when a stranger sets them."""
    targets = request.lora_target_modules
    if isinstance(targets, str) and targets != "all-linear":
        raise UserError(f"{source}: operator-only: `lora_target_modules` as one string is a regular expression, matched "
                        "on the worker; give a list of module names (q_proj, v_proj, ...) or lora_target_linear: true")
    for key in ("lora_target_modules", "lora_modules_to_save", "lora_target_parameters"):
        value = getattr(request, key)
        names = value if isinstance(value, list) else []
        if len(names) > 64 or any(not NAME.match(n) for n in names):
            raise UserError(f"{source}: `{key}`: give at most 64 plain module names (letters, digits, '_', '.', '-')")
    if request.publish.into_existing and request.hub_model_id and request.hub_model_id.split("/")[0] != own:
        raise UserError(f"{source}: own-namespace: publish.into_existing adds files to a repo the factory did not make; "
                        f"it is only allowed in your own namespace '{own}'")
    bad = [w for w in request.publish.writers if not IDENTITY.match(w)]
    if bad or len(request.publish.writers) > 32:
        raise UserError(f"{source}: publish.writers: at most 32 identities such as hf:<user> or discord:<id> "
                        f"(not {', '.join(map(repr, bad[:3]))})")


def _check_repeats(request: Request, steps: int, lim: RemoteLimits, source: str) -> None:
    """Checkpoints and evaluations over the whole run, from its steps (max_steps, or estimated from the data)."""
    import math

    epochs = math.ceil(request.num_epochs)
    if request.save_total_limit is None or request.save_total_limit > 3:
        raise UserError(f"{source}: limit save_total_limit: keep at most 3 checkpoints (save_total_limit: 1 to 3); "
                        f"now {request.save_total_limit or 'every one'}")
    saves = (steps // request.save_steps if request.save_steps else
             request.saves_per_epoch * epochs if request.saves_per_epoch else epochs)
    if saves > lim.max_checkpoints:
        raise UserError(f"{source}: limit max_checkpoints: this request would save about {saves:,} checkpoints over "
                        f"about {steps:,} steps; at most {lim.max_checkpoints} are allowed (raise save_steps or lower "
                        "saves_per_epoch)")
    evaluations = (steps // request.eval_steps if request.eval_steps else
                   request.evals_per_epoch * epochs if request.evals_per_epoch else 0)
    if evaluations > lim.max_evaluations:
        raise UserError(f"{source}: limit max_evaluations: this request would evaluate about {evaluations:,} times; at "
                        f"most {lim.max_evaluations} are allowed (raise eval_steps or lower evals_per_epoch)")
    during = request.evals.limit if request.evals.during_training_limit is None else request.evals.during_training_limit
    scored = evaluations * len(request.evals.tasks) * (during or 0) if request.val_set_size else 0
    if scored > lim.max_training_eval_items:
        raise UserError(f"{source}: limit max_training_eval_items: this request would score about {scored:,} held-out "
                        f"items during training ({evaluations:,} evaluations x {len(request.evals.tasks)} tasks x "
                        f"{during:,} items); at most {lim.max_training_eval_items:,} are allowed (set "
                        "evals.during_training_limit lower, or 0 for none, or evaluate less often)")


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def tokens_per_step(request: Request) -> int:
    """The most tokens one optimizer step trains on: a preference pair (or a KTO completion with its KL
    sequence) is two sequences of up to sequence_len each."""
    sequences = 2 if request.rl else 1
    return request.micro_batch_size * request.gradient_accumulation_steps * request.sequence_len * sequences


def estimated_tokens(request: Request, hub=None) -> int:
    """An upper estimate of the tokens a run trains on: packed rows are full, so steps x rows x sequence_len
    with max_steps; else the datasets' size in bytes / 4 (about 4 bytes a token) times the epochs."""
    per_step = tokens_per_step(request)
    if request.max_steps:
        return request.max_steps * per_step
    if hub is None:
        from factory.hub.choose import default_hub

        hub = default_hub(request.hub_endpoint)
    total = 0
    for spec in request.datasets:
        try:
            total += dataset_bytes(hub, spec.path)
        except UserError as exc:  # e.g. a private dataset the factory's own token cannot see
            raise UserError(f"{exc}; without its size the training tokens cannot be estimated, so set max_steps "
                            "to bound the run") from None
    return int(total / 4 * request.num_epochs)


def dataset_bytes(hub, repo_id: str) -> int:
    """The size of a dataset repo's files, without downloading them where the hub can say."""
    size = getattr(hub, "repo_bytes", None)
    if size is not None:
        return size(repo_id, "dataset")
    path, _ = hub.snapshot(repo_id, "dataset")
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
