"""The data, train and judging stages of a preference run (rl:), called by the pipeline in its own order.

Data: the pairs read, checked for contamination (held-out pairs included), split, tokenised and saved as
data/pairs.json. Train: the method on the training pairs. Judge: the base and the finetuned model scored on the
held-out pairs (preference.json, and the card's table).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from factory.base import atomic, interrupt
from factory.base.progress import Event
from factory.train.tokens import load_tokenizer

PAIRS_FILE = "pairs.json"


def stage_pair_data(run, resolved: dict) -> dict:
    from factory.data.chat import in_process, resolve_template
    from factory.data.data import dataset_files
    from factory.data.decontaminate import apply_policy, summary_of
    from factory.data.pair_data import load_pairs, prepare
    from factory.data.render_bounds import BoundedRenderer

    req = run.request
    tokenizer = load_tokenizer(req, resolved["base_dir"])
    template = resolve_template(req.chat_template, tokenizer)
    files = [dataset_files(spec, run.hub) for spec in req.datasets]
    pairs, reports = load_pairs(req, files)
    drop, contamination = apply_policy(req, lambda: (p.sample() for p in pairs), run.reporter, reports)
    if contamination is not None:
        atomic.write_json(run.dir / "contamination.json", contamination)

    def progress(done: int, total: int) -> None:
        run.reporter.emit(Event("data", step=done, total=total))

    bounded = BoundedRenderer(tokenizer, template) if run.identity is not None else None  # a stranger's template
    with bounded or contextlib.nullcontext():
        data = prepare(req, pairs, reports, tokenizer, bounded or in_process(tokenizer, template), drop, progress)
    atomic.write_json(run.dir / "data" / PAIRS_FILE, {"template": template,
                                                      "train": [t.as_dict() for t in data.train],
                                                      "held_out": [t.as_dict() for t in data.held_out]})
    what = "completions" if req.rl == "kto" else "pairs"
    summary = {
        "rows": sum(r.rows for r in reports), "malformed": sum(r.malformed for r in reports),
        "duplicates": sum(r.duplicates for r in reports), "same_answer_pairs": sum(r.same for r in reports),
        "train_samples": len(data.train), "eval_samples": len(data.held_out), "unit": what,
        "dropped": data.counts["over_long"], "truncated": 0,
        "train_tokens": sum(t.longest() for t in data.train),
        "datasets": [r.as_dict() for r in reports],
        "contamination": summary_of(contamination),
    }
    atomic.write_json(run.dir / "data" / "report.json", summary)
    for r in reports:
        run.reporter.emit(Event("data", f"{r.source}: {r.rows} rows, {r.used} {what} used, {r.malformed} malformed, "
                                        f"{r.duplicates} duplicates, {r.same} with chosen = rejected (dropped)"
                                        + "".join(f"\n    {x}" for x in r.examples[:3])))
    run.reporter.emit(Event("data", f"{len(data.train)} training / {len(data.held_out)} held-out {what}; "
                                    f"{data.counts['over_long']} longer than sequence_len {req.sequence_len} dropped"))
    return summary


def load_pairs_file(run) -> tuple[str, list, list]:
    from factory.data.pair_data import Tokens

    raw = json.loads((run.dir / "data" / PAIRS_FILE).read_text())
    return raw["template"], [Tokens(**t) for t in raw["train"]], [Tokens(**t) for t in raw["held_out"]]


def stage_pair_train(run, resolved: dict) -> dict:
    from factory.train.preference import train_preference

    template, train, _ = load_pairs_file(run)
    tokenizer = load_tokenizer(run.request, resolved["base_dir"])
    tokenizer.chat_template = template
    result = train_preference(run.request, Path(resolved["base_dir"]), tokenizer, train, run.dir, run.reporter)
    run.reporter.emit(Event("train", f"{result.steps} steps in {result.seconds:.1f} s, {run.request.rl} loss "
                                     f"{result.train_loss:.4f}"))
    return result


def probe(run) -> list[list[int]]:
    """A few training sequences (prompt + chosen) for the merge check."""
    _, train, _ = load_pairs_file(run)
    return [t.prompt + t.chosen for t in train[:4]]


def judge(run, base_dir: str, merged_dir: str) -> dict | None:
    """Base and finetuned model on the held-out pairs: the table (evals.preference.judge), also in preference.json.
    None when nothing was held out (KTO's held-out completions are paired by prompt: data.pair_data.paired)."""
    from transformers import AutoModelForCausalLM

    from evals.preference import judge as table, score_pairs

    req = run.request
    _, _, held = load_pairs_file(run)
    pairs = [(t.prompt, t.chosen, t.rejected) for t in held]
    if not pairs:
        return None
    scores = {}
    for done, (which, path) in enumerate((("base", base_dir), ("finetuned", merged_dir))):
        run.reporter.emit(Event("eval", f"scoring {len(pairs)} held-out pairs with the {which} model"))
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        model.config.use_cache = False
        scores[which] = score_pairs(model, pairs, tokens_per_row=max(4096, 2 * req.sequence_len),
                                    check=interrupt.safe_point)
        del model
    result = table(scores["base"], scores["finetuned"], req.beta, per_token=req.rl in ("orpo", "simpo"))
    result["method"] = req.rl
    atomic.write_json(run.dir / "preference.json", result)
    b, f = result["models"]["base"], result["models"]["finetuned"]
    run.reporter.emit(Event("eval", f"held-out preference accuracy {b['accuracy']:.1%} -> {f['accuracy']:.1%} "
                                    f"({result['pairs']} pairs); margin {b['margin']:+.3f} -> {f['margin']:+.3f}"))
    return result
