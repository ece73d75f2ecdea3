"""Measured latency: warm-up runs, then the median of timed repeats, on the device that runs them.

CUDA: CUDA events around each run, with `synchronize` before and after. CPU (and anything else):
`time.perf_counter`. Compare candidates only with a baseline measured in the same process
(`speedup(baseline, candidate)`).

On CPU, timing runs on its own torch thread count (`set_timing_threads`, default: whatever torch has), the
one the device name records; generating images outside timing may use more threads (every core) without
changing any timing (on the embedded model on a 2-core host, the images were bit-identical too).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterator

import torch

from .errors import ObjectiveError


@dataclass
class Latency:
    """Timing of one callable: the median and every timed repeat, in seconds."""

    median_s: float
    times_s: list[float] = field(default_factory=list)
    device_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "times_s": list(self.times_s), "device_name": self.device_name}


def speedup(baseline: Latency | float, candidate: Latency | float) -> float:
    """baseline / candidate median latency (> 1 means the candidate is faster)."""
    b = baseline.median_s if isinstance(baseline, Latency) else float(baseline)
    c = candidate.median_s if isinstance(candidate, Latency) else float(candidate)
    if c <= 0:
        raise ObjectiveError(f"cannot compute a speedup from a candidate latency of {c} s")
    return b / c


@lru_cache(maxsize=None)
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


_timing_threads: int | None = None  # CPU torch threads while timing (None: torch's own setting)


def set_timing_threads(threads: int | None) -> int | None:
    """Set the torch thread count that CPU timing runs on from now on (None: whatever torch has when timing);
    returns the previous setting."""
    global _timing_threads
    previous, _timing_threads = _timing_threads, threads
    return previous


def generation_threads() -> int:
    """The torch threads images are generated on (CPU): every core this process may use (`taskset` limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def timing_threads() -> int:
    """The torch thread count that CPU timing runs on."""
    return _timing_threads or torch.get_num_threads()


@contextmanager
def timing_session(device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the body on the timing thread count (CPU), then restore torch's; nesting costs nothing."""
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu" or timing_threads() == before:
        yield
        return
    torch.set_num_threads(timing_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device_name(device: torch.device | str = "cpu") -> str:
    """Human-readable name of the device: the GPU's name, or the CPU model with its core count and the torch
    threads that timing runs on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{_cpu_model()} ({os.cpu_count()} cores, {timing_threads()} torch threads)"
    return device.type


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}


def _time_once(run: Callable[[], Any], device: torch.device, clock: str = "wall") -> float:
    if device.type == "cuda":
        with torch.cuda.device(device):  # events record on the current stream of this device
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1000.0
    now = CLOCKS[clock]
    _sync(device)
    t0 = now()
    run()
    _sync(device)
    return now() - t0


def steady_clock(device: torch.device | str) -> str:
    """The clock that resists a shared machine's load: CPU seconds of the process off CUDA, else wall."""
    return "wall" if torch.device(device).type == "cuda" else "process"


def measure_latency(run: Callable[[], Any], device: torch.device | str = "cpu", warmup: int = 1,
                    repeats: int = 3, clock: str = "wall") -> Latency:
    """Call `run` `warmup` times untimed, then `repeats` times timed; return the median and all times.

    `run` should be the whole denoising loop of one generation (e.g. `lambda: pipe(prompts, ...)`).
    Off CUDA, `clock="process"` times the process's CPU seconds instead of wall seconds: with one
    torch thread that is the latency the run would have on an idle core, unaffected by other
    processes waiting for the same cores (a shared machine).
    """
    if clock not in CLOCKS:
        raise ObjectiveError(f"unknown clock {clock!r}; use one of {', '.join(CLOCKS)}")
    if repeats < 1 or warmup < 0:
        raise ObjectiveError(f"latency needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    with timing_session(device):
        for _ in range(warmup):
            run()
        _sync(device)
        times = [_time_once(run, device, clock) for _ in range(repeats)]
    return Latency(statistics.median(times), times, device_name(device))
