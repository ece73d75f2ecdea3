"""Generating on CPU in worker processes instead of torch threads.

On a 2-core host one torch process with 2 threads generates a batch more slowly, and less steadily,
than two 1-thread processes that each generate half of it: 1.38-1.53x over 8 kinds of schedule, 1.45x
all together, bit-identical images (the embedded model, 24 images, medians of 7 interleaved rounds, AMD
EPYC; `bench/processes.py`, `bench/results/processes-embedded.md`). Each image has its own generator, so
the images are the same up to float rounding: torch's kernels may round differently at another batch
size or thread count (the embedded model's 24-image batches came out bit-identical). `datosearch run |
resume | export | report` turn this on (`enable`): a generation of n >= 2 images on CPU while torch may
use T threads, 2 <= T <= `MAX_PROCESSES`, is then split into k = min(T, n) contiguous parts (whole
batches where there are k or more, else the images evenly), the first generated here and the others by
worker processes, all on one thread (a forked process must not enter OpenMP's thread pool: the parent's
pool threads do not exist in it, and it hangs). More threads than `MAX_PROCESSES` (not measured) stay
in-process. Timing runs on one thread (`objectives.latency.timing_session`), so it is never split.

A worker is forked from this process at the first split generation of a pipeline and serves it until
`close()`. Each job carries what makes the pipeline's state: its scheduler (class and config) and
the applied schedule (`dato.apply`: the schedule, `strict`, whether it swapped its trajectory in, and
the scheduler it swapped out); the worker sets the same state on its own copy, generates its part,
and returns the images and what pruning did (added to the handle's `PruneLog` here).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

MAX_PROCESSES = 4

_enabled = False
_workers: dict[int, tuple[Any, list["_Worker"]]] = {}  # id(pipe) -> (pipe, its workers)

Generate = Callable[[Any, Any, dict[str, Any], dict[str, Any]], torch.Tensor]


def enable(on: bool = True) -> None:
    """Split CPU generations over processes from now on (`on`), or stop (the workers are closed)."""
    global _enabled
    _enabled = on
    if not on:
        close()


def close() -> None:
    """Stop every worker process."""
    for _, workers in _workers.values():
        for worker in workers:
            worker.stop()
    _workers.clear()


def _scheduler_spec(scheduler: Any) -> tuple[type, dict[str, Any]] | None:
    return None if scheduler is None else (type(scheduler), dict(scheduler.config))


def _build(spec: tuple[type, dict[str, Any]] | None) -> Any:
    return None if spec is None else spec[0].from_config(spec[1])


def _state(pipe: Any) -> dict[str, Any]:
    """What the worker needs to put its copy of `pipe` in the same state."""
    from ..dato.apply import applied

    state: dict[str, Any] = {"scheduler": _scheduler_spec(getattr(pipe, "scheduler", None)), "handle": None}
    handle = applied(pipe)
    if handle is not None:
        original = handle.swapped_out if handle.swapped_out is not None else pipe.scheduler
        state["handle"] = {"schedule": handle.schedule.to_dict(), "strict": handle.strict,
                           "trajectory": handle.trajectory, "scheduler": _scheduler_spec(original)}
    return state


def _run_job(pipe: Any, job: dict[str, Any], run: Generate) -> tuple[torch.Tensor, Any]:
    """The worker's side of one part: set the pipeline's state, generate, undo."""
    from .. import dato

    dato.remove(pipe)
    handle, spec = None, job["state"]["handle"]
    if spec is not None:
        pipe.scheduler = _build(spec["scheduler"])
        handle = dato.apply(pipe, spec["schedule"], strict=spec["strict"], trajectory=spec["trajectory"])
    pipe.scheduler = _build(job["state"]["scheduler"])
    try:
        return run(pipe, job["calibration"], job["call"], job["size"]), None if handle is None else handle.pruning
    finally:
        if handle is not None:
            handle.remove()


def _serve(pipe: Any, conn: Any, run: Generate) -> None:
    """A worker's loop: one job in, ("ok", images, pruning) or ("error", exception) out, until None or EOF."""
    torch.set_num_threads(1)  # before any torch op: see the module
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    warnings.simplefilter("ignore")  # the parent generates the same schedule and warns itself
    logging.disable(logging.WARNING)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            images, pruning = _run_job(pipe, job, run)
            conn.send(("ok", images.numpy(), pruning))
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            try:
                conn.send(("error", exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class _Worker:
    """One forked process that generates parts of `pipe`'s batches."""

    def __init__(self, pipe: Any, run: Generate) -> None:
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(pipe, child, run), daemon=True,
                                       name="datosearch-generation")
        self.process.start()
        child.close()

    def receive(self) -> tuple[str, Any, Any]:
        try:
            return self.conn.recv()
        except EOFError:
            return "error", RuntimeError(f"generation worker process {self.process.pid} ended unexpectedly "
                                         f"(exit code {self.process.exitcode})"), None

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


def _pool(pipe: Any, count: int, run: Generate) -> list[_Worker]:
    _, workers = _workers.setdefault(id(pipe), (pipe, []))
    workers[:] = [w for w in workers if w.process.is_alive()]
    while len(workers) < count:
        workers.append(_Worker(pipe, run))
    return workers[:count]


def parts(pipe: Any, n_images: int) -> int:
    """How many processes a generation of `n_images` on `pipe` is split into now (1: not split)."""
    device = getattr(pipe, "device", torch.device("cpu"))
    threads = torch.get_num_threads()
    if (not _enabled or n_images < 2 or torch.device(device).type != "cpu" or threads > MAX_PROCESSES
            or "fork" not in multiprocessing.get_all_start_methods()):  # Windows: in-process
        return 1
    return min(threads, n_images)


def _pieces(calib: Any, k: int) -> list[Any]:
    """`calib` in `k` contiguous parts: groups of whole batches if it has k or more, else the images evenly."""
    n, batches = len(calib.prompts), len(calib.chunks())
    size = max(1, calib.batch_size)
    if batches >= k:
        bounds = [min(n, round(i * batches / k) * size) for i in range(k + 1)]
    else:
        bounds = [round(i * n / k) for i in range(k + 1)]
    return [calib.part(a, b) for a, b in zip(bounds, bounds[1:])]


@contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate(pipe: Any, calib: Any, call: dict[str, Any], size: dict[str, Any], run: Generate) -> torch.Tensor:
    """`run(pipe, calib, call, size)` split over `parts(...)` processes (this one included), images in order."""
    n = len(calib.prompts)
    k = parts(pipe, n)
    if k < 2:
        return run(pipe, calib, call, size)
    pieces = _pieces(calib, k)
    workers, state = _pool(pipe, k - 1, run), _state(pipe)
    for worker, piece in zip(workers, pieces[1:]):
        worker.conn.send({"state": state, "calibration": piece, "call": call, "size": size})
    try:
        with _threads(1):
            head = run(pipe, pieces[0], call, size)
    finally:
        replies = [worker.receive() for worker in workers]  # every reply is read, so no job is left behind
    failed = next((reply[1] for reply in replies if reply[0] == "error"), None)
    if failed is not None:
        raise failed
    from ..dato.apply import applied

    handle = applied(pipe)
    if handle is not None:  # then each worker generated under the same schedule and sent its log
        for _, _, pruning in replies:
            handle.pruning.add(pruning)
    return torch.cat([head] + [torch.from_numpy(images) for _, images, _ in replies])
