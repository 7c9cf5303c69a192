"""Chat templates rendered for strangers, with bounds: in a child process, within a time and a memory limit.

A chat template is code: the Jinja of a stranger's request, or of a base model a stranger named on the
Hub. Jinja's sandbox keeps it from Python's internals, not from looping for hours or filling the memory,
and a template can behave on the door's sample conversation and loop on every other. So wherever the
factory renders on a stranger's behalf (the mask preview, chat prompts, eval prompts, the data stage), it
renders in a child process it can kill: each conversation within LIMIT_S, each data chunk within
LIMIT_S + ROW_S per row, the child's memory within MEMORY above what it holds when it starts. Cancel and
Ctrl-C reach the wait (safe points), so a stuck render never outlives its job.
"""

from __future__ import annotations

import multiprocessing
import time

from factory.base import interrupt
from factory.base.errors import UserError

LIMIT_S = 3.0               # one conversation (the door's sandbox renders its sample within the same limit)
ROW_S = 0.05                # and this much more per row of a data chunk (a real template takes well under 1 ms)
MEMORY = 512 * 1024 * 1024  # above the child's own size when it starts
POLL_S = 0.1


class RenderError(Exception):
    """The template refused the conversation (its own raise_exception, a Jinja error): the caller's to explain."""


def limit_memory(extra: int = MEMORY) -> None:
    """In a child process: allocations past its current private data plus `extra` fail with MemoryError.
    (RLIMIT_DATA, not RLIMIT_AS: a process that imported torch has reserved far more address space than it uses.)"""
    import resource

    used = 0
    try:
        with open("/proc/self/status") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    except (OSError, StopIteration, ValueError):
        return
    resource.setrlimit(resource.RLIMIT_DATA, (used + extra, used + extra))


def close_inherited(keep: int) -> None:
    """In a forked child: close every descriptor but stdio and `keep`. A fork of a server holds copies of its
    sockets and pipes (the web server's port, a browser driver's stdin), and while the child lives the other
    end never sees them close: a driver waiting for EOF waits forever, a port stays bound after a restart."""
    import os

    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _serve(conn, tokenizer, template: str, memory: int) -> None:
    """The child: render each conversation it is sent with the tokenizer's own apply_chat_template."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when it stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # an inherited handler (a worker's graceful stop) would keep it
    close_inherited(conn.fileno())  # a long-lived child of the Space: it must not hold the page's sockets
    limit_memory(memory)
    while True:
        try:
            messages, kwargs = conn.recv()
        except EOFError:
            return
        try:
            out = ("ok", tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, **kwargs))
        except MemoryError:
            out = ("memory", "")
        except Exception as exc:  # noqa: BLE001 - the template's own refusal, sent back as text
            out = ("error", f"{type(exc).__name__}: {str(exc)[:300]}")
        del messages
        conn.send(out)


class BoundedRenderer:
    """renderer(messages, add_generation_prompt=..., ...) -> the text apply_chat_template gives, rendered in a
    forked child (which inherits the tokenizer) within the limits; a UserError when a render runs over.
    One child serves many renders; a child killed for running over is started again for the next one."""

    def __init__(self, tokenizer, template: str, seconds: float | None = None, memory: int = MEMORY):
        self.tokenizer, self.template, self.memory = tokenizer, template, memory
        self.seconds = LIMIT_S if seconds is None else seconds
        self._proc = self._conn = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.tokenizer, self.template, self.memory), daemon=True)
        self._proc.start()
        child.close()

    def __call__(self, messages: list[dict], **kwargs) -> str:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((messages, kwargs))
        deadline = time.monotonic() + self.seconds
        try:
            while not self._conn.poll(POLL_S):
                interrupt.safe_point()  # cancel and Ctrl-C end the wait (and the child, below)
                if time.monotonic() > deadline:
                    raise UserError(f"chat-template-sandbox: the chat template did not finish rendering one "
                                    f"conversation within {self.seconds:g} s; it was stopped")
            kind, text = self._conn.recv()
        except EOFError:
            self.close()
            raise UserError("chat-template-sandbox: rendering the chat template crashed its sandbox (too much memory "
                            "or output)") from None
        except BaseException:
            self.close()
            raise
        if kind == "memory":
            self.close()
            raise UserError(f"chat-template-sandbox: the chat template used more than {self.memory >> 20} MB to "
                            "render one conversation; it was stopped")
        if kind == "error":
            raise RenderError(text)
        return text

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join()
            self._conn.close()
        self._proc = self._conn = None

    def __enter__(self) -> "BoundedRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit the modules may be gone
            pass


def chunk_seconds(rows: int) -> float:
    """How long the data stage's worker may take for a chunk of rows (judging, rendering and tokenising)."""
    return LIMIT_S + ROW_S * rows

