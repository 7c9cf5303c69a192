"""Stopping on request, at safe points: Ctrl-C in a terminal, cancel or preemption in a worker.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be; one raised
inside a `__del__`, a `finally` or a C callback can be swallowed, and the run then carries on and
publishes. Here the first Ctrl-C only records the request (`handling`); long work calls `safe_point()`
between steps, rows, chunks, eval batches and uploads, which raises `Interrupted` there. A second
Ctrl-C stops at once: child processes are ended, registered partial files removed, exit 130.

A worker thread registers its job's own check (`watching`), so cancel reaches every stage through the
same safe points. `commit()` marks the point of no return (a publish): a Ctrl-C before it stops the
run; from it on, the run completes and no later Ctrl-C is seen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator

MESSAGE = "interrupted; re-run the same command to resume"
FIRST = b"\nCtrl-C: stopping at the next safe point (press Ctrl-C again to stop at once)\n"


class Interrupted(Exception):
    """The user pressed Ctrl-C and the work stopped at a safe point (not a KeyboardInterrupt: nothing
    catches it by accident)."""

    exit_code = 130


# Plain values and a reentrant lock: the handler runs in the main thread between two bytecodes of whatever
# it was doing, which may be these very functions (an Event or a Lock could deadlock it).
_requested = False
_cleanups: dict[int, Callable[[], object]] = {}  # what a hard stop removes: files and folders being written
_cleanups_lock = threading.RLock()
_local = threading.local()  # .checks: this thread's job checks (a worker's cancel, lease, preemption)


@contextlib.contextmanager
def handling(restore: bool = True) -> Iterator[None]:
    """Ctrl-C handled the safe way while the block runs (in the main thread of a long command). The
    previous handler is back afterwards; restore=False (the program ends next) keeps Ctrl-C ignored
    once the work passed its point of no return, so a finished run never ends as interrupted."""
    global _requested
    _requested = False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        if restore or signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, previous)
        _requested = False


def _on_sigint(_signum, _frame) -> None:
    global _requested
    if not _requested:
        _requested = True
        os.write(2, FIRST)
        return
    hard_stop()


def requested() -> bool:
    return _requested


def safe_point() -> None:
    """Raise here if a stop was asked for: Interrupted for Ctrl-C, or whatever this thread's job check raises."""
    if _requested:
        raise Interrupted(MESSAGE)
    for check in getattr(_local, "checks", ()):
        check()


@contextlib.contextmanager
def watching(check: Callable[[], None]) -> Iterator[None]:
    """Run check() at every safe point of this thread while the block runs (a job's cancel and lease)."""
    checks = getattr(_local, "checks", ())
    _local.checks = (*checks, check)
    try:
        yield
    finally:
        _local.checks = checks


def commit() -> None:
    """The point of no return: a Ctrl-C that came before it stops the work here; after it, none is seen.

    SIGINT is ignored first, then the request checked, so no Ctrl-C falls between the two."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _on_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    safe_point()


@contextlib.contextmanager
def cleaning(cleanup: Callable[[], object]) -> Iterator[None]:
    """While the block runs, a hard stop calls cleanup() before it exits (to remove what is half-written)."""
    key = id(cleanup)
    with _cleanups_lock:
        _cleanups[key] = cleanup
    try:
        yield
    finally:
        with _cleanups_lock:
            _cleanups.pop(key, None)


def partial(path: Path):
    """A file or folder being written: removed if the process is stopped at once while the block runs
    (the block itself removes it on an ordinary error, as atomic writes do)."""
    return cleaning(lambda: _remove(Path(path)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def hard_stop(code: int = 130) -> None:
    """Stop now: end child processes, remove partial files, exit without unwinding (nothing can swallow it)."""
    import multiprocessing

    for child in multiprocessing.active_children():
        with contextlib.suppress(Exception):
            child.kill()
    with _cleanups_lock:
        cleanups = list(_cleanups.values())
    for cleanup in cleanups:
        with contextlib.suppress(Exception):
            cleanup()
    with contextlib.suppress(OSError):
        os.write(2, f"\nstopped at once; {MESSAGE}\n".encode())
    os._exit(code)
