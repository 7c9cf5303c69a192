"""A worker: claim a job, keep its lease alive, run the pipeline with events going to the store.

Stops on purpose at step boundaries: on cancel (job cancelled, nothing published), on SIGTERM
(checkpoint saved, job back in the queue), or when its lease was lost (another worker owns the job).
A worker killed outright leaves a lease that expires; the next worker resumes from the checkpoint.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Callable

from sqlalchemy.exc import DBAPIError

from factory.base import interrupt
from factory.base.errors import Stopped, TransientError, UserError
from factory.queue.jobs import Job, Store
from factory.base.progress import Event
from factory.base.redact import redact, scrub_paths

Runner = Callable[[Job, "JobReporter"], dict]
LAST_LINES = 12  # of the traceback, kept with a crashed job's error for the front doors


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def is_transient(exc: BaseException) -> bool:
    """Errors worth a retry: Hub 5xx/connection trouble, a full disk, a database that went away."""
    if isinstance(exc, (TransientError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(status, int) and status >= 500


class JobReporter:
    """Pipeline events -> job events. Raises Stopped at the next event once a stop is requested."""

    def __init__(self, store: Store, job: Job, worker: str, min_interval_s: float = 0.5):
        self.store, self.job, self.worker = store, job, worker
        self.stranger = job.front_door != "cli"  # a stranger's job: no worker path in what they see
        self.stop_requested: str | None = None  # 'cancel' | 'preempt' | 'lease-lost'
        self.min_interval_s = min_interval_s
        self._last_progress = float("-inf")  # the first progress event always goes through
        self._stage: str | None = None
        self._stage_start: tuple[float, int] | None = None  # (time, step) when the stage's counting began

    def check(self, stage: str | None = None) -> None:
        """A safe point of the job: raises Stopped once a stop is asked for. Preemption waits for training
        to save its checkpoint; cancel and a lost lease stop any stage."""
        if self.stop_requested in ("cancel", "lease-lost"):
            raise Stopped(self.stop_requested)
        if self.stop_requested == "preempt" and (stage or self._stage) != "train":
            raise Stopped("preempt")

    def emit(self, event: Event) -> None:
        self.check(event.stage)
        payload = {k: v for k, v in event.as_dict().items() if v not in (None, "", {})}
        counted = event.total and event.step is not None
        if event.stage != self._stage:
            self._stage, self._stage_start = event.stage, None
            self._write("stage", {"stage": event.stage}, stage=event.stage, progress=0.0)
        if counted:
            last = event.step >= event.total
            if self._stage_start is None or self._stage_start[1] > event.step:
                self._stage_start = (time.monotonic(), event.step)
            logged = event.loss is not None or any(event.extra.get(k) is not None for k in ("eval_loss", "scores"))
            if not (last or logged) and time.monotonic() - self._last_progress < self.min_interval_s:
                return  # progress is throttled; messages, logged losses and the final step always go through
            self._last_progress = time.monotonic()
            self._write("progress", self._progress_payload(event), progress=event.step / event.total)
        elif event.message:
            self._write("message", {**payload, "message": self.shown(event.message)})

    def shown(self, text: str) -> str:
        """Text as the job's submitter sees it: a stranger's without the worker's paths."""
        return scrub_paths(text) if self.stranger else text

    def _progress_payload(self, event: Event) -> dict:
        """What a front door draws: stage, step/total, fraction, ETA, and the loss point (train, eval)."""
        t0, step0 = self._stage_start
        rate = (event.step - step0) / max(time.monotonic() - t0, 1e-9)
        payload = {"stage": event.stage, "step": event.step, "total": event.total,
                   "fraction": round(event.step / event.total, 4),
                   "eta_s": round((event.total - event.step) / rate, 1) if rate > 0 else None}
        if event.loss is not None or event.extra.get("eval_loss") is not None:
            payload["loss"] = event.loss
            payload["loss_step"] = event.extra.get("step", event.step)  # the step the loss was logged at
        for key in ("eval_loss", "tokens_per_s", "scores"):  # scores: held-out task scores during training
            if event.extra.get(key) is not None:
                payload[key] = event.extra[key]
        return {k: v for k, v in payload.items() if v is not None}

    def _write(self, kind: str, payload: dict, **moves) -> None:
        if not self.store.record(self.job.id, self.worker, kind, payload, **moves):
            self.stop_requested = "lease-lost"
            raise Stopped("lease-lost")

    def continue_stage(self, stage: str | None) -> None:
        """A worker that takes over a job in the middle of a stage continues it: no second 'stage' event."""
        self._stage = stage

    def gate(self, stage: str) -> None:
        """Called before each stage runs; publishing is a conditional state change in the store."""
        if self.stop_requested:
            raise Stopped(self.stop_requested)
        self._stage = stage
        if stage != "publish":
            self._write("stage", {"stage": stage}, stage=stage, progress=0.0)
        elif reason := self.store.begin_publish(self.job.id, self.worker):
            raise Stopped(reason)


