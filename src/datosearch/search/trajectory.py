"""The base trajectory a schedule runs on: its scheduler class and step count (`meta.scheduler/steps`).

Searching the base trajectory (issue: fewer steps with a better solver) means every candidate may
name its own scheduler and step count; `base_trajectory` swaps them in for one run and restores
the pipeline's own scheduler afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ..errors import UserValueError

SCHEDULERS = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
              "dpm": "DPMSolverMultistepScheduler", "dpmpp2m": "DPMSolverMultistepScheduler",
              "unipc": "UniPCMultistepScheduler"}
# The converged reference every sampler is scored against (DPM-Solver++ 2M at 100 steps), with
# "linspace" timesteps: under a config's "leading" spacing 100 and 200 steps start at t=990 and
# t=995 and agree to only ~43 dB on the embedded model; under "linspace" both start at t=999 (61 dB).
CONVERGED_SCHEDULER, CONVERGED_STEPS, CONVERGED_SPACING = "DPMSolverMultistepScheduler", 100, "linspace"


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class for a short name (`SCHEDULERS`) or a class name."""
    import diffusers

    cls_name = SCHEDULERS.get(name.lower(), name)
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise UserValueError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)} or a diffusers class")
    return cls


def class_name(name: str) -> str:
    """The diffusers class name of a scheduler given by short name or class name."""
    return scheduler_class(name).__name__


def set_scheduler(pipe: Any, scheduler: str | None) -> str:
    """Swap the pipeline's scheduler (a short name or a diffusers class name); returns the class name."""
    if scheduler:
        cls = scheduler_class(scheduler)
        if type(pipe.scheduler) is not cls:
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
    return type(pipe.scheduler).__name__


@contextlib.contextmanager
def using_scheduler(pipe: Any, scheduler: str | None) -> Iterator[Any]:
    """Run with `scheduler` swapped in (None: the pipeline's own); the original is restored after."""
    original = pipe.scheduler
    try:
        set_scheduler(pipe, scheduler)
        yield pipe.scheduler
    finally:
        pipe.scheduler = original


@contextlib.contextmanager
def using_converged(pipe: Any, spacing: str | None = CONVERGED_SPACING) -> Iterator[Any]:
    """Run with the converged reference's scheduler swapped in (`spacing` None: the config's own)."""
    with using_scheduler(pipe, CONVERGED_SCHEDULER) as scheduler:
        if spacing is not None:
            pipe.scheduler = type(scheduler).from_config(scheduler.config, timestep_spacing=spacing)
        yield pipe.scheduler


def steps_of(schedule: Any, default: int) -> int:
    """The step count a schedule was made for (`meta.steps`), else `default`."""
    meta = getattr(schedule, "meta", None) or {}
    return int(meta.get("steps") or default)


def scheduler_of(schedule: Any) -> str | None:
    meta = getattr(schedule, "meta", None) or {}
    return meta.get("scheduler")
