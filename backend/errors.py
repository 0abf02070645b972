"""Errors a user can cause. Entry scripts print them as one line and exit with `code`."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a device): one clear line, exit code 2."""

    code = 2


class SourceError(UserError):
    """A camera or stream that cannot deliver frames (ends the run with exit code 1)."""

    code = 1
