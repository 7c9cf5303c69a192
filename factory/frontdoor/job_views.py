"""What a front door shows of a job, from the job store alone: one status line, progress with ETA, the
loss curve, the eval and contamination tables, and a failure explained. The Space and the bot both
draw from here, so a page reload or a bot restart shows exactly what it showed before.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone

from factory.queue.jobs import Job, JobEvent
from factory.run.pipeline import STAGES

OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda error: out of memory", "cannot allocate memory",
               "defaultcpuallocator: can't allocate")


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float  # of this stage: each stage counts from 0
    eta_s: float | None  # for this stage, smoothed
    step: int | None
    total: int | None
    index: int | None = None  # the stage's place in the job: 1 of len(STAGES)
    elapsed_s: float | None = None  # in this stage, as of the newest event


def progress(job: Job, events: list[JobEvent], now: datetime | None = None) -> Progress:
    stage_events = [e for e in events if e.payload.get("stage") == job.stage]
    ticks = [e for e in stage_events if e.kind == "progress"]
    last = ticks[-1].payload if ticks else {}
    started = next((e.time for e in reversed(stage_events) if e.kind == "stage"), None)
    running = job.status == "running"
    elapsed = ((now or datetime.now(timezone.utc)) - _utc(started)).total_seconds() if started and running else None
    return Progress(job.stage or job.status, 1.0 if job.status == "succeeded" else float(job.progress or 0.0),
                    smoothed_eta(ticks) if running else None, last.get("step"), last.get("total"),
                    STAGES.index(job.stage) + 1 if job.stage in STAGES else None,
                    max(elapsed, 0.0) if elapsed is not None else None)


def smoothed_eta(ticks: list[JobEvent], window: int = 7) -> float | None:
    """The stage's time left, as of its newest tick: the median of the last estimates, each moved on by the
    time since it was made. One slow step (an eval pass, a checkpoint) no longer swings it by minutes."""
    recent_ = [e for e in ticks[-window:] if e.payload.get("eta_s") is not None]
    if not recent_:
        return None
    newest = _utc(recent_[-1].time)
    return max(statistics.median(e.payload["eta_s"] - (newest - _utc(e.time)).total_seconds() for e in recent_), 0.0)


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def status_line(job: Job, events: list[JobEvent], now: datetime | None = None) -> str:
    p = progress(job, events, now)
    if job.status in ("queued", "cancelled", "succeeded"):
        return f"job {job.id}: {job.status}" + (f" -> {job.hub_model_id}" if job.hub_model_id else "")
    if job.status == "failed":
        return f"job {job.id}: failed ({first_line(job.error)})"
    where = f"stage {p.index} of {len(STAGES)}, {p.stage}" if p.index else p.stage
    if p.step is None:  # a stage that counts no steps (merge, card): how long it has run, not a 0%
        return f"job {job.id}: {where}" + (f" (running for {eta_text(p.elapsed_s)})" if p.elapsed_s is not None else "")
    eta = f", about {eta_text(p.eta_s)} left in it" if p.eta_s is not None else ""
    return f"job {job.id}: {where} {p.step}/{p.total} ({p.fraction:.0%} of this stage{eta})"


def loss_points(events: list[JobEvent]) -> list[dict]:
    """[{step, loss, split}] from the training progress events: train loss, eval loss where logged, and each
    held-out task's score at the evaluations during training (split "<task> score")."""
    points, seen = [], set()
    for e in events:
        if e.kind != "progress" or e.payload.get("stage") != "train":
            continue
        step = e.payload.get("loss_step", e.payload.get("step"))  # a loss repeats until the next logging step
        for split, key in (("train", "loss"), ("eval", "eval_loss")):
            if e.payload.get(key) is not None and (split, step) not in seen:
                seen.add((split, step))
                points.append({"step": step, "loss": float(e.payload[key]), "split": split})
        for task, value in (e.payload.get("scores") or {}).items():
            if (task, e.payload.get("step")) not in seen:
                seen.add((task, e.payload.get("step")))
                points.append({"step": e.payload.get("step"), "loss": float(value), "split": f"{task} score"})
    return points


def thinned(points: list[dict], most: int = 400) -> list[dict]:
    """At most `most` points per split, evenly spread, first and last kept: a 260-pixel plot draws no more,
    and a long job's 5,000 losses no longer travel to every polling tab every two seconds."""
    out = []
    for split in dict.fromkeys(p["split"] for p in points):
        mine = [p for p in points if p["split"] == split]
        if len(mine) > most:
            step = (len(mine) - 1) / (most - 1)
            mine = [mine[round(i * step)] for i in range(most)]
        out += mine
    return out


