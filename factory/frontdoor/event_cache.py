"""A job's events for pages that poll: each refresh reads only the events newer than the last one read.

Events are only ever appended, so one list per job, shared by every client that watches it, stays whole
with a `since` cursor; twenty tabs polling a job no longer read its whole history every two seconds.
The cursor starts a few events back: on PostgreSQL an event (a cancel from another machine) can commit
after one with a higher id, and the overlap picks it up. Who may see a job is checked by the caller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from factory.queue.jobs import JobEvent, Store


OVERLAP = 20  # events re-read behind the newest one


class EventCache:
    def __init__(self, store: Store, jobs: int = 64):
        self.store = store
        self.jobs = jobs  # how many jobs' events are kept; the least recently watched is dropped first
        self._events: OrderedDict[int, list[JobEvent]] = OrderedDict()
        self._lock = threading.Lock()

    def events(self, job_id: int) -> list[JobEvent]:
        with self._lock:
            known = self._events.get(job_id, [])
            since = known[-OVERLAP - 1].id if len(known) > OVERLAP else 0
        new = self.store.events(job_id, since=since)  # outside the lock: clients of other jobs do not wait
        with self._lock:
            known = self._events.get(job_id, [])
            have = set()
            for e in reversed(known):  # the ids already held past the cursor (another client may have read them)
                if e.id <= since:
                    break
                have.add(e.id)
            missing = [e for e in new if e.id not in have]
            if missing:  # a new list: a reader holding the old one is undisturbed
                known = sorted(known + missing, key=lambda e: e.id)
                self._events[job_id] = known
            self._events.move_to_end(job_id)
            while len(self._events) > self.jobs:
                self._events.popitem(last=False)
        return known
