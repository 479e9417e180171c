"""Engine thread budgets: when N jobs share a machine, each job's engines get cores // N threads.

Piper's onnxruntime, MiniLM's torch and OpenCV each start one thread per core, so a single job
already keeps every core busy; a second job at once then only adds contention. The budget is
process-wide (torch and OpenCV have one pool per process), which suits both thread workers in one
process (every worker gets the same share) and worker processes (each sets its own).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# read by OpenMP, MKL and OpenBLAS when a process starts: Dask workers, `emoflow` subprocesses
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_lock = threading.Lock()
_engine_threads: int | None = None  # None: every library's own default


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, engine_threads: int | None = None) -> int:
    """`engine_threads` when set, else an equal share of the cores: cores // workers, at least one."""
    if engine_threads is not None:
        return engine_threads
    return max(1, available_cores() // max(1, workers))


def onnx_intra_op_threads() -> int:
    """intra_op_num_threads for a new onnxruntime session: the budget, or 0 (onnxruntime's default).

    A session keeps the count it was created with; engines load once per process, so set the
    budget before the first job runs."""
    return _engine_threads or 0


def set_engine_threads(threads: int) -> None:
    """Give every engine in this process `threads` threads.

    torch and OpenCV change at once, onnxruntime sessions created from now on follow, and the
    environment variables reach processes started from now on."""
    global _engine_threads
    with _lock:
        _engine_threads = threads
        for name in THREAD_ENV_VARS:
            os.environ[name] = str(threads)
        _set_pools(threads, threads)


@contextmanager
def engine_threads(threads: int) -> Iterator[None]:
    """The budget for the duration of a batch, then exactly what was there before."""
    global _engine_threads
    with _lock:
        before = (_engine_threads, {name: os.environ.get(name) for name in THREAD_ENV_VARS}, _pools())
    set_engine_threads(threads)
    try:
        yield
    finally:
        with _lock:
            _engine_threads, environ, pools = before
            for name, value in environ.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            torch_threads, cv2_threads = pools
            if torch_threads is None:  # torch loaded during the batch: what it would have read itself
                omp = environ["OMP_NUM_THREADS"] or ""
                torch_threads = int(omp) if omp.isdigit() and int(omp) > 0 else available_cores()
            _set_pools(torch_threads, cv2_threads)


def _pools() -> tuple[int | None, int]:
    """(torch threads or None when torch is not loaded, OpenCV threads)."""
    import cv2

    torch = sys.modules.get("torch")
    return (torch.get_num_threads() if torch is not None else None), cv2.getNumThreads()


def _set_pools(torch_threads: int | None, cv2_threads: int) -> None:
    import cv2

    torch = sys.modules.get("torch")
    if torch is not None and torch_threads is not None:  # unloaded torch reads OMP_NUM_THREADS itself
        torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)
