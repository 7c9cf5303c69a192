"""The queue's commands: submit, jobs, status, logs, cancel, worker. No torch until a worker runs a job."""

from __future__ import annotations

import getpass
import os
import time

STATUS_HELP = """\
job lifecycle: queued -> running -> succeeded | failed | cancelled
A running job whose worker dies goes back to queued when its lease expires and resumes from its
last checkpoint. The queue is $FACTORY_HOME/jobs.db (SQLite) unless FACTORY_DB_URL names a
PostgreSQL database (postgresql+psycopg://user@host/db) shared by workers on several machines.
"""


def submitter() -> str:
    return os.environ.get("FACTORY_SUBMITTER") or f"cli:{getpass.getuser()}"


def _store():
    from factory.queue.jobs import Store

    return Store()


def _age(t) -> str:
    from factory.queue.jobs import now

    if t is None:
        return "-"
    s = (now() - t).total_seconds()
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction:4.0%}"


def cmd_submit(args) -> int:
    from factory.request.config import load_request

    store = _store()
    request = load_request(args.request)
    job_id = store.submit(request, submitter(), "cli")
    print(f"job {job_id} queued ({store.where}); follow it with `factory logs {job_id} --follow`")
    return 0


def cmd_jobs(args) -> int:
    rows = _store().list(status=args.status, limit=args.limit)
    if not rows:
        print("no jobs" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(f"{'id':>5}  {'status':10} {'stage':8} {'progress':>8}  {'submitter':20} {'via':8} {'created':>9}  model")
    for j in rows:
        print(f"{j.id:>5}  {j.status:10} {j.stage or '-':8} {j.progress:>8.0%}  {j.submitter[:20]:20} "
              f"{j.front_door:8} {_age(j.created):>9}  {j.hub_model_id or '-'}")
    return 0


def _event_line(e) -> str:
    p = e.payload
    if e.kind == "status":
        extra = ", ".join(f"{k}={v}" for k, v in p.items() if k not in ("status", "result"))
        return f"status -> {p['status']}" + (f" ({extra})" if extra else "")
    if e.kind == "stage":
        return f"stage {p['stage']}"
    if e.kind == "progress":
        loss = f" loss {p['loss']:.4f}" if p.get("loss") is not None else ""
        return f"{p['stage']} step {p['step']}/{p['total']}{loss}"
    return f"[{p.get('stage', '-')}] {p.get('message', '')}"


def cmd_status(args) -> int:
    store = _store()
    j = store.get(args.id)
    print(f"job {j.id}: {j.status}  (attempt {j.attempt}, submitted by {j.submitter} via {j.front_door}, {_age(j.created)})")
    if j.status == "running":
        print(f"  stage {j.stage or '-'} {_bar(j.progress)}  worker {j.lease_owner}")
    if j.cancel_requested and j.status == "running":
        print(f"  cancel requested by {j.cancelled_by}")
    if j.result and j.result.get("published", {}).get("url"):
        print(f"  published: {j.result['published']['url']}")
    if j.error:
        print(f"  error: {j.error}")
    print("  last events:")
    for e in store.events(j.id)[-args.events:]:
        print(f"    {e.time:%H:%M:%S} {_event_line(e)}")
    return 0


def cmd_logs(args) -> int:
    from factory.queue.jobs import TERMINAL

    store = _store()
    store.get(args.id)  # a clear error for an unknown id
    since = 0
    while True:
        for e in store.events(args.id, since):
            print(f"{e.time:%Y-%m-%d %H:%M:%S} {_event_line(e)}", flush=True)
            since = e.id
        if not args.follow or store.get(args.id).status in TERMINAL:
            return 0
        time.sleep(1.0)


def cmd_cancel(args) -> int:
    j = _store().cancel(args.id, submitter())
    print(f"job {j.id}: " + ("cancelled" if j.status == "cancelled" else "cancel requested; it stops at its next step"))
    return 0


def cmd_worker(args) -> int:
    from factory.queue.worker import Worker

    worker = Worker(_store())
    ran = worker.run(once=args.once, max_jobs=args.max_jobs, drain=args.drain)
    worker.log(f"ran {ran} job(s); exiting")
    return 0


def add_commands(sub) -> None:
    import argparse

    raw = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("submit", help="validate a request and put it in the job queue")
    s.add_argument("request", help="the request YAML")
    s.set_defaults(fn=cmd_submit)
    j = sub.add_parser("jobs", help="list jobs, newest first", epilog=STATUS_HELP, formatter_class=raw)
    j.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    j.add_argument("--limit", type=int, default=30)
    j.set_defaults(fn=cmd_jobs)
    st = sub.add_parser("status", help="one job: stage, progress bar, last events, result URL")
    st.add_argument("id", type=int)
    st.add_argument("--events", type=int, default=8, help="how many recent events to show (default 8)")
    st.set_defaults(fn=cmd_status)
    lg = sub.add_parser("logs", help="a job's events; --follow until it ends")
    lg.add_argument("id", type=int)
    lg.add_argument("--follow", "-f", action="store_true")
    lg.set_defaults(fn=cmd_logs)
    c = sub.add_parser("cancel", help="cancel a job (a running one stops at its next step; nothing is published)")
    c.add_argument("id", type=int)
    c.set_defaults(fn=cmd_cancel)
    w = sub.add_parser("worker", help="run queued jobs; SIGTERM puts the current job back with a checkpoint",
                       epilog=STATUS_HELP + "\nsettings: FACTORY_LEASE_SECONDS (60), FACTORY_POLL_SECONDS (2), "
                       "FACTORY_MAX_ATTEMPTS (3), FACTORY_RETRY_BASE_SECONDS (10)\n"
                       "backend: FACTORY_BACKEND=local (default: jobs run on this machine) or hf-jobs (each job runs as "
                       "a Hugging Face Job: FACTORY_JOBS_IMAGE, FACTORY_JOBS_FLAVOR, FACTORY_JOBS_TIMEOUT, "
                       "FACTORY_JOBS_NAMESPACE; see the README)", formatter_class=raw)
    w.add_argument("--once", action="store_true", help="run at most one job, then exit (exit at once if none is queued)")
    w.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    w.add_argument("--drain", action="store_true", help="exit when no job is claimable instead of waiting for more")
    w.set_defaults(fn=cmd_worker)

