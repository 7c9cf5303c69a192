"""The pages' event cursor: every event once, in order, even one that commits after a newer one."""

from __future__ import annotations

from datetime import datetime

from factory.frontdoor.event_cache import EventCache
from factory.queue.jobs import JobEvent


class Log:
    """A job store's events: what has committed so far, and how many rows each read returned."""

    def __init__(self):
        self.committed: list[JobEvent] = []
        self.rows_read = 0

    def add(self, *ids: int, job: int = 1) -> None:
        self.committed += [JobEvent(i, job, datetime(2026, 12, 5), "message", {"message": str(i)}) for i in ids]

    def events(self, job_id: int, since: int = 0) -> list[JobEvent]:
        rows = sorted((e for e in self.committed if e.job_id == job_id and e.id > since), key=lambda e: e.id)
        self.rows_read += len(rows)
        return rows


def test_each_refresh_reads_only_the_newest_events():
    log = Log()
    log.add(*range(1, 501))
    cache = EventCache(log)
    assert [e.id for e in cache.events(1)] == list(range(1, 501))
    log.rows_read = 0
    log.add(501, 502)
    assert [e.id for e in cache.events(1)] == list(range(1, 503))
    assert log.rows_read <= 2 + 21  # the new events and the overlap, not the 500 before them
    assert [e.id for e in cache.events(1)] == list(range(1, 503))


def test_an_event_that_commits_late_is_not_skipped():
    log = Log()
    log.add(*range(1, 40), 41)  # 40 (a cancel written on another machine) has its id but has not committed
    cache = EventCache(log)
    assert 40 not in [e.id for e in cache.events(1)]
    log.add(40, 42)
    assert [e.id for e in cache.events(1)] == list(range(1, 43))


def test_jobs_are_kept_apart_and_the_least_recently_watched_is_dropped():
    log = Log()
    log.add(1, 3, job=1)
    log.add(2, 4, job=2)
    log.add(5, job=3)
    cache = EventCache(log, jobs=2)
    assert [e.id for e in cache.events(1)] == [1, 3] and [e.id for e in cache.events(2)] == [2, 4]
    cache.events(3)
    assert set(cache._events) == {2, 3}
    assert [e.id for e in cache.events(1)] == [1, 3]  # read again from the start, whole
