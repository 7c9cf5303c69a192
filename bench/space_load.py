"""N concurrent clients (20 by default; try 100) polling a job's page while the job trains: p50/p95 of a status refresh, and the
database statements one refresh costs.

    .venv/bin/python bench/space_load.py [--clients 20] [--refreshes 15]

Runs the Space over the embedded default (local hub, SQLite) with a worker in the same process, on
127.0.0.1 only. Prints the machine it ran on. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py would shadow the standard library's queue (gradio_client and huggingface_hub import it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import runpy  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--refreshes", type=int, default=15, help="status refreshes per client")
    ap.add_argument("--history", type=int, default=0,
                    help="wait until the job has logged this many events (a loss every step) before the load")
    args = ap.parse_args()
    os.environ.setdefault("FACTORY_HOME", tempfile.mkdtemp(prefix="space-load-"))
    os.environ.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", FACTORY_SPACE_USER="loadtest",
                      FACTORY_HUB="local", TOKENIZERS_PARALLELISM="false")
    import yaml
    from gradio_client import Client
    from sqlalchemy import event

    module = runpy.run_path(str(ROOT / "spaces" / "app.py"), run_name="space_load")
    module["ensure_demo_assets"]()
    from factory.queue.jobs import Store

    store = Store()
    statements = [0]
    event.listen(store.engine, "before_cursor_execute", lambda *a, **k: statements.__setitem__(0, statements[0] + 1))
    rows = [0]
    read_events = store.events

    def counted_events(job_id, since=0):
        out = read_events(job_id, since)
        rows[0] += len(out)
        return out

    store.events = counted_events  # event rows a refresh reads: the whole history, or only what is new
    app = module["build"](store)
    app.queue(default_concurrency_limit=8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    request = yaml.safe_load(module["example_request"]("hf:loadtest"))
    request.update({"max_steps": max(400, 2 * args.history), "evals": {"tasks": ["factory_demo_heldout"], "limit": 10}})
    if args.history:
        request["logging_steps"] = 1
    job = store.submit(yaml.safe_dump(request), "hf:loadtest", "space")
    module["start_worker"](store)
    deadline = time.time() + 300
    while store.get(job).stage != "train" and time.time() < deadline:
        time.sleep(0.5)
    while len(read_events(job)) < args.history and store.get(job).stage == "train" and time.time() < deadline + 600:
        time.sleep(1)

    latencies: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def failed(exc: Exception) -> None:
        with lock:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    def client_loop():
        try:
            c = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - a client that cannot even connect is a result too
            failed(exc)
            return
        for _ in range(args.refreshes):
            t0 = time.perf_counter()
            try:
                c.predict(job, api_name="/job")
            except Exception as exc:  # noqa: BLE001
                failed(exc)
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    still_training = store.get(job).stage == "train"

    # statements per refresh, counted with the worker between its writes: the refresh's own reads
    c = Client(url, verbose=False)
    before, rows_before = statements[0], rows[0]
    sample = 10
    for _ in range(sample):
        c.predict(job, api_name="/job")
    per_refresh = (statements[0] - before) / sample
    rows_per_refresh = (rows[0] - rows_before) / sample
    history = len(read_events(job))
    handler = next(b.fn for b in app.fns.values() if b.api_name == "job")
    t0 = time.perf_counter()
    for _ in range(sample):
        handler(job)
    in_process = (time.perf_counter() - t0) / sample

    lat = sorted(latencies) or [float("nan")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; SQLite queue; "
          f"the job {'was training' if still_training else 'had left training'} during the load")
    print(f"{args.clients} clients x {args.refreshes} refreshes: {len(lat)} status refreshes answered in {wall:.1f}s "
          f"({len(lat) / wall:.1f}/s)")
    if failures:
        print("failed: " + ", ".join(f"{n} x {kind}" for kind, n in failures.items()) +
              " (a client's connect or a refresh that timed out)")
    print(f"refresh latency: p50 {statistics.median(lat) * 1000:.0f} ms, p95 {lat[int(0.95 * (len(lat) - 1))] * 1000:.0f} ms, "
          f"max {lat[-1] * 1000:.0f} ms")
    print(f"database statements per refresh: {per_refresh:.1f} (including the worker's writes in the same interval)")
    print(f"event rows read per refresh: {rows_per_refresh:.1f} (the job had {history} events); the refresh "
          f"handler itself, in process: {in_process * 1000:.1f} ms (the rest of the latency is the web server's)")
    store.cancel(job, "hf:loadtest")
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
