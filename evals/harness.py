"""lm-eval, in process, on a model object that is already loaded.

Tasks come from the YAML files shipped in evals/tasks and from the benchmark registry (generated
by evals/registry_tasks.py; offline, their data are local files). A
subset is a seeded random sample of the task's documents (lm-eval's `limit` would take the first
N), so base and finetuned models are scored on the same items.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

TASK_DIR = Path(__file__).parent / "tasks"


@dataclass(frozen=True)
class Score:
    task: str
    metric: str
    value: float
    stderr: float | None
    n: int
    doc_ids: tuple[int, ...] = ()  # which of the task's documents were scored (not in reports: can be long)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "doc_ids"}


def available_tasks() -> list[str]:
    """The shipped task files, and the registry's benchmarks (generated from their items)."""
    from evals.benchmarks import BUILTIN

    return sorted({p.stem for p in TASK_DIR.glob("*.yaml")} | set(BUILTIN))


def home_files(task: str) -> list[str]:
    """The files under $FACTORY_HOME a shipped task reads (its YAML's `{factory_home}/...` paths), relative."""
    import re

    spec = TASK_DIR / f"{task}.yaml"
    if not spec.is_file():
        return []
    return re.findall(r"\{factory_home\}/([A-Za-z0-9_./-]+)", spec.read_text(encoding="utf-8"))


def _materialise(tasks: list[str], substitutions: dict[str, str], into: Path, max_new_tokens: int) -> None:
    from evals.benchmarks import BUILTIN
    from evals.registry_tasks import write_task

    for name in tasks:
        if name in BUILTIN:
            write_task(name, into, max_new_tokens)
            continue
        src = TASK_DIR / f"{name}.yaml"
        if not src.is_file():
            raise ValueError(f"unknown eval task '{name}'; available: {', '.join(available_tasks())}")
        text = src.read_text()
        for key, value in substitutions.items():
            text = text.replace("{" + key + "}", value)
        (into / src.name).write_text(text)


def write_tasks(tasks: list[str], into: Path, *, limit: int | None = None, seed: int = 1234,
                substitutions: dict[str, str] | None = None, max_new_tokens: int = 256) -> dict[str, list[int]] | None:
    """Write the tasks' YAML (and registry data) into a folder lm-eval includes; return the seeded subset
    of document ids per task (None without a limit). lm-eval's own command line reads the same folder."""
    from lm_eval.tasks import TaskManager

    _materialise(tasks, substitutions or {}, into, max_new_tokens)
    if limit is None:
        return None
    manager = TaskManager(include_path=str(into), include_defaults=False)
    samples = {}
    for name, task in manager.load(tasks)["tasks"].items():
        n = len(task.eval_docs)
        samples[name] = sorted(random.Random(seed).sample(range(n), min(limit, n)))
    return samples


def task_inputs(tasks: list[str], *, limit: int | None = None, seed: int = 1234,
                substitutions: dict[str, str] | None = None, max_new_tokens: int = 256) -> dict[str, dict]:
    """What decides each task's items, as `evaluate` would score them: the sha256 of its definition and
    data (its YAML as lm-eval reads it, its registry items, the files it reads from the factory's home)
    and the seeded document ids (None: every document)."""
    import hashlib

    substitutions = substitutions or {}
    with tempfile.TemporaryDirectory(prefix="factory-tasks-") as tmp:
        samples = write_tasks(tasks, Path(tmp), limit=limit, seed=seed, substitutions=substitutions,
                              max_new_tokens=max_new_tokens)
        out = {}
        for name in tasks:
            h = hashlib.sha256()
            for path in sorted(Path(tmp).glob(f"{name}.*")):
                text = path.read_text(encoding="utf-8").replace(tmp, "{tmp}")
                for key, value in substitutions.items():
                    text = text.replace(value, "{" + key + "}")
                h.update(path.name.encode() + b"\0" + text.encode() + b"\0")
            home = substitutions.get("factory_home")
            for rel in home_files(name) if home else ():
                p = Path(home) / rel
                h.update(rel.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"(absent)") + b"\0")
            out[name] = {"sha256": h.hexdigest(), "items": samples[name] if samples else None}
    return out


