"""The one exception type for user errors: the CLI prints it and exits 2."""


class UserError(Exception):
    """A problem with something the user gave us (request, data, ids). Message says what and how to fix."""

    exit_code = 2


class Stopped(Exception):
    """A job stops on purpose at a step boundary: 'cancel', 'preempt' (SIGTERM) or 'lease-lost'."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


class TransientError(Exception):
    """Worth retrying later (Hub 5xx, connection reset, full disk): the job goes back to the queue."""


class DiskFull(Exception):
    """The disk under $FACTORY_HOME or the job database is full; nothing was written."""
