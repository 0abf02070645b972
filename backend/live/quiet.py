"""OpenCV and its libraries kept quiet, so the user sees our one line and nothing else."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import cv2


@contextlib.contextmanager
def quiet_opencv(native: bool = False) -> Iterator[None]:
    """Silence OpenCV's own log lines (camera probing prints several) for the enclosed block.

    native: also mute what its libraries write straight to stderr (FFmpeg's "moov atom not
    found" for a broken video), so the user sees our one line and nothing else.
    """
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    saved = None
    if native:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        cv2.utils.logging.setLogLevel(level)