def lm_eval_command(model_dir: Path, tasks: list[str], task_dir: Path, samples_file: Path | None, *, seed: int = 1234,
                    batch_size: int = 16, apply_chat_template: bool = True, output: Path | None = None) -> list[str]:
    """lm-eval's own command line for what `evaluate` does in process (same tasks, items, seeds, batching)."""
    cmd = ["lm_eval", "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=auto", "--device", "cpu",
           "--tasks", ",".join(tasks), "--include_path", str(task_dir), "--batch_size", str(batch_size),
           "--seed", str(seed)]
    if samples_file is not None:
        cmd += ["--samples", str(samples_file)]
    if apply_chat_template:
        cmd += ["--apply_chat_template"]
    if output is not None:
        cmd += ["--output_path", str(output)]
    return cmd


def _checked_lm(check: Callable[[], None] | None, render: Callable[..., str] | None):
    """lm-eval's HF model, calling check() before each batch it scores or generates (it may raise to stop),
    and rendering chat prompts with render(messages, **apply_chat_template's arguments) when one is given."""
    from lm_eval.models.huggingface import HFLM

    if check is None and render is None:
        return HFLM

    class Checked(HFLM):
        def _model_call(self, *args, **kwargs):
            if check is not None:
                check()
            return super()._model_call(*args, **kwargs)

        def _model_generate(self, *args, **kwargs):
            if check is not None:
                check()
            return super()._model_generate(*args, **kwargs)

        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
            if render is None:
                return super().apply_chat_template(chat_history, add_generation_prompt)
            kwargs = {"add_generation_prompt": add_generation_prompt, "continue_final_message": not add_generation_prompt}
            try:
                return render(chat_history, **kwargs)
            except Exception:  # noqa: BLE001 - lm-eval's own fallback: the template may refuse a system turn
                return render([m for m in chat_history if m["role"] != "system"], **kwargs)

    return Checked


def evaluate(model, tokenizer, tasks: list[str], *, limit: int | None = None, seed: int = 1234,
             substitutions: dict[str, str] | None = None, batch_size: int = 16,
             apply_chat_template: bool = True, max_new_tokens: int = 256,
             check: Callable[[], None] | None = None, render: Callable[..., str] | None = None) -> dict[str, Score]:
    """Score model on tasks; returns the first metric of each task with its stderr and item count.

    check() runs before every batch and may raise to stop (the caller's Ctrl-C or cancel); render, when given,
    renders the chat prompts instead of the tokenizer (a stranger's template, within the caller's bounds)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="factory-tasks-") as tmp:
        samples = write_tasks(tasks, Path(tmp), limit=limit, seed=seed, substitutions=substitutions,
                              max_new_tokens=max_new_tokens)
        manager = TaskManager(include_path=tmp, include_defaults=False)
        lm = _checked_lm(check, render)(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
        out = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, task_manager=manager, samples=samples,
            apply_chat_template=apply_chat_template, random_seed=seed, numpy_random_seed=seed,
            torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=1000, verbosity="ERROR",
        )
    scores = {}
    for name in tasks:
        result = out["results"][name]
        key = next(k for k in result if "," in k and "_stderr" not in k)
        metric, _, flt = key.partition(",")
        stderr = result.get(f"{metric}_stderr,{flt}")
        n = out.get("n-samples", {}).get(name, {}).get("effective", 0)
        ids = tuple(sorted({int(x["doc_id"]) for x in out.get("samples", {}).get(name, [])}))
        scores[name] = Score(name, metric, float(result[key]),
                             float(stderr) if isinstance(stderr, (int, float)) else None, int(n), ids)
    return scores