def run_pipeline(job: Job, reporter: JobReporter) -> dict:
    """The production runner: the whole pipeline in $FACTORY_HOME/runs/job-<id> (resumable)."""
    from transformers.utils import logging as hf_logging

    from factory.base.home import runs_root
    from factory.base.paths import inside
    from factory.run.pipeline import Run, execute

    hf_logging.disable_progress_bar()
    request, hub = admitted_with_hub(reporter.store, job)
    run = Run(request=request, hub=hub, reporter=reporter,
              dir=inside(runs_root(), job.run_name, what="run folder"), gate=reporter.gate,
              identity=None if job.front_door == "cli" else job.submitter)
    with interrupt.watching(reporter.check):  # cancel and preemption reach every safe point of every stage
        return summary(run, execute(run))


def admitted_with_hub(store: Store, job: Job):
    """The job's request, admitted again on this worker (the row may predate a policy change), and the hub
    its reads and publish go through."""
    from factory.admission.admission import readmit
    from factory.request.config import loads_request

    hub = job_hub(store, job, loads_request(job.request, f"job {job.id}"))
    return readmit(job.request, job.submitter, job.front_door, f"job {job.id}", hub), hub


def default_runner() -> Runner:
    """The operator's backend: the pipeline on this machine, or on Hugging Face Jobs (FACTORY_BACKEND)."""
    from factory.queue.hf_jobs import backend, run_on_hf_jobs

    return run_on_hf_jobs if backend() == "hf-jobs" else run_pipeline


def summary(run, results: dict) -> dict:
    """A finished run as a job's result: where it was published, its scores and losses."""
    published = results["publish"]
    return {"run_dir": str(run.dir), "published": published, "scores": results["eval"]["scores"],
            "preference": results["eval"].get("preference"),
            "train_loss": results["train"].get("train_loss"), "eval_loss": results["train"].get("eval_loss"),
            "contamination": results["data"].get("contamination"),
            "card_url": card_url(published) if "url" in published else None}


def job_hub(store: Store, job: Job, request):
    """The hub a job reads and publishes through. A stranger's job reads as the stranger (their sealed sign-in
    token, else public repos only) and never the operator's private repos; the operator's own jobs (`factory
    submit`) read and publish with the submitter's token when there is one, else the operator's."""
    from factory.hub.credentials import check_endpoint
    from factory.hub.choose import default_hub, stranger_job_hub

    token = store.job_token(job.id)
    if job.front_door != "cli":
        return stranger_job_hub(job.submitter, token, request.hub_endpoint)
    if token is None or os.environ.get("FACTORY_HUB", "").lower() == "local":
        return default_hub(request.hub_endpoint)
    from factory.hub.hf_hub import HfHub

    return HfHub(token, check_endpoint(request.hub_endpoint))  # refuses if the token belongs elsewhere


def card_url(published: dict) -> str:
    url = published["url"]
    return url + "/README.md" if url.startswith("file:") else url + "/blob/main/README.md"


