"""The job queue: a jobs table and an events table (SQLAlchemy 2), and every state change of a job.

SQLite file under $FACTORY_HOME by default (WAL, every transaction BEGIN IMMEDIATE so writers queue
instead of failing); `FACTORY_DB_URL=postgresql+psycopg://...` for a queue shared by many machines
(claims use FOR UPDATE SKIP LOCKED). Every change that depends on the current state is one
conditional UPDATE, so two workers can never both own a job, and a cancelled job can never reach
its publish stage. Times are naive UTC from the worker's clock (keep the machines' clocks in sync).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from sqlalchemy import (JSON, Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table,
                        Text, and_, create_engine, event, func, insert, or_, select, text, update)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from factory.request.config import Request
from factory.base.errors import DiskFull, UserError
from factory.base.redact import redact

FrontDoor = Literal["cli", "discord", "space"]
TERMINAL = ("succeeded", "failed", "cancelled")

metadata = MetaData()
versions = Table(
    "factory_schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied", DateTime, nullable=False),
)
jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request", Text, nullable=False),  # the validated request as YAML (it has no secret fields)
    Column("hub_model_id", String(200)),
    Column("submitter", String(200), nullable=False, index=True),
    Column("front_door", String(16), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("stage", String(32)),
    Column("progress", Float, nullable=False, default=0.0),
    Column("attempt", Integer, nullable=False, default=0),
    Column("lease_owner", String(200)),
    Column("lease_expires", DateTime),
    Column("not_before", DateTime),  # retry backoff: not claimable before this time
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("cancelled_by", String(200)),
    Column("created", DateTime, nullable=False, index=True),
    Column("started", DateTime),
    Column("finished", DateTime),
    Column("result", JSON),
    Column("error", Text),
    Column("remote_job", String(200)),  # the Hugging Face Jobs id running it (FACTORY_BACKEND=hf-jobs)
    Column("remote_seen", Integer),  # the last event line of that job recorded here (event_lines seq)
    Column("run_token", String(32)),  # the run folder is job-<id>-<run_token>: one job's for ever, whatever the database
)
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False, index=True),
    Column("time", DateTime, nullable=False),
    Column("kind", String(16), nullable=False),  # status | stage | progress | message
    Column("payload", JSON, nullable=False),
)


job_secrets = Table(  # per-user Hub tokens, sealed (factory/base/sealed.py), bound to one job, deleted when it ends
    "job_secrets", metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("endpoint", String(300), nullable=False),
)
deliveries = Table(  # how far a front door has delivered a job's events to one target (a thread, a webhook)
    "deliveries", metadata,
    Column("front_door", String(16), primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("cursor", Integer, nullable=False, default=0),  # the last delivered event id
    Column("owner", String(200)),  # the deliverer holding it now, until lease_expires
    Column("lease_expires", DateTime),
)


def _v1(conn) -> None:
    for table in (jobs, events):
        table.create(conn, checkfirst=True)


def _v2(conn) -> None:
    for table in (job_secrets, deliveries):
        table.create(conn, checkfirst=True)


def _v3(conn) -> None:
    from sqlalchemy import inspect

    have = {c["name"] for c in inspect(conn).get_columns("jobs")}  # a database made at v3 has them from _v1
    for name, kind in (("remote_job", "VARCHAR(200)"), ("remote_seen", "INTEGER")):
        if name not in have:
            conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {name} {kind}"))


def _v4(conn) -> None:
    from sqlalchemy import inspect

    if "run_token" not in {c["name"] for c in inspect(conn).get_columns("jobs")}:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN run_token VARCHAR(32)"))


# Append-only: (version, description, step). A step takes a connection inside the migration transaction.
MIGRATIONS = [(1, "jobs and events tables", _v1), (2, "sealed per-user tokens and delivery cursors", _v2),
              (3, "the Hugging Face Jobs id of a job and how far its logs were read", _v3),
              (4, "a unique token naming each job's run folder", _v4)]


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_run_token() -> str:
    import secrets

    return secrets.token_hex(8)


def default_url() -> str:
    from factory.base.home import factory_home

    if os.environ.get("FACTORY_DB_URL"):
        return os.environ["FACTORY_DB_URL"]
    return f"sqlite:///{factory_home() / 'jobs.db'}"


@dataclass(frozen=True)
class Limits:
    """Per-submitter limits set by the operator (0 = no limit). Operators are exempt."""
    queued: int = 10
    per_day: int = 50
    operators: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls) -> "Limits":
        ops = frozenset(o.strip() for o in os.environ.get("FACTORY_OPERATORS", "").split(",") if o.strip())
        return cls(int(os.environ.get("FACTORY_MAX_QUEUED_PER_SUBMITTER", cls.queued)),
                   int(os.environ.get("FACTORY_MAX_JOBS_PER_DAY", cls.per_day)), ops)


@dataclass(frozen=True)
class Job:
    id: int
    request: str
    hub_model_id: str | None
    submitter: str
    front_door: str
    status: str
    stage: str | None
    progress: float
    attempt: int
    lease_owner: str | None
    lease_expires: datetime | None
    cancel_requested: bool
    cancelled_by: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    result: dict | None
    error: str | None
    remote_job: str | None = None
    remote_seen: int | None = None
    run_token: str | None = None

    @property
    def run_name(self) -> str:
        """The job's run folder under $FACTORY_HOME/runs: its id and a token no other job, in any database, has."""
        return f"job-{int(self.id)}-{self.run_token}"

    @classmethod
    def from_row(cls, row) -> "Job":
        m = row._mapping
        return cls(**{k: m[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: int
    time: datetime
    kind: str
    payload: dict


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks


class Store:
    """All reads and state changes of jobs. One per process; safe to share between threads."""

    def __init__(self, url: str | None = None, limits: Limits | None = None, clock=None):
        self.url = url or default_url()
        self.now = clock or now  # injectable, so lease tests step time instead of sleeping
        self.limits = limits or Limits.from_env()
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url, pool_pre_ping=True)
        self.is_pg = self.engine.dialect.name == "postgresql"
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        self._migrate()

    @property
    def where(self) -> str:
        return redact(self.engine.url.render_as_string(hide_password=True))

    def _tx(self):
        return self.engine.begin()

    def _migrate(self) -> None:
        with self._tx() as conn:
            if self.is_pg:
                conn.execute(text("SELECT pg_advisory_xact_lock(7231001)"))  # one migrator at a time
            versions.create(conn, checkfirst=True)
            current = conn.scalar(select(func.max(versions.c.version))) or 0
            for version, description, step in MIGRATIONS:
                if version > current:
                    step(conn)
                    conn.execute(insert(versions).values(version=version, description=description, applied=self.now()))

    def schema_version(self) -> int:
        with self._tx() as conn:
            return conn.scalar(select(func.max(versions.c.version))) or 0

    # ---- front doors -------------------------------------------------------------------------

    def submit(self, request: Request | str, submitter: str, front_door: FrontDoor,
               hub_token: str | None = None) -> int:
        """Validate and enqueue. An invalid request or a limit raises UserError and writes nothing.

        Requests from front doors ("space", "discord") also pass the strangers' policy
        (factory/admission/remote_policy.py). hub_token, a per-user Hub token, is kept sealed for this job only."""
        from factory.admission.admission import admit

        request = admit(request, submitter, front_door, hub_token)
        from factory.queue.hf_jobs import backend

        if backend() == "hf-jobs":  # what the remote run needs from this disk travels with it, or it is refused now
            from factory.queue import carry

            carry.check(request, user_token=bool(hub_token))  # launched under it: inline files only
        stranger = front_door != "cli"
        sealed, note = self._seal(hub_token)
        t = self.now()
        try:
            with self._tx() as conn:
                self._check_limits(conn, submitter, t)
                job_id = conn.execute(insert(jobs).values(
                    request=request.sanitized_yaml(), hub_model_id=request.hub_model_id, submitter=submitter,
                    front_door=front_door, status="queued", progress=0.0, attempt=0, cancel_requested=False,
                    created=t, run_token=new_run_token()).returning(jobs.c.id)).scalar_one()
                if stranger and not request.hub_model_id:  # named after the job, which has an id only now
                    from factory.admission.remote_policy import default_repo_name

                    request = request.model_copy(update={"hub_model_id": default_repo_name(request, submitter, job_id)})
                    conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                        request=request.sanitized_yaml(), hub_model_id=request.hub_model_id))
                if sealed is not None:
                    from factory.hub.credentials import operator_endpoint

                    conn.execute(insert(job_secrets).values(job_id=job_id, sealed=sealed, endpoint=operator_endpoint()))
                self._event(conn, job_id, "status", {"status": "queued", "by": submitter, "front_door": front_door,
                                                     "hub_model_id": request.hub_model_id}, t)
                if note:
                    self._event(conn, job_id, "message", {"message": note}, t)
        except OperationalError as exc:
            raise self._explain(exc) from None
        return job_id

    def _seal(self, hub_token: str | None) -> tuple[str | None, str | None]:
        """(the sealed token, None), or (None, a note for the job's events) when it cannot be kept."""
        if not hub_token:
            return None, None
        from factory.base.redact import register
        from factory.base.sealed import seal, secret_key

        register(hub_token)
        if secret_key() is None:
            return None, ("your sign-in token was not kept (FACTORY_SECRET_KEY is not set on this factory); "
                          "the operator's token is used for this job")
        return seal(hub_token), None

    def job_token(self, job_id: int):
        """The job's per-user token (a credentials.Token bound to its endpoint), or None."""
        from factory.hub.credentials import Token
        from factory.base.sealed import unseal

        with self._tx() as conn:
            row = conn.execute(select(job_secrets).where(job_secrets.c.job_id == job_id)).first()
        if row is None:
            return None
        return Token(unseal(row.sealed), "the submitter's sign-in", row.endpoint)

    @staticmethod
    def _forget_token(conn, job_id: int) -> None:
        conn.execute(job_secrets.delete().where(job_secrets.c.job_id == job_id))

    def _check_limits(self, conn, submitter: str, t: datetime) -> None:
        lim = self.limits
        if submitter in lim.operators or not (lim.queued or lim.per_day):
            return
        if self.is_pg:  # serialise one submitter's submissions so two at once cannot both pass the limit
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(submitter.encode())})
        if lim.queued:
            queued = conn.scalar(select(func.count()).where(jobs.c.submitter == submitter, jobs.c.status == "queued"))
            if queued >= lim.queued:
                raise UserError(f"{submitter} already has {queued} queued jobs (limit FACTORY_MAX_QUEUED_PER_SUBMITTER="
                                f"{lim.queued}); a slot frees when one of them starts or is cancelled")
        if lim.per_day:
            window = and_(jobs.c.submitter == submitter, jobs.c.created > t - timedelta(days=1))
            today = conn.scalar(select(func.count()).where(window))
            if today >= lim.per_day:
                oldest = conn.scalar(select(func.min(jobs.c.created)).where(window))
                raise UserError(f"{submitter} submitted {today} jobs in the last 24 hours (limit FACTORY_MAX_JOBS_PER_DAY="
                                f"{lim.per_day}); the next one can be submitted after "
                                f"{oldest + timedelta(days=1):%Y-%m-%d %H:%M} UTC")

    def get(self, job_id: int) -> Job:
        with self._tx() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise UserError(f"no job {job_id}; `factory jobs` lists them")
        return Job.from_row(row)

    def list(self, status: str | None = None, submitter: str | None = None, limit: int = 50) -> list[Job]:
        q = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if status:
            q = q.where(jobs.c.status == status)
        if submitter:
            q = q.where(jobs.c.submitter == submitter)
        with self._tx() as conn:
            return [Job.from_row(r) for r in conn.execute(q)]

    def events(self, job_id: int, since: int = 0) -> list[JobEvent]:
        """Events of a job with id > since, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(select(events).where(events.c.job_id == job_id, events.c.id > since)
                                .order_by(events.c.id)).all()
        return [JobEvent(r.id, r.job_id, r.time, r.kind, r.payload) for r in rows]

    def cancel(self, job_id: int, by: str, operator: bool = False) -> Job:
        """A queued job is cancelled at once; a running one stops at its next step boundary.

        operator: the front door vouches that `by` is an operator there (Discord's operator roles)."""
        job = self.get(job_id)
        if by != job.submitter and by not in self.limits.operators and not operator:
            raise UserError(f"{by} may not cancel job {job_id}: only its submitter ({job.submitter}) or an operator "
                            "(FACTORY_OPERATORS) can")
        t = self.now()
        with self._tx() as conn:
            done = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued").values(
                status="cancelled", cancel_requested=True, cancelled_by=by, finished=t, lease_owner=None)).rowcount
            if done:
                self._forget_token(conn, job_id)
                self._event(conn, job_id, "status", {"status": "cancelled", "by": by}, t)
            else:
                done = conn.execute(update(jobs).where(
                    jobs.c.id == job_id, jobs.c.status == "running", or_(jobs.c.stage.is_(None), jobs.c.stage != "publish"),
                ).values(cancel_requested=True, cancelled_by=by)).rowcount
                if done:
                    self._event(conn, job_id, "message", {"message": f"cancel requested by {by}; "
                                                          "the job stops at its next step boundary"}, t)
        if not done:
            job = self.get(job_id)
            if job.status == "running":
                raise UserError(f"job {job_id} is already publishing; it can no longer be cancelled")
            raise UserError(f"job {job_id} is already {job.status}; nothing to cancel")
        return self.get(job_id)

    # ---- delivery cursors (front doors that report progress somewhere) ------------------------

    def take_events(self, front_door: str, job_id: int, target: str, owner: str, lease_s: float = 60.0,
                    limit: int = 100) -> list[JobEvent]:
        """The events after this target's cursor, for owner to deliver, under a lease on the target.

        [] when another deliverer holds the target. Deliver them in order and `ack_event` each one:
        a deliverer that dies mid-way leaves the cursor after the last one it acknowledged."""
        t = self.now()
        key = and_(deliveries.c.front_door == front_door, deliveries.c.job_id == job_id, deliveries.c.target == target)
        with self._tx() as conn:
            ins = (pg_insert if self.is_pg else sqlite_insert)(deliveries).values(
                front_door=front_door, job_id=job_id, target=target, cursor=0).on_conflict_do_nothing()
            conn.execute(ins)
            q = select(deliveries).where(key)
            row = conn.execute(q.with_for_update() if self.is_pg else q).one()
            if row.owner not in (None, owner) and row.lease_expires is not None and row.lease_expires > t:
                return []
            conn.execute(update(deliveries).where(key).values(owner=owner, lease_expires=t + timedelta(seconds=lease_s)))
            rows = conn.execute(select(events).where(events.c.job_id == job_id, events.c.id > row.cursor)
                                .order_by(events.c.id).limit(limit)).all()
        return [JobEvent(r.id, r.job_id, r.time, r.kind, r.payload) for r in rows]

    def ack_event(self, front_door: str, job_id: int, target: str, owner: str, event_id: int) -> bool:
        """Move the cursor past event_id. False when owner no longer holds the target (stop delivering)."""
        with self._tx() as conn:
            return conn.execute(update(deliveries).where(
                deliveries.c.front_door == front_door, deliveries.c.job_id == job_id, deliveries.c.target == target,
                deliveries.c.owner == owner, deliveries.c.lease_expires >= self.now(), deliveries.c.cursor < event_id,
            ).values(cursor=event_id)).rowcount == 1

    def release_target(self, front_door: str, job_id: int, target: str, owner: str) -> None:
        with self._tx() as conn:
            conn.execute(update(deliveries).where(
                deliveries.c.front_door == front_door, deliveries.c.job_id == job_id, deliveries.c.target == target,
                deliveries.c.owner == owner).values(owner=None, lease_expires=None))

    def delivery_targets(self, front_door: str, unfinished_only: bool = True) -> list[tuple[int, str]]:
        """(job id, target) of every target a front door delivers to (of jobs not yet delivered to the end)."""
        last = select(func.max(events.c.id)).where(events.c.job_id == deliveries.c.job_id).scalar_subquery()
        q = select(deliveries.c.job_id, deliveries.c.target).where(deliveries.c.front_door == front_door)
        if unfinished_only:
            q = q.where(deliveries.c.cursor < func.coalesce(last, 0))
        with self._tx() as conn:
            return [(r.job_id, r.target) for r in conn.execute(q.order_by(deliveries.c.job_id))]

    def add_target(self, front_door: str, job_id: int, target: str) -> None:
        """Register a target (a Discord thread) to receive a job's events from the first one on."""
        with self._tx() as conn:
            conn.execute((pg_insert if self.is_pg else sqlite_insert)(deliveries).values(
                front_door=front_door, job_id=job_id, target=target, cursor=0).on_conflict_do_nothing())

    def delivered_upto(self, front_door: str, job_id: int, target: str) -> int:
        with self._tx() as conn:
            return conn.scalar(select(deliveries.c.cursor).where(
                deliveries.c.front_door == front_door, deliveries.c.job_id == job_id,
                deliveries.c.target == target)) or 0

    # ---- workers -----------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float, max_attempts: int = 3) -> Job | None:
        """Take the oldest claimable job: queued (past its backoff), or running with an expired lease."""
        t = self.now()
        with self._tx() as conn:
            self._give_up_on_lost(conn, t, max_attempts)
            claimable = or_(
                and_(jobs.c.status == "queued", or_(jobs.c.not_before.is_(None), jobs.c.not_before <= t)),
                and_(jobs.c.status == "running", jobs.c.lease_expires < t),
            )
            q = select(jobs.c.id, jobs.c.status, jobs.c.lease_owner).where(claimable).order_by(jobs.c.id).limit(1)
            row = conn.execute(q.with_for_update(skip_locked=True) if self.is_pg else q).first()
            if row is None:
                return None
            conn.execute(update(jobs).where(jobs.c.id == row.id).values(
                status="running", lease_owner=worker, lease_expires=t + timedelta(seconds=lease_s),
                attempt=jobs.c.attempt + 1, started=func.coalesce(jobs.c.started, t), not_before=None,
                run_token=func.coalesce(jobs.c.run_token, new_run_token())))  # rows from before v4 get theirs now
            payload = {"status": "running", "worker": worker}
            if row.status == "running":
                payload["resumed_after_lost_worker"] = row.lease_owner
            self._event(conn, row.id, "status", payload, t)
            job = Job.from_row(conn.execute(select(jobs).where(jobs.c.id == row.id)).one())
        return job

    def _give_up_on_lost(self, conn, t: datetime, max_attempts: int) -> None:
        lost = conn.execute(select(jobs.c.id, jobs.c.attempt).where(
            jobs.c.status == "running", jobs.c.lease_expires < t, jobs.c.attempt >= max_attempts)).all()
        for job_id, attempt in lost:
            error = f"the worker was lost {attempt} times (lease expired); giving up"
            if conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.lease_expires < t)
                            .values(status="failed", error=error, finished=t, lease_owner=None)).rowcount:
                self._forget_token(conn, job_id)
                self._event(conn, job_id, "status", {"status": "failed", "error": error}, t)

    def renew(self, job_id: int, worker: str, lease_s: float) -> tuple[bool, bool]:
        """Extend the lease. Returns (still the owner, cancel requested)."""
        t = self.now()
        with self._tx() as conn:
            owned = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == worker,
                                                    jobs.c.status == "running")
                                 .values(lease_expires=t + timedelta(seconds=lease_s))).rowcount == 1
            cancel = conn.scalar(select(jobs.c.cancel_requested).where(jobs.c.id == job_id))
        return owned, bool(cancel)

    def record(self, job_id: int, worker: str, kind: str, payload: dict, stage: str | None = None,
               progress: float | None = None) -> bool:
        """Append an event from the owning worker (and move stage/progress). False when no longer the owner."""
        values = {k: v for k, v in (("stage", stage), ("progress", progress)) if v is not None}
        t = self.now()
        with self._tx() as conn:
            ok = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == worker,
                                                 jobs.c.status == "running")
                              .values(**(values or {"progress": jobs.c.progress}))).rowcount == 1
            if ok:
                self._event(conn, job_id, kind, payload, t)
        return ok

    def begin_publish(self, job_id: int, worker: str) -> str | None:
        """Enter the publish stage. None when allowed, else the reason ('cancel' or 'lease-lost')."""
        with self._tx() as conn:
            ok = conn.execute(update(jobs).where(
                jobs.c.id == job_id, jobs.c.lease_owner == worker, jobs.c.status == "running",
                jobs.c.cancel_requested.is_(False)).values(stage="publish", progress=0.0)).rowcount == 1
            if ok:
                self._event(conn, job_id, "stage", {"stage": "publish"}, self.now())
                return None
            row = conn.execute(select(jobs.c.lease_owner, jobs.c.status, jobs.c.cancel_requested)
                               .where(jobs.c.id == job_id)).one()
        return "cancel" if row.cancel_requested and row.lease_owner == worker else "lease-lost"

    def finish(self, job_id: int, worker: str, status: str, result: dict | None = None, error: str | None = None) -> bool:
        assert status in TERMINAL
        t = self.now()
        error = redact(error) if error else None
        with self._tx() as conn:
            ok = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == worker,
                                                 jobs.c.status == "running")
                              .values(status=status, result=result, error=error, finished=t, lease_owner=None,
                                      lease_expires=None, progress=1.0 if status == "succeeded" else jobs.c.progress)
                              ).rowcount == 1
            if ok:
                self._forget_token(conn, job_id)
                payload = {"status": status, **({"error": error} if error else {}), **({"result": result} if result else {})}
                self._event(conn, job_id, "status", payload, t)
        return ok

    def requeue(self, job_id: int, worker: str, reason: str, delay_s: float = 0.0) -> bool:
        """Back to the queue (SIGTERM, transient error); the next worker resumes from the checkpoint."""
        t = self.now()
        with self._tx() as conn:
            ok = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == worker,
                                                 jobs.c.status == "running")
                              .values(status="queued", lease_owner=None, lease_expires=None,
                                      not_before=t + timedelta(seconds=delay_s) if delay_s else None)).rowcount == 1
            if ok:
                self._event(conn, job_id, "status", {"status": "queued", "reason": redact(reason),
                                                     "retry_in_s": delay_s}, t)
        return ok

    def set_remote(self, job_id: int, worker: str, remote_job: str | None = None, seen: int | None = None) -> bool:
        """Store the job's Hugging Face Jobs id, or how far its logs were recorded. False when no longer the owner."""
        values = {k: v for k, v in (("remote_job", remote_job), ("remote_seen", seen)) if v is not None}
        with self._tx() as conn:
            return conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == worker,
                                                   jobs.c.status == "running").values(**values)).rowcount == 1

    def _event(self, conn, job_id: int, kind: str, payload: dict, t: datetime) -> None:
        payload = json.loads(redact(json.dumps(payload, default=str)))
        conn.execute(insert(events).values(job_id=job_id, time=t, kind=kind, payload=payload))

    def _explain(self, exc: OperationalError) -> Exception:
        msg = str(exc.orig) if exc.orig is not None else str(exc)
        if "disk is full" in msg or "No space left" in msg or "could not extend file" in msg:
            return DiskFull(f"the disk under the job database ({self.where}) is full; nothing was written. "
                            "Free some space and submit again.")
        return exc
