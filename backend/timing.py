"""Wall-clock timing of a call, shared by the benchmarks and the model search."""
from __future__ import annotations

import time


def timed_ms(fn, seconds: float, warmup: int = 3, min_runs: int = 10) -> list[float]:
    """Milliseconds per call of fn(), after `warmup` calls, for `seconds` and at least `min_runs` calls."""
    for _ in range(warmup):
        fn()
    ts = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(ts) < min_runs:
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts
