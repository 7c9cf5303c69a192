"""Job queue throughput: submissions per second and claim latency, 1/4/16 processes, SQLite vs PostgreSQL.

    .venv/bin/python bench/queue.py [--jobs 480] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each configuration starts fresh (a new SQLite file, a new PostgreSQL schema). N submitter processes
validate and submit `--jobs` tiny requests between them (full validation: schema, lint, base facts);
then N worker processes drain the queue with claim + finish (no training), timing each claim.
Processes start together on a file barrier, so import time is not measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named queue.py: keep its folder off sys.path so `import queue` finds the stdlib's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
from factory.queue.jobs import Limits, Store
role, url, name, n, request_file, barrier = sys.argv[1:7]
n = int(n)
store = Store(url, Limits(0, 0))
request = open(request_file).read()
open(os.path.join(barrier, name + ".ready"), "w").close()
while not os.path.exists(os.path.join(barrier, "go")):
    time.sleep(0.002)
out = {"t0": time.time(), "lat": []}
if role == "submit":
    for i in range(n):
        store.submit(request, name, "cli")
else:
    while True:
        t = time.perf_counter()
        job = store.claim(name, 60)
        out["lat"].append(time.perf_counter() - t)
        if job is None:
            out["lat"].pop()
            break
        store.finish(job.id, name, "succeeded", result={})
out["t1"] = time.time()
print(json.dumps(out))
"""


def run_role(role: str, url: str, procs: int, per_proc: int, request_file: Path) -> list[dict]:
    barrier = Path(tempfile.mkdtemp(prefix="qbench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, role, url, f"{role}{i}", str(per_proc),
                                  str(request_file), str(barrier)], stdout=subprocess.PIPE, text=True, env=env)
                for i in range(procs)]
    while len(list(barrier.glob("*.ready"))) < procs:
        if any(c.poll() not in (None, 0) for c in children):
            raise SystemExit(f"a {role} process failed")
        time.sleep(0.01)
    (barrier / "go").touch()
    results = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    if any(c.returncode for c in children):
        raise SystemExit(f"a {role} process failed")
    return results


def fresh_pg(base: str) -> tuple[str, callable]:
    import sqlalchemy

    schema = f"factory_bench_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))

    def drop():
        with engine.connect() as c:
            c.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))

    return f"{base}?options=-csearch_path%3D{schema}", drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=480, help="jobs per configuration (divisible by 16)")
    ap.add_argument("--procs", default="1,4,16")
    ap.add_argument("--pg-url", default=os.environ.get("FACTORY_TEST_PG_URL",
                                                      "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from factory.queue.jobs import Store
    from factory.demo.tiny import write_base

    work = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    os.environ["FACTORY_HOME"] = str(work / "home")
    write_base(work / "base")
    (work / "docs.jsonl").write_text('{"text": "a document"}\n')
    request = work / "request.yaml"
    request.write_text(f"base_model: {work / 'base'}\ndatasets: [{{path: {work / 'docs.jsonl'}, type: completion}}]\n"
                       "sequence_len: 64\nhub_model_id: bench/tiny\n")

    import sqlalchemy
    pg_version = "unreachable"
    try:
        with sqlalchemy.create_engine(args.pg_url).connect() as c:
            pg_version = c.execute(sqlalchemy.text("show server_version")).scalar()
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL at {args.pg_url} unreachable ({type(exc).__name__}); SQLite only")
    import sqlite3
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL {pg_version}")
    print(f"{args.jobs} jobs per configuration; each submission is fully validated\n")
    print(f"{'db':10} {'procs':>5} {'submit/s':>9} {'drain jobs/s':>12} {'claim p50 ms':>12} {'claim p95 ms':>12} {'jobs ok':>8}")
    for db in ("sqlite", "postgresql"):
        if db == "postgresql" and pg_version == "unreachable":
            continue
        for procs in (int(p) for p in args.procs.split(",")):
            if db == "sqlite":
                url, cleanup = f"sqlite:///{work / f'q-{procs}.db'}", (lambda: None)
            else:
                url, cleanup = fresh_pg(args.pg_url)
            store = Store(url)
            per = args.jobs // procs
            subs = run_role("submit", url, procs, per, request)
            submit_rate = per * procs / (max(r["t1"] for r in subs) - min(r["t0"] for r in subs))
            drains = run_role("work", url, procs, 0, request)
            lat = sorted(x for r in drains for x in r["lat"])
            drain_rate = len(lat) / (max(r["t1"] for r in drains) - min(r["t0"] for r in drains))
            ok = len(store.list(status="succeeded", limit=10 * args.jobs))
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            print(f"{db:10} {procs:>5} {submit_rate:>9.0f} {drain_rate:>12.0f} {statistics.median(lat) * 1e3:>12.2f} "
                  f"{p95 * 1e3:>12.2f} {ok:>8}", flush=True)
            store.engine.dispose()
            cleanup()


if __name__ == "__main__":
    main()
