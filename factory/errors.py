"""The one exception type for user errors: the CLI prints it and exits 2."""


class UserError(Exception):
    """A problem with something the user gave us (request, data, ids). Message says what and how to fix."""

    exit_code = 2
