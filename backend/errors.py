"""Errors a user can cause. Entry scripts print them as one line and exit with `code`."""

import argparse
import sys


class UserError(Exception):
    """Bad input from the user (a file, a flag, a device): one clear line, exit code 2."""

    code = 2


class SourceError(UserError):
    """A camera or stream that cannot deliver frames (ends the run with exit code 1)."""

    code = 1


class OutputError(UserError):
    """An output that could not be written any further, e.g. a full disk (exit code 3). Raised
    after the output was cut back to its last whole frame or line."""

    code = 3


def warn_stderr(msg: str) -> None:
    """The default way to warn: one line on stderr."""
    print(f"warning: {msg}", file=sys.stderr)


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type's name when empty), cut to `limit`."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def _number(s: str, kind: type, low: float, strict: bool, what: str):
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {s!r}") from None
    if not (v > low if strict else v >= low) or not v < float("inf"):  # nan fails both
        raise argparse.ArgumentTypeError(f"must be {what}, got {s}")
    return v


def positive_int(s: str) -> int:
    """argparse type for main.py and camera_inferencer.py: an integer >= 1."""
    return _number(s, int, 1, False, "a positive integer")


def non_negative_int(s: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(s, int, 0, False, "an integer >= 0")


def positive_float(s: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(s, float, 0, True, "a positive number")


def non_negative_float(s: str) -> float:
    """argparse type: a finite number >= 0 (not nan)."""
    return _number(s, float, 0, False, "a finite number >= 0")


def probability(s: str) -> float:
    """argparse type: a number from 0 to 1."""
    v = _number(s, float, 0, False, "a number from 0 to 1")
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {s}")
    return v