class Worker:
    def __init__(self, store: Store, name: str | None = None, runner: Runner | None = None, out=None):
        self.store, self.runner = store, runner or default_runner()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = _env_float("FACTORY_LEASE_SECONDS", 60.0)
        self.poll_s = _env_float("FACTORY_POLL_SECONDS", 2.0)
        self.cancel_poll_s = _env_float("FACTORY_CANCEL_POLL_SECONDS", 2.0)  # how soon a cancel reaches a running job
        self.max_attempts = int(os.environ.get("FACTORY_MAX_ATTEMPTS", 3))
        self.out = out or sys.stderr
        self.exiting = False
        self.reporter: JobReporter | None = None

    def log(self, msg: str) -> None:
        print(f"[worker {self.name}] {redact(msg)}", file=self.out, flush=True)

    def _on_signal(self, signum, _frame) -> None:
        if self.exiting and signum == signal.SIGINT:  # a second Ctrl-C: stop at once; the lease expires and
            interrupt.hard_stop()                    # the next worker resumes from the last checkpoint
        self.exiting = True
        if self.reporter is not None:
            self.reporter.stop_requested = self.reporter.stop_requested or "preempt"
            self.log(f"{signal.Signals(signum).name}: saving a checkpoint at the next step, then putting job "
                     f"{self.reporter.job.id} back in the queue")

    def run(self, once: bool = False, max_jobs: int | None = None, drain: bool = False) -> int:
        """Claim and run jobs until told to stop (or, with drain, until none is claimable). Returns how many ran."""
        if threading.current_thread() is not threading.main_thread():
            return self._poll(once, max_jobs, drain)
        before = signal.signal(signal.SIGTERM, self._on_signal), signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._poll(once, max_jobs, drain)
        finally:  # a process that runs a worker for a while (a test, an embedding app) gets its handlers back
            for signum, handler in zip((signal.SIGTERM, signal.SIGINT), before):
                if handler is not None:  # None: set outside Python, cannot be put back from here
                    signal.signal(signum, handler)

    def _poll(self, once: bool, max_jobs: int | None, drain: bool) -> int:
        self.log(f"polling {self.store.where} every {self.poll_s:g}s (lease {self.lease_s:g}s)")
        ran, db_down_since = 0, None
        while not self.exiting and (max_jobs is None or ran < max_jobs):
            try:
                job = self.store.claim(self.name, self.lease_s, self.max_attempts)
                if db_down_since is not None:
                    self.log(f"database is back after {time.time() - db_down_since:.0f}s")
                    db_down_since = None
            except DBAPIError as exc:  # the database restarted or is unreachable: wait and reconnect
                if db_down_since is None:
                    db_down_since = time.time()
                    reason = str(exc.orig).strip().splitlines()[0][:120] if exc.orig else type(exc).__name__
                    self.log(f"database unavailable ({reason}); retrying every {self.poll_s:g}s")
                time.sleep(self.poll_s)
                continue
            if job is None:
                if once or drain:
                    self.log("no claimable job")
                    break
                time.sleep(self.poll_s)
                continue
            try:
                self._run_one(job)
            except DBAPIError as exc:  # could not record the outcome; the lease expires and the job is retried
                self.log(f"job {job.id}: database error while recording its outcome ({type(exc.orig).__name__}); "
                         "it returns to the queue when its lease expires")
            ran += 1
            if once:
                break
        return ran

    def _run_one(self, job: Job) -> None:
        self.log(f"job {job.id} (attempt {job.attempt}) from {job.submitter} via {job.front_door}")
        reporter = self.reporter = JobReporter(self.store, job, self.name)
        beat = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(job, reporter, beat), daemon=True)
        heart.start()
        try:
            result = self.runner(job, reporter)
            self.store.finish(job.id, self.name, "succeeded", result=result)
            self.log(f"job {job.id} succeeded")
        except Stopped as stop:
            self._stopped(job, stop.reason)
        except UserError as exc:
            self.store.finish(job.id, self.name, "failed", error=reporter.shown(str(exc)))
            self.log(f"job {job.id} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a worker outlives any one job
            self._crashed(job, exc)
        finally:
            beat.set()
            heart.join()
            self.reporter = None

    def _stopped(self, job: Job, reason: str) -> None:
        if reason == "cancel":
            self.store.finish(job.id, self.name, "cancelled", error="cancelled; nothing was published")
            self.log(f"job {job.id} cancelled")
        elif reason == "preempt":
            remote = self.store.get(job.id).remote_job
            why = (f"worker stopped (SIGTERM); Hugging Face job {remote} runs on and the next worker re-attaches to it"
                   if remote else "worker stopped (SIGTERM); resumes from its last checkpoint")
            self.store.requeue(job.id, self.name, why)
            self.log(f"job {job.id} back in the queue")
        else:
            self.log(f"job {job.id}: lease lost to another worker; leaving it to them")

    def _crashed(self, job: Job, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if is_transient(exc) and job.attempt < self.max_attempts:
            delay = min(300.0, _env_float("FACTORY_RETRY_BASE_SECONDS", 10.0) * 2 ** (job.attempt - 1))
            self.store.requeue(job.id, self.name, f"transient error, retrying: {text}", delay_s=delay)
            self.log(f"job {job.id}: transient error, back in the queue in {delay:.0f}s: {text}")
            return
        trace = traceback.format_exc()
        self.log(f"job {job.id} failed:\n{trace}")
        prefix = "gave up after repeated transient errors" if is_transient(exc) else "internal error"
        if job.front_door != "cli":  # a stranger gets the message; the traceback stays in this worker's log
            error = f"{prefix}: {scrub_paths(text)} (the operator's worker log has the details of job {job.id})"
        else:
            error = f"{prefix}: {text}\n--- last lines ---\n" + "\n".join(trace.rstrip().splitlines()[-LAST_LINES:])
        self.store.finish(job.id, self.name, "failed", error=error)

    def _heartbeat(self, job: Job, reporter: JobReporter, stop: threading.Event) -> None:
        """Renews the lease and looks for a cancel every few seconds: the job's safe points then stop it."""
        while not stop.wait(min(self.lease_s / 3, self.cancel_poll_s)):
            try:
                owned, cancel = self.store.renew(job.id, self.name, self.lease_s)
            except DBAPIError as exc:
                self.log(f"lease renewal failed ({type(exc.orig).__name__}); retrying")
                continue
            if not owned:
                reporter.stop_requested = "lease-lost"
            elif cancel and reporter.stop_requested is None:
                reporter.stop_requested = "cancel"

