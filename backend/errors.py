"""Errors a user can cause. Entry scripts print them as one line and exit with `code`."""

import argparse
import sys


class UserError(Exception):
    """Bad input from the user (a file, a flag, a device): one clear line, exit code 2."""

    code = 2


class SourceError(UserError):
    """A camera or stream that cannot deliver frames (ends the run with exit code 1)."""

    code = 1


def warn_stderr(msg: str) -> None:
    """The default way to warn: one line on stderr."""
    print(f"warning: {msg}", file=sys.stderr)


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type's name when empty), cut to `limit`."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def positive_int(s: str) -> int:
    """argparse type for main.py and camera_inferencer.py: an integer >= 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def positive_float(s: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def probability(s: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {s!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {s}")
    return v
