"""The Hugging Face Jobs backend (FACTORY_BACKEND=hf-jobs): a claimed job runs as a Hub Job; the worker follows it.

The queue, leases, cancel, retries and events stay the worker's. What the run needs from this machine's disk
travels with it or is refused at submit (factory/queue/carry.py). The remote side is the factory itself, in the
operator's image (FACTORY_JOBS_IMAGE, built from the project's Dockerfile): `factory run --request-env
FACTORY_REQUEST --events jsonl`, under `accelerate launch` with one process per GPU on multi-GPU flavors. The token
travels as a Jobs secret, never in the command or the environment. The Jobs id is stored with the job as soon as
it exists (and the Hub job carries the queue's labels), so a worker that takes over an expired lease re-attaches
to the running job instead of launching a second one. The job's logs are read in a thread: event lines
(factory/run/event_lines.py) become the job's events, the rest is kept as the last lines for an error. Cancel maps to
`cancel_job`; SIGTERM or a lost lease only stop the following: the Hub job runs on for the next worker.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
from collections import deque

from factory.base.errors import Stopped, UserError
from factory.base.progress import Event

BACKENDS = ("local", "hf-jobs")
PUBLISH_LABEL = "factory-publish"  # set to "go" by the worker once the queue lets the job publish
GO_POLL_S = 2.0
LAST_LINES = 12
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")


def stage_of(info) -> str:
    """A Hub job's stage as text (the client gives an enum or a string, by version)."""
    return str(getattr(info.status.stage, "value", info.status.stage))


class RemoteFailed(UserError):
    """The Hub job ended in ERROR (or without a result): the job fails with its last log lines, no retry."""


