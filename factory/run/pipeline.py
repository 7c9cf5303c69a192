"""The one place that knows the stage order: resolve, data, train, merge, eval, export, card, publish.

Each stage writes its artifact into the run folder atomically and a stamp in stages/; a re-run of
the same request (same run folder) skips the stages whose stamp exists and resumes training from
its last checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from factory.base import atomic, interrupt
from factory.data import encoded_store
from factory.request.config import Request
from factory.base.errors import UserError
from factory.base.home import placeholders
from factory.hub.protocol import Hub
from factory.hub.choose import model_folder
from factory.base.progress import Event, MainOnly, Reporter
from factory.base.redact import redact
from factory.train.tokens import cache_part, load_tokenizer
from factory.run import base_scores
from factory.run.export_stage import stage_export


@dataclass
class Run:
    request: Request
    hub: Hub
    reporter: Reporter
    dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    substitutions: dict[str, str] = field(default_factory=placeholders)  # for eval task files
    gate: Callable[[str], None] | None = None  # called before a stage runs; raises to stop (jobs: cancel, publish)
    identity: str | None = None  # a front door's submitter (hf:<user>, ...): publishes only where it may; None: operator

    def stamp(self, stage: str) -> dict | None:
        """A stage's result when it was done for this very request (a stamp of another request is stale)."""
        p = self.dir / "stages" / f"{stage}.json"
        stamp = json.loads(p.read_text()) if p.is_file() else None
        if not isinstance(stamp, dict) or stamp.pop(STAMP_KEY, None) != request_hash(self.request):
            return None
        return stamp

    def done(self, stage: str, result: dict) -> dict:
        atomic.write_json(self.dir / "stages" / f"{stage}.json", {**result, STAMP_KEY: request_hash(self.request)})
        return result


STAMP_KEY = "_request_sha256"  # in every stage stamp: the request it was done for
OWNER_FILE = "run.json"  # in every run folder: the request it belongs to


def request_hash(request: Request) -> str:
    return hashlib.sha256(request.sanitized_yaml().encode()).hexdigest()


def claim_folder(run: Run) -> None:
    """A run folder belongs to one request for ever: a folder holding another request's run is refused, never
    resumed (its checkpoints and stamps would stand in for this request's)."""
    marker = run.dir / OWNER_FILE
    mine = request_hash(run.request)
    if marker.is_file():
        try:
            theirs = json.loads(marker.read_text()).get("request_sha256")
        except (ValueError, AttributeError):
            theirs = None
        if theirs != mine:
            raise UserError(f"the run folder {run.dir} holds the run of another request; choose another output_dir "
                            "(or delete that folder to start over)")
        return
    atomic.write_json(marker, {"request_sha256": mine})


