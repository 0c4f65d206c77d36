"""Independent seeded jobs spread over worker processes: how a few-shot study uses every core.

A study is dozens of small training runs, each a pure function of its key (arm, shots, seed, budget). On a CPU a
small network leaves a second thread of the same process little to do (one 2D fine-tuning step: 0.196 s on one
thread, 0.15 s on two), while a second process doubles the throughput. So :func:`map_jobs` runs the jobs on
``workers`` processes with the caller's thread count each; every job computes exactly what it computes in the
caller's process, so results do not depend on how many workers there are (``workers=1`` runs them in place).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

import torch

__all__ = ["auto_workers", "map_jobs"]

Context = TypeVar("Context")
Job = TypeVar("Job")

_CONTEXT: Any = None  # what every job of the current map shares, set once per worker process


def auto_workers(device: torch.device) -> int:
    """Processes that fill the machine without oversubscribing it: ``cores // threads`` on a CPU (two on a
    2-core machine, where the command line gives each process one thread), one on a GPU (one device)."""
    if device.type != "cpu":
        return 1
    return max(1, (os.cpu_count() or 1) // torch.get_num_threads())


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone: a killed study must not leave runs computing for nobody."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker(context: Any, threads: int, parent: int) -> None:
    global _CONTEXT
    torch.set_num_threads(threads)
    _CONTEXT = context
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _call(fn: Callable[[Any, Any], Any], job: Any) -> Any:
    return fn(_CONTEXT, job)


def map_jobs(fn: Callable[[Context, Job], Any], jobs: Sequence[Job], context: Context, workers: int = 1,
             on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(context, job) for job in jobs]``, on ``workers`` processes when there is more than one.

    ``fn`` must be a module-level function and ``context`` picklable: each worker receives the context once
    (spawned, so no thread or file handle of the caller is shared) and runs with the caller's thread count.
    ``on_done(index, result)`` is called in the caller as each job finishes (a progress bar, a journal that
    lets a killed study resume). The first failing job's exception is raised after the pending jobs are
    cancelled.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = min(workers, len(jobs))
    if workers <= 1:
        results = []
        for index, job in enumerate(jobs):
            results.append(fn(context, job))
            if on_done is not None:
                on_done(index, results[-1])
        return results
    spawn = multiprocessing.get_context("spawn")
    out: list[Any] = [None] * len(jobs)
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_start_worker,
                             initargs=(context, torch.get_num_threads(), os.getpid())) as pool:
        pending = {pool.submit(_call, fn, job): i for i, job in enumerate(jobs)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    out[index] = future.result()
                    if on_done is not None:
                        on_done(index, out[index])
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return out
