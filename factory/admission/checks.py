"""The door every request passes: schema (already typed), known eval tasks, lint against the base's facts.

Used by `factory validate/run` and by `jobs.submit`, so a request that would fail here never
becomes a job. Reads JSON files only: no torch, no download.
"""

from __future__ import annotations

import json

from factory.request.config import Request
from factory.base.errors import UserError
from factory.admission.lint import Finding

CONFIG_FILES = ["config.json", "tokenizer_config.json", "chat_template.jinja"]  # all lint needs; no weights


def base_facts(request: Request, hub=None):
    """Base-model facts for lint, from the model folder or the hub's snapshot of it."""
    from pathlib import Path

    from factory.hub.choose import default_hub, model_folder
    from factory.admission.lint import Facts, facts_from_folder

    gguf = Path(request.base_model).expanduser()
    if gguf.suffix.lower() == ".gguf" and gguf.is_file():  # the header says enough; converting it is minutes of torch
        from factory.hub.gguf_import import gguf_facts

        header = gguf_facts(gguf)
        return Facts(model_type=header["architecture"], max_positions=header["context_length"],
                     has_chat_template=header["has_chat_template"])

    folder = model_folder(request.base_model, hub or default_hub(request.hub_endpoint), request.revision_of_model,
                          files=CONFIG_FILES)[0]

    def read(name):
        p = folder / name
        return json.loads(p.read_text()) if p.is_file() else None

    if not (folder / "config.json").is_file():
        return Facts()
    return facts_from_folder(read("config.json"), read("tokenizer_config.json") or {},
                             (folder / "chat_template.jinja").is_file())


def check_request(request: Request, source: str = "request", hub=None, require_base: bool = True) -> list[Finding]:
    """Every finding for the request; raises UserError when any of them is an error.

    require_base=False (`factory validate`): a base model that cannot be found here is a warning, and the
    lint rules that need its facts are skipped, so a config can be checked before its base is downloaded."""
    from evals.harness import available_tasks
    from factory.admission.lint import lint

    unknown = [t for t in request.evals.tasks if t not in available_tasks()]
    if unknown:
        raise UserError(f"{source}: evals.tasks: unknown task(s) {', '.join(unknown)}; "
                        f"available: {', '.join(available_tasks())}")
    from evals.benchmarks import BUILTIN, BenchmarkError, load_records

    for task in request.evals.tasks:  # a registry benchmark needs its items now, not after training
        if task in BUILTIN:
            try:
                load_records(task)
            except BenchmarkError as exc:
                raise UserError(f"{source}: evals.tasks: {exc}") from None
    if request.contamination.benchmarks:  # a missing benchmark file stops the request here, not after data prep
        from factory.data.decontaminate import load_benchmarks

        load_benchmarks(request.contamination.benchmarks, request.contamination.fields)
    if request.hub_model_id and request.publish.enabled:
        from factory.hub.credentials import allowed_namespace

        if problem := allowed_namespace(request.hub_model_id):
            raise UserError(f"{source}: hub_model_id: {problem}")
    from factory.admission.lint import Facts

    unavailable = None
    try:
        facts = base_facts(request, hub)
    except UserError as exc:
        if require_base:
            raise
        facts, unavailable = Facts(), Finding("base-unavailable", "warning",
                                              f"{exc}; the checks that need the base model's facts were skipped")
    findings = lint(request, facts) + ([unavailable] if unavailable else [])
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise UserError(f"{source}: {len(errors)} lint error(s):\n" +
                        "\n".join(f"  {f.rule}: {f.message}" for f in errors))
    return findings
