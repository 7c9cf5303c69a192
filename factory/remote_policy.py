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

from factory.config import Request
from factory.errors import UserError
from factory.ids import looks_like_repo_id

# Keys that name a path on the worker or run code there (Axolotl's names included, for when they exist).
WORKER_KEYS = {
    "output_dir": "names a folder on the worker", "trust_remote_code": "runs code from the model repo on the worker",
    "dataset_prepared_path": "names a folder on the worker", "lora_model_dir": "names a folder on the worker",
    "resume_from_checkpoint": "names a folder on the worker", "deepspeed": "names a JSON file on the worker",
    "chat_template_jinja": "names a template file on the worker", "tokenizer_config": "names a file on the worker",
    "pretraining_dataset": "streams data from a path or URL",
    "mlflow_tracking_uri": "sends the run's metrics to a server the request names",
    **{k: "reports to the operator's tracking account" for k in (
        "wandb_project", "wandb_entity", "wandb_name", "wandb_run_id", "wandb_mode", "wandb_watch", "wandb_log_model",
        "use_trackio", "trackio_project_name", "trackio_run_name", "trackio_space_id", "mlflow_experiment_name",
        "mlflow_run_name", "use_tensorboard")},
}
NESTED_WORKER_KEYS = {("contamination", "embedding_model"): "names a model folder on the worker",
                      ("datasets", "data_files"): "names files on the worker"}


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
    """Rules on the request as written (before the schema): keys that reach the worker's disk or Python."""
    if not isinstance(data, dict):
        return
    from factory.axolotl import asks_for_nothing

    for key, why in WORKER_KEYS.items():
        if key in data and not asks_for_nothing(data[key]):  # Axolotl configs carry many of these empty
            raise UserError(f"{source}: worker-path-key: `{key}` {why}; requests from front doors may not set it")
    for (outer, inner), why in NESTED_WORKER_KEYS.items():
        value = data.get(outer)
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, dict) and inner in v for v in items):
            where = f"{outer}[].{inner}" if isinstance(value, list) else f"{outer}.{inner}"
            raise UserError(f"{source}: worker-path-key: `{where}` {why}; requests from front doors may not set it")
    cont = data.get("contamination")
    benchmarks = cont.get("benchmarks") if isinstance(cont, dict) else None
    if isinstance(benchmarks, list) and any(isinstance(b, str) and "=" in b and not _factory_task_file(b)
                                            for b in benchmarks):
        raise UserError(f"{source}: worker-path-key: `contamination.benchmarks` NAME=PATH names a file on the worker; "
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
    """The typed request against the front-door rules and the operator's bounds."""
    from factory.credentials import allowed_namespace
    from factory.grants import local_paths
    from factory.home import factory_home
    from factory.paths import within

    lim = limits or RemoteLimits.load()
    own = namespace_for(submitter)  # refuses an identity with nowhere to publish, before anything else
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
    bounds = [("max_sequence_len", request.sequence_len, lim.max_sequence_len, "sequence_len"),
              ("max_epochs", request.num_epochs, lim.max_epochs, "num_epochs"),
              ("max_steps", request.max_steps or 0, lim.max_steps, "max_steps"),
              ("max_lora_r", request.lora_r if request.adapter else 0, lim.max_lora_r, "lora_r")]
    for name, value, bound, key in bounds:
        if value > bound:
            raise UserError(f"{source}: limit {name}: {key} is {_num(value)}; this factory allows at most {_num(bound)}")
    if request.evals.tasks:
        if request.evals.limit is None or request.evals.limit > lim.max_eval_items:
            raise UserError(f"{source}: limit max_eval_items: set evals.limit to at most {lim.max_eval_items} "
                            f"items per task (now {request.evals.limit or 'every item'})")
    if request.compute.flavor and not any(fnmatch.fnmatchcase(request.compute.flavor, p) for p in lim.flavors):
        raise UserError(f"{source}: limit flavors: compute.flavor '{request.compute.flavor}' is not offered here "
                        f"(allowed: {', '.join(lim.flavors)})")
    if request.compute.timeout:
        from factory.compute import timeout_seconds

        if timeout_seconds(request.compute.timeout) > timeout_seconds(lim.max_timeout):
            raise UserError(f"{source}: limit max_timeout: compute.timeout is {request.compute.timeout}; this factory "
                            f"allows at most {lim.max_timeout}")
    try:
        tokens = estimated_tokens(request, hub)
    except UserError as exc:
        raise UserError(f"{source}: limit max_training_tokens: {exc}") from None
    if tokens > lim.max_training_tokens:
        raise UserError(f"{source}: limit max_training_tokens: this request would train on about {tokens:,} tokens; "
                        f"at most {lim.max_training_tokens:,} are allowed (lower max_steps, num_epochs or sequence_len)")
    if request.chat_template and ("{%" in request.chat_template or "{{" in request.chat_template):
        from factory.template_sandbox import check_template

        check_template(request.chat_template, source)


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def estimated_tokens(request: Request, hub=None) -> int:
    """An upper estimate of the tokens a run trains on: packed rows are full, so steps x rows x sequence_len
    with max_steps; else the datasets' size in bytes / 4 (about 4 bytes a token) times the epochs."""
    per_step = request.micro_batch_size * request.gradient_accumulation_steps * request.sequence_len
    if request.max_steps:
        return request.max_steps * per_step
    if hub is None:
        from factory.hub import default_hub

        hub = default_hub(request.hub_endpoint)
    total = 0
    for spec in request.datasets:
        try:
            total += dataset_bytes(hub, spec.path)
        except UserError as exc:  # e.g. a private dataset the factory's own token cannot see
            raise UserError(f"the size of '{spec.path}' cannot be read to estimate the training tokens ({exc}); "
                            "set max_steps so the run is bounded") from None
    return int(total / 4 * request.num_epochs)


def dataset_bytes(hub, repo_id: str) -> int:
    """The size of a dataset repo's files, without downloading them where the hub can say."""
    size = getattr(hub, "repo_bytes", None)
    if size is not None:
        return size(repo_id, "dataset")
    path, _ = hub.snapshot(repo_id, "dataset")
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
