"""What the bot writes, always within Discord's limits: 2,000 characters a message; an embed's title 256,
description 4,096, at most 25 fields (name 256, value 1,024), 6,000 characters in all."""

from __future__ import annotations

import discord

from factory.frontdoor import job_views
from factory.queue.jobs import Job, JobEvent

MESSAGE = 2000
TITLE, DESCRIPTION, FIELDS, FIELD_NAME, FIELD_VALUE, EMBED_TOTAL = 256, 4096, 25, 256, 1024, 6000
MILESTONES = (0.25, 0.5, 0.75)  # progress messages per stage: a few, not one per step


def split(text: str, limit: int = MESSAGE) -> list[str]:
    """Messages of at most limit characters, cut at line ends where possible (code fences kept closed)."""
    out, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:  # a single line longer than a message
            if current:
                out.append(current)
                current = ""
            out.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            out.append(current)
            current = ""
        current += line
    if current or not out:
        out.append(current)
    return [_close_fences(m, limit) for m in out]


def _close_fences(message: str, limit: int) -> str:
    if message.count("```") % 2:
        message = message[: limit - 4] + "\n```" if len(message) + 4 > limit else message + "\n```"
    return message


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def embed_total(embed: discord.Embed) -> int:
    return (len(embed.title or "") + len(embed.description or "") + len(embed.footer.text or "")
            + sum(len(f.name or "") + len(f.value or "") for f in embed.fields))


def fit(embed: discord.Embed) -> discord.Embed:
    """Trim an embed to Discord's limits (fields beyond the budget are dropped, with a note)."""
    fitted = discord.Embed(title=_cut(embed.title or "", TITLE), description=_cut(embed.description or "", DESCRIPTION),
                           colour=embed.colour, url=embed.url)
    budget = EMBED_TOTAL - len(fitted.title or "") - len(fitted.description or "") - 60
    dropped = 0
    for f in embed.fields:
        name, value = _cut(f.name or "-", FIELD_NAME), _cut(f.value or "-", FIELD_VALUE)
        if len(fitted.fields) >= FIELDS - 1 or len(name) + len(value) > budget:
            dropped += 1
            continue
        fitted.add_field(name=name, value=value, inline=f.inline)
        budget -= len(name) + len(value)
    if dropped:
        fitted.set_footer(text=f"{dropped} more not shown; see the model card")
    return fitted


def refusal(text: str) -> list[str]:
    """A refusal, as private messages: the validator's lines, split to the limit."""
    return split("Not accepted:\n" + text.strip())


def result_embed(job: Job) -> discord.Embed:
    """The end of a job: eval table, contamination, Hub link; or the error with its last lines."""
    if job.status == "succeeded":
        url = (job.result or {}).get("published", {}).get("url")
        embed = discord.Embed(title=f"Job {job.id} succeeded: {job.hub_model_id}", url=url if url and url.startswith("http") else None,
                              description=f"Published: {url}" if url else "Not published.", colour=0x2ECC71)
        gguf, files = job_views.gguf_files(job)
        if gguf:  # first: what most people run a small model with, ahead of a long eval table
            embed.add_field(name=f"GGUF for llama.cpp / Ollama: {gguf['repo_id']}", value="\n".join(files), inline=False)
        for task, metric, n, base, tuned, delta in job_views.eval_rows(job):
            embed.add_field(name=f"{task} ({metric}, {n} items)", value=f"base {base}\nfinetuned {tuned}\ndelta {delta}")
        embed.add_field(name="Benchmark contamination", value=job_views.contamination_note(job), inline=False)
        return fit(embed)
    if job.status == "failed":
        text = job_views.failure(job)
        return fit(discord.Embed(title=f"Job {job.id} failed", description=f"```\n{_cut(text, DESCRIPTION - 10)}\n```",
                                 colour=0xE74C3C))
    return fit(discord.Embed(title=f"Job {job.id} {job.status}", colour=0x95A5A6))


def milestone(event: JobEvent, previous: JobEvent | None) -> str | None:
    """The thread's line for an event, or None when it is not a milestone (most progress ticks are not)."""
    p = event.payload
    if event.kind == "stage":
        return f"**{p['stage']}** started"
    if event.kind == "message":
        return _cut(job_views.public_text(p.get("message", "")), MESSAGE) or None
    if event.kind == "status":
        return None if p.get("status") in ("succeeded", "failed") else f"status: {p.get('status')}"  # those get an embed
    if event.kind != "progress" or p.get("total") is None:
        return None
    last = previous.payload.get("fraction", 0.0) if previous is not None else 0.0
    crossed = [m for m in MILESTONES if last < m <= p.get("fraction", 0.0)]
    if not crossed:
        return None
    line = f"{p['stage']}: {p['step']}/{p['total']} ({p['fraction']:.0%})"
    if p.get("loss") is not None:
        line += f", loss {p['loss']:.4f}"
    if p.get("eta_s") is not None:
        line += f", about {job_views.eta_text(p['eta_s'])} left"
    return line


def status_text(job: Job, events: list[JobEvent]) -> str:
    lines = [job_views.status_line(job, events), *job_views.recent(events, 5)]
    if job.status == "failed":
        lines.append(job_views.failure(job, lines=6))
    return "\n".join(split("\n".join(lines))[:1])
