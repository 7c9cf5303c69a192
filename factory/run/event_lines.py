"""Events as JSON lines: how a `factory run` on another machine (Hugging Face Jobs) tells the worker what it does.

`factory run --events jsonl` prints one JSON object per line on stdout, each with "factory_event" (the format's
version) and "seq" (1, 2, 3 ...: the worker records how far it read, so a worker that re-attaches to a running
job skips what was already recorded). Three kinds: {"event": Event fields}, {"gate": stage} before each stage
runs, {"result": the run's summary} at the end. Everything else in the job's logs is plain text.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from factory.base.progress import Event
from factory.base.redact import redact

VERSION = 1


class JsonLines:
    """A Reporter that prints events as JSON lines; progress is throttled (the final step always goes out)."""

    def __init__(self, stream=None, min_interval_s: float = 1.0) -> None:
        self.stream = stream or sys.stdout
        self.seq = 0
        self.min_interval_s = min_interval_s
        self._last_progress = 0.0
        self._lock = threading.Lock()

    def _print(self, body: dict) -> None:
        with self._lock:
            self.seq += 1
            line = json.dumps({"factory_event": VERSION, "seq": self.seq, **body}, default=str)
            print(redact(line), file=self.stream, flush=True)

    def emit(self, event: Event) -> None:
        counted = event.total and event.step is not None
        if counted and event.step < event.total and event.loss is None:
            if time.monotonic() - self._last_progress < self.min_interval_s:
                return
            self._last_progress = time.monotonic()
        self._print({"event": {k: v for k, v in event.as_dict().items() if v not in (None, "", {})}})

    def gate(self, stage: str) -> None:
        self._print({"gate": stage})

    def result(self, result: dict) -> None:
        self._print({"result": result})


def parse(line: str) -> dict | None:
    """A JSON-lines record from a log line, or None for plain text (and for anything malformed)."""
    line = line.strip()
    if not line.startswith('{"factory_event"'):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("factory_event") != VERSION or not isinstance(record.get("seq"), int):
        return None
    return record


def to_event(record: dict) -> Event:
    e = record["event"]
    return Event(stage=str(e.get("stage", "")), message=str(e.get("message", "")), step=e.get("step"),
                 total=e.get("total"), loss=e.get("loss"), extra=e.get("extra") or {})
