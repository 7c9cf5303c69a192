"""Delivering a job's events to one target (a Discord thread, a webhook) exactly once, across restarts.

The cursor lives in the job store (`Store.take_events` / `ack_event`), so a front door keeps no state
of its own: a deliverer restarted mid-job sends what was not acknowledged yet, and two deliverers on
one target never both send the same event (the target is leased to one of them at a time).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Callable

from factory.queue.jobs import JobEvent, Store


class Deliverer:
    def __init__(self, store: Store, front_door: str, target: str, send: Callable[[JobEvent], None],
                 owner: str | None = None, lease_s: float = 60.0):
        self.store, self.front_door, self.target, self.send = store, front_door, target, send
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = lease_s

    def pump(self, job_id: int) -> int:
        """Send every event not yet delivered to the target, in order; returns how many were sent.

        `send` raising leaves the cursor before that event (it is retried next time) and the lease held
        until it expires, as a killed deliverer would."""
        sent = 0
        while True:
            batch = self.store.take_events(self.front_door, job_id, self.target, self.owner, self.lease_s)
            if not batch:
                self.release(job_id)  # caught up: the next deliverer (a restarted bot) need not wait
                return sent
            for event in batch:
                self.send(event)
                if not self.store.ack_event(self.front_door, job_id, self.target, self.owner, event.id):
                    return sent  # the lease went to another deliverer: it carries on from the cursor
                sent += 1

    def release(self, job_id: int) -> None:
        self.store.release_target(self.front_door, job_id, self.target, self.owner)