def eval_rows(job: Job) -> list[list]:
    """[task, metric, items, base ± stderr, finetuned ± stderr, delta] from a finished job's result."""
    rows = []
    for task, pair in ((job.result or {}).get("scores") or {}).items():
        b, f = pair.get("base", {}), pair.get("finetuned", {})
        rows.append([task, f.get("metric", ""), f.get("n", ""), _pm(b), _pm(f),
                     f"{f['value'] - b['value']:+.3f}" if "value" in f and "value" in b else ""])
    return preference_rows(job) + rows


def preference_rows(job: Job) -> list[list]:
    """A preference run's held-out pairs as eval rows: how often each model prefers the chosen answer, and the
    mean reward margin (the card explains both)."""
    p = (job.result or {}).get("preference")
    if not p or not p.get("pairs"):
        return []
    b, f = p["models"]["base"], p["models"]["finetuned"]
    name = f"held-out pairs ({p.get('method', 'preference')})"
    return [[name, "prefers chosen", p["pairs"], f"{b['accuracy']:.3f} ± {b['accuracy_se']:.3f}",
             f"{f['accuracy']:.3f} ± {f['accuracy_se']:.3f}", f"{f['accuracy'] - b['accuracy']:+.3f}"],
            [name, "reward margin", p["pairs"], f"{b['margin']:.3f} ± {b['margin_se']:.3f}",
             f"{f['margin']:.3f} ± {f['margin_se']:.3f}", f"{f['margin'] - b['margin']:+.3f}"]]


def gguf_files(job: Job) -> tuple[dict | None, list[str]]:
    """The companion GGUF repo a finished job published ({repo_id, url, ...}) and one line per file:
    type, size, perplexity, and the Ollama command that runs it."""
    from factory.base.sizes import size_text

    g = ((job.result or {}).get("published") or {}).get("gguf")
    if not g:
        return None, []
    lines = []
    for f in g.get("files", []):
        ppl = f" perplexity {f['perplexity']:.3f}," if f.get("perplexity") is not None else ""
        lines.append(f"{f['type'].upper()}: {f['file']} ({size_text(f['bytes'])},{ppl} "
                     f"`ollama run hf.co/{g['repo_id']}:{f['type'].upper()}`)")
    return g, lines


def _pm(score: dict) -> str:
    if "value" not in score:
        return ""
    return f"{score['value']:.3f}" + (f" ± {score['stderr']:.3f}" if score.get("stderr") is not None else "")


def contamination_rows(job: Job) -> list[list]:
    summary = (job.result or {}).get("contamination")
    if not summary:
        return []
    return [[name, b["items"], b["contaminated"], f"{b['rate']:.2%}"] for name, b in summary["benchmarks"].items()]


def contamination_note(job: Job) -> str:
    summary = (job.result or {}).get("contamination")
    if not summary:
        return "The training data was not checked for benchmark contamination (no contamination.benchmarks)."
    note = f"{summary['rows_flagged']} training rows overlapped (policy {summary['policy']})."
    if summary.get("malformed_rows_not_checked"):
        note += f" {summary['malformed_rows_not_checked']} rows dropped as malformed were not checked."
    return note


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


def failure(job: Job, lines: int = 12) -> str:
    """The error with its last lines, and what to change when the job ran out of memory."""
    if job.status != "failed" or not job.error:
        return ""
    text = "\n".join(job.error.strip().splitlines()[-lines:]) if len(job.error.splitlines()) > lines else job.error.strip()
    if any(m in job.error.lower() for m in OOM_MARKERS):
        text = ("The job ran out of memory. Lower micro_batch_size or sequence_len, use adapter: qlora "
                "(load_in_4bit: true), or turn on gradient_checkpointing.\n\n" + text)
    return text


def public_text(text: str) -> str:
    """A worker's message as a stranger may read it: the factory's own folders are not theirs to see."""
    from factory.base.home import factory_home

    return text.replace(str(factory_home()), "$FACTORY_HOME")


def recent(events: list[JobEvent], n: int = 8) -> list[str]:
    """The last events as lines a person reads: progress ticks left out, except the newest one when it is the
    newest event (a long stage keeps the list moving: step, loss)."""
    out = []
    for i, e in enumerate(events):
        p = e.payload
        if e.kind == "progress":
            if i == len(events) - 1 and p.get("step") is not None:
                loss = f", loss {p['loss']:.4g}" if isinstance(p.get("loss"), (int, float)) else ""
                out.append(f"{e.time:%H:%M:%S} {p['stage']} {p['step']}/{p.get('total', '?')}{loss}")
            continue
        text = (f"status -> {p['status']}" if e.kind == "status" else f"stage {p['stage']}" if e.kind == "stage"
                else p.get("message", ""))
        out.append(f"{e.time:%H:%M:%S} {public_text(text)}")
    return out[-n:]
