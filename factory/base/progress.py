"""Progress events from the stages, and the console reporter that draws them.

Stages call `reporter.emit(Event(...))`; the CLI draws bars, a job store (later) persists them.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass
class Event:
    stage: str
    message: str = ""
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class MainOnly:
    """Passes events on from the main process only, under `accelerate launch` (one console, one event log)."""

    def __init__(self, reporter: Reporter) -> None:
        import os

        self.reporter = reporter
        self.main = int(os.environ.get("RANK", "0")) == 0

    def emit(self, event: Event) -> None:
        if self.main:
            self.reporter.emit(event)

    @property
    def stop_requested(self):
        return getattr(self.reporter, "stop_requested", None)


class Silent:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


class Console:
    """Stage lines on stderr, and a tqdm bar (loss, tokens/s, ETA) for stages that count steps."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.bar = None
        self.bar_stage: str | None = None

    def emit(self, event: Event) -> None:
        if event.total and event.step is not None:
            self._bar(event)
            return
        self._close_bar()
        if event.message:
            from factory.base.redact import redact

            print(redact(f"[{event.stage}] {event.message}"), file=self.stream, flush=True)

    def _bar(self, event: Event) -> None:
        from tqdm import tqdm

        if self.bar is None or self.bar_stage != event.stage:
            self._close_bar()
            tty = hasattr(self.stream, "isatty") and self.stream.isatty()
            self.bar = tqdm(total=event.total, desc=event.stage, file=self.stream, dynamic_ncols=True,
                            mininterval=0.1 if tty else 15.0,  # a log file gets a line every 15 s, not every step
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
            self.bar_stage = event.stage
        self.bar.update(max(0, event.step - self.bar.n))
        post = {}
        if event.loss is not None:
            post["loss"] = f"{event.loss:.4f}"
        if "rows_per_s" in event.extra:
            post["rows/s"] = f"{event.extra['rows_per_s']:,.0f}"
        if "tokens_per_s" in event.extra:
            post["tok/s"] = f"{event.extra['tokens_per_s']:,.0f}"
        if post:
            self.bar.set_postfix(post, refresh=False)
        if event.step >= event.total:
            self._close_bar()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