def backend() -> str:
    name = os.environ.get("FACTORY_BACKEND", "local").strip().lower() or "local"
    if name not in BACKENDS:
        raise UserError(f"FACTORY_BACKEND={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def image() -> str:
    name = os.environ.get("FACTORY_JOBS_IMAGE", "").strip()
    if not name:
        raise UserError("FACTORY_BACKEND=hf-jobs needs FACTORY_JOBS_IMAGE: a container image with the factory in it "
                        "(build the project's Dockerfile and push it, e.g. docker.io/you/model-factory:0.1)")
    return name


def command(gpus: int, run_name: str, identity: str | None = None) -> list[str]:
    """The remote command. identity: a stranger's job reads as the stranger there too (their token, or none)."""
    run = ["run", "--request-env", "FACTORY_REQUEST", "--carried-env", "FACTORY_CARRIED", "--events", "jsonl",
           "--run-name", run_name]
    if identity is not None:
        run += ["--identity", identity]
    if gpus > 1:
        return ["accelerate", "launch", "--multi_gpu", "--num_processes", str(gpus), "--num_machines", "1",
                "-m", "factory", *run]
    return ["factory", *run]


def labels(store, job_id: int) -> dict[str, str]:
    """The Hub job's labels: which queue and which of its jobs it runs (found again by a worker that takes over)."""
    return {"factory-queue": hashlib.sha256(store.where.encode()).hexdigest()[:12], "factory-job": str(int(job_id))}


class Remote:
    """One factory job's Hub job: launch or re-attach, follow its logs into the job's events, cancel."""

    def __init__(self, job, reporter, request):
        from huggingface_hub import HfApi

        from factory.hub.credentials import check_endpoint, hf_token

        self.job, self.reporter, self.request = job, reporter, request
        self.store, self.worker = reporter.store, reporter.worker
        token = self.store.job_token(job.id)  # the submitter's own sign-in bills the submitter
        self.user_token = token  # reads on a stranger's behalf use it, or none (public repos only)
        if token is None:
            token = hf_token(check_endpoint(request.hub_endpoint))
        if token is None:
            raise UserError("FACTORY_BACKEND=hf-jobs needs a Hub token to launch jobs with (HF_TOKEN or `hf auth login`)")
        self.token = token
        self.api = HfApi(endpoint=token.endpoint, token=token.value)
        self.namespace = os.environ.get("FACTORY_JOBS_NAMESPACE") or self.api.whoami()["name"]
        self.labels = labels(self.store, job.id)
        self.seen = job.remote_seen or 0
        self.last: deque[str] = deque(maxlen=LAST_LINES)
        self.result: dict | None = None

    # ---- launch or re-attach ---------------------------------------------------------------------

    def start(self) -> str:
        if self.job.remote_job:
            info = self.api.inspect_job(job_id=self.job.remote_job, namespace=self.namespace)
            self.reporter.continue_stage(self.job.stage)
            self._say(f"re-attached to Hugging Face job {info.id} ({stage_of(info)}): {info.url}", self.job.stage)
            if self.job.stage == "publish":  # the worker before may have died between the queue's yes and the label
                self._go(info.id)
            return info.id
        for info in self.api.list_jobs(labels=self.labels, namespace=self.namespace):  # launched, then the worker died
            if stage_of(info) not in TERMINAL:
                if not self._keep(info.id):
                    raise Stopped("lease-lost")
                self._say(f"adopted Hugging Face job {info.id} launched by a worker that died: {info.url}")
                return info.id
        return self._launch()

    def _launch(self) -> str:
        from factory.queue.compute import chosen, hardware

        flavor_name, timeout_s = chosen(self.request)
        flavors, prices = hardware(self.token.endpoint, self.token.value)
        if flavor_name not in flavors:
            raise UserError(f"compute.flavor: '{flavor_name}' is not a Jobs flavor; known: {', '.join(sorted(flavors))}")
        flavor = flavors[flavor_name]
        from factory.queue import carry

        carried, pieces = carry.manifest(self.request, self.api, self.user_token is not None)
        env = {"FACTORY_REQUEST": self.request.sanitized_yaml(), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "FACTORY_CARRIED": carried,
               "FACTORY_JOBS_LABELS": json.dumps(self.labels), "FACTORY_JOBS_NAMESPACE": self.namespace,
               "FACTORY_JOBS_COMPUTE": json.dumps({"flavor": flavor.name, "hardware": flavor.hardware,
                                                   "usd_per_hour": round(flavor.usd_per_min * 60, 4)})}
        from factory.hub.credentials import DEFAULT_ENDPOINT

        if self.token.endpoint != DEFAULT_ENDPOINT:
            env["HF_ENDPOINT"] = self.token.endpoint
        stranger = self.job.front_door != "cli"
        secrets = {"HF_TOKEN": self.token.value}
        if stranger and self.user_token is not None:
            secrets["FACTORY_USER_TOKEN"] = self.user_token.value
        info = self.api.run_job(image=image(), command=command(flavor.gpus, self.job.run_name,
                                                               self.job.submitter if stranger else None),
                                env=env, secrets=secrets, flavor=flavor.name, timeout=timeout_s,
                                name=f"factory-{self.job.run_name}", labels=self.labels, namespace=self.namespace)
        if not self._keep(info.id):  # the lease went while launching: the new owner adopts this one by its labels,
            if self.store.get(self.job.id).remote_job not in (None, info.id):  # unless it launched its own already
                self.api.cancel_job(job_id=info.id, namespace=self.namespace)
            raise Stopped("lease-lost")  # (an orphan never publishes: it waits for a go that never comes)
        self._say(f"launched Hugging Face job {info.id} on {flavor.name} ({flavor.hardware}, ${flavor.usd_per_min * 60:.2f}/h, "
                  f"timeout {timeout_s // 60} min; {prices}): {info.url}")
        if pieces:
            how = "in its environment" if pieces[0].inline is not None else f"through {carry.FILES_REPO_ENV}"
            self._say(f"carried {len(pieces)} file(s), {sum(p.size for p in pieces):,} bytes, {how}: "
                      + ", ".join(p.key for p in pieces))
        return info.id

    def _keep(self, remote_id: str) -> bool:
        return self.store.set_remote(self.job.id, self.worker, remote_job=remote_id)

    def _say(self, message: str, stage: str | None = None) -> None:
        self.reporter.emit(Event(stage or "launch", message))

    # ---- follow ------------------------------------------------------------------------------------

    def _go(self, remote_id: str) -> None:
        """Let the remote run publish: it waits at its publish gate for this label (see publish_gate)."""
        now = self.api.inspect_job(job_id=remote_id, namespace=self.namespace).labels or {}  # the route replaces
        self.api.update_job_labels(job_id=remote_id, labels={**now, **self.labels, PUBLISH_LABEL: "go"},  # them all
                                   namespace=self.namespace)

    def follow(self, remote_id: str) -> dict:
        from factory.run import event_lines

        self.remote_id = remote_id
        lines: queue.Queue = queue.Queue()
        done = object()

        def pump() -> None:
            try:
                for line in self.api.fetch_job_logs(job_id=remote_id, namespace=self.namespace, follow=True):
                    lines.put(line)
            except Exception as exc:  # noqa: BLE001 - the state check below decides what it means
                lines.put(f"(log stream: {type(exc).__name__}: {exc})")
            lines.put(done)

        threading.Thread(target=pump, daemon=True, name=f"hf-job-{remote_id}").start()
        try:
            while True:
                reason = self.reporter.stop_requested
                if reason == "cancel":
                    raise Stopped("cancel")
                if reason in ("preempt", "lease-lost"):  # the Hub job runs on; the next worker re-attaches
                    raise Stopped(reason)
                try:
                    item = lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is done:
                    break
                record = event_lines.parse(item)
                if record is None:
                    if item.strip():
                        self.last.append(item.rstrip())
                    continue
                self._record(record, event_lines)
        except Stopped as stop:
            if stop.reason == "cancel":
                self.api.cancel_job(job_id=remote_id, namespace=self.namespace)
            raise
        return self._outcome(remote_id)

    def _record(self, record: dict, event_lines) -> None:
        if "result" in record:  # kept even when already seen: a re-attached worker still needs it
            self.result = record["result"]
        if record["seq"] <= self.seen:
            return
        if "event" in record:
            self.reporter.emit(event_lines.to_event(record))
        elif "gate" in record:
            self.reporter.gate(str(record["gate"]))  # publish: the queue's own conditional state change
            if record["gate"] == "publish":
                self._go(self.remote_id)
        self.seen = record["seq"]
        if not self.store.set_remote(self.job.id, self.worker, seen=self.seen):
            raise Stopped("lease-lost")

    def _outcome(self, remote_id: str) -> dict:
        info = self.api.inspect_job(job_id=remote_id, namespace=self.namespace)
        stage = stage_of(info)
        if stage not in TERMINAL:  # the stream broke off: the next worker re-attaches
            raise ConnectionError(f"the log stream of Hugging Face job {remote_id} ended while it is {stage}")
        tail = "\n".join(self.last)
        if stage == "CANCELED":
            raise Stopped("cancel", f"Hugging Face job {remote_id} was cancelled on the Hub")
        if stage == "ERROR" and self._timed_out(info):
            from factory.queue.compute import chosen

            limit = chosen(self.request)[1]
            raise RemoteFailed(f"Hugging Face job {remote_id} timed out after {_span(limit)} (its timeout: "
                               "compute.timeout or FACTORY_JOBS_TIMEOUT); the Hub stopped it, nothing was published. "
                               f"Give it a longer timeout or fewer steps\n--- last lines ---\n{tail}")
        if stage != "COMPLETED" or self.result is None:
            why = info.status.message or ("it ended without a result" if stage == "COMPLETED" else stage)
            raise RemoteFailed(f"Hugging Face job {remote_id} ended in {stage}: {why}\n--- last lines ---\n{tail}")
        return {**self.result, "run_dir": f"hf-jobs:{remote_id}", "hf_job": self._bill(info)}

    def _timed_out(self, info) -> bool:
        """The Hub says so in the status message; or it ran its whole timeout (the message may say nothing)."""
        from factory.queue.compute import chosen

        message = (info.status.message or "").lower()
        if "timeout" in message or "timed out" in message:
            return True
        running = info.durations.running_secs if info.durations else None
        return running is not None and running >= chosen(self.request)[1]

    def _bill(self, info) -> dict:
        running = info.durations.running_secs if info.durations else None
        if running is None and info.started_at and info.finished_at:
            running = (info.finished_at - info.started_at).total_seconds()
        flavor = str(getattr(info.flavor, "value", info.flavor))
        out = {"id": info.id, "url": info.url, "flavor": flavor, "running_s": running}
        try:
            from factory.queue.compute import hardware

            price = hardware(self.token.endpoint, self.token.value)[0][flavor].usd_per_min
            out["usd"] = round(math.ceil((running or 0) / 60) * price, 4)
        except (UserError, KeyError):
            out["usd"] = None
        return out


def _span(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{seconds / 60:g} min" if seconds < 7200 else f"{seconds / 3600:g} h"


def publish_gate(lines):
    """The remote run's gate: print each stage's gate line; before publishing, wait until the worker says go.

    The worker says go only after the queue's conditional move into the publish stage, so a job cancelled
    before that never publishes, however late the worker reads the gate line."""
    import time

    labels = json.loads(os.environ.get("FACTORY_JOBS_LABELS") or "null")

    def gate(stage: str) -> None:
        lines.gate(stage)
        if stage != "publish" or not labels:
            return
        from huggingface_hub import HfApi

        from factory.hub.credentials import check_endpoint, hf_token

        token = hf_token(check_endpoint(None))
        api = HfApi(endpoint=token.endpoint, token=token.value)
        namespace = os.environ.get("FACTORY_JOBS_NAMESPACE") or None
        while True:
            mine = [j for j in api.list_jobs(labels=labels, namespace=namespace)
                    if stage_of(j) not in TERMINAL]
            if mine and (mine[0].labels or {}).get(PUBLISH_LABEL) == "go":
                return
            time.sleep(GO_POLL_S)

    return gate


def run_on_hf_jobs(job, reporter) -> dict:
    """The worker's runner for FACTORY_BACKEND=hf-jobs (the same checks as a local run, then the Hub job)."""
    from factory.admission.admission import readmit
    from factory.hub.choose import hub_for

    reads = hub_for(job.submitter, reporter.store.job_token(job.id)) if job.front_door != "cli" else None
    request = readmit(job.request, job.submitter, job.front_door, f"job {job.id}", reads)
    remote = Remote(job, reporter, request)
    return remote.follow(remote.start())
