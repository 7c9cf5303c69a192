"""What a front door shows of a job, from the job store alone: one status line, progress with ETA, the
loss curve, the eval and contamination tables, and a failure explained. The Space and the bot both
draw from here, so a page reload or a bot restart shows exactly what it showed before.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.queue.jobs import Job, JobEvent

OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda error: out of memory", "cannot allocate memory",
               "defaultcpuallocator: can't allocate")


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float
    eta_s: float | None
    step: int | None
    total: int | None


def progress(job: Job, events: list[JobEvent]) -> Progress:
    last = next((e.payload for e in reversed(events) if e.kind == "progress"), {})
    same_stage = last.get("stage") == job.stage
    return Progress(job.stage or job.status, 1.0 if job.status == "succeeded" else float(job.progress or 0.0),
                    last.get("eta_s") if same_stage and job.status == "running" else None,
                    last.get("step") if same_stage else None, last.get("total") if same_stage else None)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def status_line(job: Job, events: list[JobEvent]) -> str:
    p = progress(job, events)
    if job.status in ("queued", "cancelled", "succeeded"):
        return f"job {job.id}: {job.status}" + (f" -> {job.hub_model_id}" if job.hub_model_id else "")
    if job.status == "failed":
        return f"job {job.id}: failed ({first_line(job.error)})"
    steps = f" {p.step}/{p.total}" if p.step is not None else ""
    eta = f", about {eta_text(p.eta_s)} left" if p.eta_s is not None else ""
    return f"job {job.id}: {p.stage}{steps} ({p.fraction:.0%}{eta})"


def loss_points(events: list[JobEvent]) -> list[dict]:
    """[{step, loss, split}] from the training progress events: train loss, and eval loss where logged."""
    points, seen = [], set()
    for e in events:
        if e.kind != "progress" or e.payload.get("stage") != "train":
            continue
        step = e.payload.get("loss_step", e.payload.get("step"))  # a loss repeats until the next logging step
        for split, key in (("train", "loss"), ("eval", "eval_loss")):
            if e.payload.get(key) is not None and (split, step) not in seen:
                seen.add((split, step))
                points.append({"step": step, "loss": float(e.payload[key]), "split": split})
    return points


def eval_rows(job: Job) -> list[list]:
    """[task, metric, items, base ± stderr, finetuned ± stderr, delta] from a finished job's result."""
    rows = []
    for task, pair in ((job.result or {}).get("scores") or {}).items():
        b, f = pair.get("base", {}), pair.get("finetuned", {})
        rows.append([task, f.get("metric", ""), f.get("n", ""), _pm(b), _pm(f),
                     f"{f['value'] - b['value']:+.3f}" if "value" in f and "value" in b else ""])
    return rows


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
