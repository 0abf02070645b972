"""Process-wide settings for reading frames on a few cores, made once by each program's main
(the app, the browser app, the benchmarks), never by a library on import."""
from __future__ import annotations

import cv2


def tune_process() -> None:
    """OpenCV on the calling thread only, and freed memory kept for the next frame.

    A frame is hundreds of small OpenCV calls (one digit's crop is a few hundred pixels); with a
    thread per core, OpenCV's workers wake and spin for each of them: 200 digits at 1280x720
    cost 69 ms of CPU with 2 threads and 44 ms with 1, in the same 44 ms of wall time, and the
    real photos 6.4 ms against 3.4 ms. The core that is freed decodes the video, captures the
    camera and runs the model beside the preprocessing (backend.frame.pipeline.CHUNK).
    """
    cv2.setNumThreads(1)
    keep_freed_memory()


def set_torch_threads(threads: int | None = None) -> None:
    """torch's intra-op threads for inference on the CPU (default: default_threads()). Made
    where a program builds its recognizers, since it imports torch (ONNX Runtime sessions take
    theirs from RecognizerConfig.threads)."""
    import torch

    from backend.model.device import default_threads

    torch.set_num_threads(threads or default_threads())


def keep_freed_memory(limit: int = 256 << 20) -> bool:
    """Let glibc reuse freed blocks of up to `limit` bytes instead of giving them back to the OS.

    Every frame allocates a few images of a megabyte or more (masks, labels, integral images).
    glibc serves blocks that large with fresh pages from the kernel and returns them on free, so
    each frame pays the page faults again: on a 2-core VM they were a fifth of detection's time
    (photo median 10.4 -> 8.1 ms CPU). The process keeps what it peaked at, a few tens of MB.
    False where the C library is not glibc (macOS, Windows, musl): nothing changes there.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * limit))