def run_id(request: Request) -> str:
    digest = request_hash(request)[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", (request.hub_model_id or "run").split("/")[-1].lower()).strip("-")
    return f"{slug}-{digest}"


def run_dir_for(request: Request) -> Path:
    from factory.base.home import runs_root

    from factory.base.paths import inside

    return Path(request.output_dir).expanduser() if request.output_dir else inside(runs_root(), run_id(request),
                                                                                   what="run folder")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("factory", "torch", "transformers", "peft", "accelerate", "lm-eval", "huggingface_hub"):
        try:
            out[pkg] = version(pkg if pkg != "factory" else "model-factory")
        except PackageNotFoundError:
            continue
    return out


# ---- stages --------------------------------------------------------------------------------------

def stage_resolve(run: Run) -> dict:
    req = run.request
    base_dir, base_rev = model_folder(req.base_model, run.hub, req.revision_of_model)
    meta = {}
    if (base_dir / "README.md").is_file():  # the base's card: its license and languages carry over
        from huggingface_hub import ModelCard

        meta = ModelCard.load(base_dir / "README.md").data.to_dict()
    if req.export.gguf:  # a tokenizer llama.cpp would split differently is refused now, not after training
        from factory.publish.gguf_export import check_folder

        check_folder(base_dir, req.export.gguf)
    atomic.write_text(run.dir / "request.yaml", req.sanitized_yaml())
    run.reporter.emit(Event("resolve", f"hub: {run.hub.name}; base {req.base_model} @ {base_rev or 'local folder'}"))
    return {"base_dir": str(base_dir), "base_revision": base_rev, "base_license": meta.get("license"),
            "base_language": meta.get("language")}


def stage_data(run: Run, resolved: dict) -> dict:
    """Tokenise every sample once (or find them in the cache), then choose this run's rows: the seeded
    split, any contamination drop, and the sequence_len and min_sample_len policies."""
    from factory.data.chat import resolve_template
    from factory.data.data import check_held_out, dataset_files, estimated_rows, split_rows, stream
    from factory.data.decontaminate import apply_policy, summary_of
    from factory.base.textfiles import open_binary

    req = run.request
    if req.rl:
        from factory.run.pair_stages import stage_pair_data

        return stage_pair_data(run, resolved)
    tokenizer = load_tokenizer(req, resolved["base_dir"])
    template = resolve_template(req.chat_template, tokenizer)
    files = [dataset_files(spec, run.hub) for spec in req.datasets]  # once: every pass reads the same revision
    for p in (p for paths, _ in files for p in paths):  # hashed for the cache key: an unreadable file is named now
        open_binary(p, "data file").close()
    estimates = [estimated_rows(p) for paths, _ in files for p in paths]  # the split's bound, the progress bar's total
    check_held_out(req, estimates)
    reports: list = []

    def samples():  # a fresh pass over the data, in load order; each pass writes the reports again
        reports.clear()
        return stream(req, run.hub, reports, files)

    drop, contamination = apply_policy(req, samples, run.reporter, reports)  # before any tokenising
    if contamination is not None:
        atomic.write_json(run.dir / "contamination.json", contamination)
    reports.clear()
    encoded, cache = _encode_cached(run, tokenizer, resolved["base_dir"], template, files, reports, sum(estimates))
    train_rows, eval_rows = split_rows(len(encoded), req)
    if drop:
        train_rows, eval_rows = [i for i in train_rows if i not in drop], [i for i in eval_rows if i not in drop]
    counts = {"dropped": 0, "truncated": 0, "too_short": 0}
    import numpy as np

    lengths = encoded.lengths
    cut = lengths if req.excess_length_strategy == "drop" else np.minimum(lengths, req.sequence_len)
    trained_counts = encoded.trained_counts(cut)
    learnable = trained_counts > 0  # rows with nothing left to learn from are dropped

    def fit(rows):  # the length policies, after the cache (a new sequence_len reuses the tokenisation)
        rows = np.asarray(rows, dtype=np.int64)
        if req.min_sample_len:
            short = lengths[rows] < req.min_sample_len
            counts["too_short"] += int(short.sum())
            rows = rows[~short]
        over = lengths[rows] > req.sequence_len
        if req.excess_length_strategy == "drop":
            counts["dropped"] += int(over.sum())
            rows = rows[~over]
        else:
            counts["truncated"] += int(over.sum())
        counts["dropped"] += int((~learnable[rows]).sum())
        return rows[learnable[rows]]

    train, evalset = fit(train_rows), fit(eval_rows)
    if not len(train):
        raise UserError("no training samples are left after dropping over-long ones"
                        + (f" and those shorter than min_sample_len ({req.min_sample_len})" if req.min_sample_len else "")
                        + "; raise sequence_len or use excess_length_strategy: truncate")
    summary = {
        "rows": sum(r.rows for r in reports),
        "malformed": sum(r.malformed for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "train_samples": len(train), "eval_samples": len(evalset), **counts,
        "train_tokens": int(cut[train].sum()),
        "target_tokens": int(trained_counts[train].sum()),
        "datasets": [r.as_dict() for r in reports],
        "encoding": {k: v for k, v in cache.items() if k != "path"},  # where the cache lives is this machine's business
        "contamination": summary_of(contamination),
    }
    encoded_store.save_selection(run.dir / "data" / "encoded", Path(cache["path"]), template, cut, train, evalset)
    atomic.write_json(run.dir / "data" / "report.json", summary)
    from factory.admission.lint import Facts, lint

    for f in lint(req, Facts(train_rows=len(train_rows) + len(eval_rows))):  # the rules that need row counts
        if f.rule in ("eval-split-too-small", "batch-larger-than-data"):
            run.reporter.emit(Event("data", f"{f.severity} {f.rule}: {f.message}"))
    for r in reports:
        msg = f"{r.source}: {r.rows} rows, {r.used} used, {r.malformed} malformed, {r.duplicates} duplicates"
        msg += "".join(f"; {note}" for note in r.encodings)
        run.reporter.emit(Event("data", msg + "".join(f"\n    {x}" for x in r.examples[:3])))
    run.reporter.emit(Event("data", f"{len(train)} train / {len(evalset)} eval samples, {summary['train_tokens']:,} tokens; "
                                    f"over-long: {counts['dropped']} dropped, {counts['truncated']} truncated"
                                    + (f"; shorter than min_sample_len: {counts['too_short']} dropped"
                                       if req.min_sample_len else "")))
    return summary


def load_encoded(run: Run):
    return encoded_store.load(run.dir / "data" / "encoded")


def _encode_cached(run: Run, tokenizer, tokenizer_dir: str, template: str, files: list[tuple[list[Path], str | None]],
                   reports: list, estimated: int):
    """Every sample tokenised with its label mask, in load order: from the cache when the same data files,
    dataset options, tokenizer, template and masking were tokenised before, else streamed from the files
    on every core into a new cache entry (a progress bar with rows/s, out of about `estimated` rows).
    Fills `reports` either way."""
    from factory.data.data import check_report
    from factory.data.encode import encode_datasets

    req = run.request
    key = encoded_store.cache_key([(spec.model_dump(mode="json"), paths) for spec, (paths, _) in zip(req.datasets, files)],
                                  Path(tokenizer_dir), template, req.train_on_inputs, cache_part(req))
    path = encoded_store.cache_path(key, req.dataset_prepared_path)
    if path.is_dir():
        try:
            meta, encoded = encoded_store.open_entry(path)
        except (OSError, ValueError, KeyError):
            import shutil

            shutil.rmtree(path, ignore_errors=True)  # unreadable: rebuilt below
        else:
            from factory.data.data import DatasetReport

            reports[:] = [DatasetReport(**r) for r in meta["reports"]]
            for spec, r in zip(req.datasets, reports):  # this request's own max_malformed_fraction
                check_report(r, spec.path, spec.type, req.max_malformed_fraction)
            run.reporter.emit(Event("data", f"tokenised data: cache hit ({key[:12]}), {len(encoded):,} samples"))
            return encoded, {"cache": "hit", "key": key, "path": str(path)}

    def progress(done: int, total: int, rate: float) -> None:
        run.reporter.emit(Event("data", step=done, total=total, extra={"rows_per_s": rate}))

    writer = encoded_store.CacheWriter(path)
    try:
        with interrupt.partial(writer.tmp):
            stats = encode_datasets(req, run.hub, reports, tokenizer, template, writer.add, files, progress, estimated,
                                    bounded=run.identity is not None)  # a stranger's template renders within bounds
            encoded = writer.done({"template": template, "reports": [r.as_dict() for r in reports]})
    except BaseException:
        writer.abort()
        raise
    how = "one render per conversation" if stats["template_fast_path"] else "prefix rendering (template shape varies)"
    run.reporter.emit(Event("data", f"tokenised {len(encoded):,} samples in {stats['seconds']:.1f}s on "
                                    f"{stats['processes']} process(es), {how}; cache miss, saved ({key[:12]})"))
    return encoded, {"cache": "miss", "key": key, "path": str(path), **stats}


def stage_train(run: Run, resolved: dict) -> dict:
    from factory.publish.card import hardware

    if run.request.rl:
        from factory.run.pair_stages import stage_pair_train

        result = stage_pair_train(run, resolved)
    else:
        from factory.train.train import train

        template, train_set, eval_set = load_encoded(run)
        tokenizer = load_tokenizer(run.request, resolved["base_dir"])
        tokenizer.chat_template = template  # the trained tokenizer carries the template it was trained with
        result = train(run.request, Path(resolved["base_dir"]), tokenizer, train_set, eval_set, run.dir, run.reporter,
                       score=_scorer(run, resolved, template))
        run.reporter.emit(Event("train", f"{result.steps} steps in {result.seconds:.1f} s, train loss {result.train_loss:.4f}"
                                         + (f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
                                         + (f" ({Ranks().world} processes)" if Ranks().world > 1 else "")))
    return {"output": str(result.output), "steps": result.steps, "seconds": result.seconds,
            "train_loss": result.train_loss, "eval_loss": result.eval_loss, "tokens": result.tokens,
            "tokens_seen": result.tokens_seen,
            "packing_efficiency": result.packing_efficiency, "hardware": hardware(), "kept": result.kept}


def _scorer(run: Run, resolved: dict, template: str | None):
    """score(model) -> {task: value} on the request's held-out tasks (evals.during_training_limit items of
    each, default evals.limit) for the evaluations during training; None when there is nothing to score."""
    req = run.request
    limit = req.evals.limit if req.evals.during_training_limit is None else req.evals.during_training_limit
    if not req.evals.tasks or limit == 0:
        return None

    def score(model) -> dict[str, float]:
        from evals.harness import evaluate
        from factory.data.render_bounds import BoundedRenderer

        tokenizer = load_tokenizer(req, resolved["base_dir"])  # its own: lm-eval sets padding on the one it gets
        tokenizer.chat_template = template
        render = BoundedRenderer(tokenizer, template) if run.identity is not None else None
        with render or contextlib.nullcontext():
            scores = evaluate(model, tokenizer, req.evals.tasks, limit=limit, seed=req.evals.seed,
                              substitutions=run.substitutions, max_new_tokens=req.evals.max_new_tokens,
                              check=interrupt.safe_point, render=render)
        return {task: s.value for task, s in scores.items()}

    return score


def stage_merge(run: Run, resolved: dict, trained: dict) -> dict:
    from factory.train.merge import merge

    dest = run.dir / "merged"
    if run.request.rl:
        from factory.run.pair_stages import probe as pair_probe

        probe = pair_probe(run)
    else:
        train = load_encoded(run)[1]
        probe = [train[i].input_ids for i in range(min(4, len(train)))]  # a few training sequences
    check = merge(run.request, Path(resolved["base_dir"]), Path(trained["output"]), dest, probe)
    detail = (f"; max |logit diff| vs the {check['against']}: {check['max_abs_logit_diff']:.2e} "
              f"over {check['probe_tokens']} tokens") if check else ""
    run.reporter.emit(Event("merge", f"merged model saved to {dest}{detail}"))
    return {"path": str(dest), "check": check}


def stage_eval(run: Run, resolved: dict, merged: dict) -> dict:
    req = run.request
    preference = None
    if req.rl:  # held-out pairs first: the figure a preference run is for
        from factory.run.pair_stages import judge

        preference = judge(run, resolved["base_dir"], merged["path"])
    if not req.evals.tasks:
        return {"scores": {}, "preference": preference}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals.harness import evaluate
    from factory.data.render_bounds import BoundedRenderer

    if req.rl:
        from factory.run.pair_stages import load_pairs_file

        template = load_pairs_file(run)[0]
    else:
        template = encoded_store.load_template(run.dir / "data" / "encoded")
    scores = {task: {} for task in req.evals.tasks}  # the request's order, whichever model is scored first
    keyed, hits = _base_cache(run, resolved, template)
    for task, hit in hits.items():
        scores[task]["base"] = {**hit["score"], "cached": hit["computed"]}
        run.reporter.emit(Event("eval", f"{task}: base score cached from {hit['computed']} (same base, items, settings)"))
    todo = [("base", resolved["base_dir"], [t for t in req.evals.tasks if t not in hits]),
            ("finetuned", merged["path"], req.evals.tasks)]
    run.reporter.emit(Event("eval", f"scoring {'the base, then ' if todo[0][2] else ''}the finetuned model "
                                    f"on {', '.join(req.evals.tasks)}"))
    for done, (which, path, tasks) in enumerate(todo):
        run.reporter.emit(Event("eval", step=done, total=2))  # models scored of two: a page shows 1/2, not 0%
        if not tasks:
            continue
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.chat_template = template  # same prompt format for both models
        render = BoundedRenderer(tokenizer, template) if run.identity is not None else None  # a stranger's template
        with render or contextlib.nullcontext():
            for task, score in evaluate(model, tokenizer, tasks, limit=req.evals.limit, seed=req.evals.seed,
                                        substitutions=run.substitutions, max_new_tokens=req.evals.max_new_tokens,
                                        check=interrupt.safe_point, render=render).items():
                scores[task][which] = score.as_dict()
                if which == "base":
                    base_scores.store(keyed, task, score.as_dict())
        del model
    run.reporter.emit(Event("eval", step=2, total=2))
    atomic.write_json(run.dir / "eval.json", scores)
    return {"scores": scores, "preference": preference}


def _base_cache(run: Run, resolved: dict, template: str | None) -> tuple[dict, dict]:
    """Each task's base-score key, and the tasks whose base score an earlier job on this machine computed."""
    from evals.harness import task_inputs

    req = run.request
    base_dir = Path(resolved["base_dir"])
    model = base_scores.model_identity(base_dir, run.hub.name, req.base_model, resolved.get("base_revision"))
    tasks = task_inputs(req.evals.tasks, limit=req.evals.limit, seed=req.evals.seed, substitutions=run.substitutions,
                        max_new_tokens=req.evals.max_new_tokens)
    settings = {"seed": req.evals.seed, "max_new_tokens": req.evals.max_new_tokens, "apply_chat_template": True,
                "bounded_render": run.identity is not None}
    keyed = base_scores.keys(model, base_scores.dtype_of(base_dir), template, tasks, settings)
    return keyed, base_scores.cached(keyed)


def stage_card(run: Run, resolved: dict, data: dict, trained: dict, merged: dict, evaluated: dict,
               exported: dict) -> dict:
    """Card, loss curve and the sanitised request, written into the folder that will be published."""
    from factory.publish import loss_curve
    from factory.publish.card import CardFacts, build_card, card_request

    adapter_only = run.request.publish.adapter
    folder = Path(trained["output"]) if adapter_only else Path(merged["path"])
    has_curve = loss_curve.write(run.dir / "metrics.jsonl", folder / "loss.svg")
    has_margin = bool(run.request.rl) and loss_curve.write(run.dir / "metrics.jsonl", folder / "margin.svg",
                                                           loss_curve.MARGIN, "reward margin")
    has_scores = loss_curve.write(run.dir / "metrics.jsonl", folder / "scores.svg",
                                  loss_curve.scores(run.request.evals.tasks), "held-out score", y_range=(0.0, 1.0))
    facts = CardFacts(base_license=resolved.get("base_license"), base_language=resolved.get("base_language"),
                      base_revision=resolved["base_revision"], data=data, train=trained, scores=evaluated["scores"],
                      versions=versions(), merge_check=merged.get("check"), loss_image="loss.svg" if has_curve else None,
                      compute=jobs_compute(), preference=evaluated.get("preference"),
                      margin_image="margin.svg" if has_margin else None,
                      score_image="scores.svg" if has_scores else None,
                      gguf=exported if exported.get("files") else None)
    text = redact(build_card(run.request, facts))
    atomic.write_text(folder / "factory_request.yaml", card_request(run.request))
    atomic.write_text(folder / "README.md", text)
    atomic.write_text(run.dir / "README.md", text)
    return {"path": str(run.dir / "README.md"), "folder": str(folder)}


def jobs_compute() -> dict | None:
    """On Hugging Face Jobs (the worker sets FACTORY_JOBS_COMPUTE): the flavor, its price, and the cost so far."""
    import math
    import os

    raw = os.environ.get("FACTORY_JOBS_COMPUTE")
    c = json.loads(raw) if raw else {}
    if "started" not in c:  # set by `factory run --events jsonl`, the command the Jobs backend runs
        return None
    wall_min = (time.time() - float(c["started"])) / 60
    return {**c, "wall_min": wall_min, "usd": math.ceil(wall_min) * c["usd_per_hour"] / 60}


def stage_publish(run: Run, carded: dict, resolved: dict, exported: dict) -> dict:
    req = run.request
    if not req.publish.enabled:
        interrupt.commit()  # the run is complete without a publish: its end is the point of no return
        return {"skipped": "publish.enabled is false"}
    repo_id = req.hub_model_id or f"local/{run.dir.name}"
    result = run.hub.publish(repo_id, Path(carded["folder"]), f"factory: publish run {run.dir.name}",
                             private=req.publish.private, into_existing=req.publish.into_existing,
                             before_commit=interrupt.commit,  # a Ctrl-C before this stops the run; after, none is seen
                             identity=run.identity, writers=req.publish.writers)
    info = {"repo_id": result.repo_id, "revision": result.revision, "url": result.url, "hub": run.hub.name}
    atomic.write_json(run.dir / "published.json", info)
    run.reporter.emit(Event("publish", f"{result.repo_id} @ {result.revision[:12]} -> {result.url}"
                                       + ("" if result.created else " (unchanged; no new revision)")))
    if exported.get("files"):  # after the model it points to: the companion repo of its GGUF files
        info["gguf"] = publish_gguf(run, exported, result, resolved.get("base_license"))
        atomic.write_json(run.dir / "published.json", info)
    return info


def publish_gguf(run: Run, exported: dict, model, license: str | None) -> dict:
    from factory.run.export_stage import gguf_folder, gguf_repo_id

    req = run.request
    folder = gguf_folder(run, exported, model.repo_id, model.url, license)
    result = run.hub.publish(gguf_repo_id(model.repo_id), folder, f"factory: GGUF files of run {run.dir.name}",
                             private=req.publish.private, into_existing=req.publish.into_existing,
                             identity=run.identity, writers=req.publish.writers)
    run.reporter.emit(Event("publish", f"{result.repo_id} @ {result.revision[:12]} -> {result.url}"
                                       + ("" if result.created else " (unchanged; no new revision)")))
    return {"repo_id": result.repo_id, "revision": result.revision, "url": result.url,
            "files": [{k: f[k] for k in ("file", "type", "bytes", "perplexity") if k in f} for f in exported["files"]]}


class Ranks:
    """Which process this is under `accelerate launch` (one process otherwise)."""

    def __init__(self) -> None:
        import os

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.main = int(os.environ.get("RANK", "0")) == 0

    def main_first(self, wanted: bool):
        import contextlib

        if self.world == 1 or not wanted:
            return contextlib.nullcontext()
        from accelerate import PartialState

        return PartialState().main_process_first()


def _run_stage(run: Run, name: str, fn, results: dict, write_stamp: bool) -> None:
    stamped = run.stamp(name)
    if stamped is not None and name != "resolve":
        results[name] = stamped
        run.timings[name] = 0.0
        run.reporter.emit(Event(name, "already done (skipped)"))
        return
    interrupt.safe_point()
    if run.gate is not None:
        run.gate(name)
    t0 = time.time()
    results[name] = run.done(name, fn()) if write_stamp else fn()
    run.timings[name] = time.time() - t0
    if name != "publish":  # published is published: the run reports it, whatever came after the commit
        interrupt.safe_point()


STAGES = ("resolve", "data", "train", "merge", "eval", "export", "card", "publish")  # the order execute() runs them in


def execute(run: Run, stop_after: str | None = None) -> dict:
    """Run every stage in order (up to stop_after), skipping those already stamped done."""
    run.dir.mkdir(parents=True, exist_ok=True)
    if Ranks().main:
        claim_folder(run)
    results: dict[str, dict] = {}
    plan = [
        ("resolve", lambda: stage_resolve(run)),
        ("data", lambda: stage_data(run, results["resolve"])),
        ("train", lambda: stage_train(run, results["resolve"])),
        ("merge", lambda: stage_merge(run, results["resolve"], results["train"])),
        ("eval", lambda: stage_eval(run, results["resolve"], results["merge"])),
        ("export", lambda: stage_export(run, results["resolve"], results["merge"])),
        ("card", lambda: stage_card(run, results["resolve"], results["data"], results["train"],
                                    results["merge"], results["eval"], results["export"])),
        ("publish", lambda: stage_publish(run, results["card"], results["resolve"], results["export"])),
    ]
    assert tuple(name for name, _ in plan) == STAGES
    ranks = Ranks()
    if not ranks.main:
        run.reporter = MainOnly(run.reporter)
    for name, fn in plan:
        if ranks.main or name in ("resolve", "data", "train"):
            with ranks.main_first(name in ("resolve", "data")):  # one process prepares data; the others reuse it
                _run_stage(run, name, fn, results, write_stamp=ranks.main)
        if name == stop_after or (name == "train" and not ranks.main):  # merge, eval, card, publish: main only
            break
    return results
