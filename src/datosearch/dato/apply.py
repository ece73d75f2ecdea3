"""`apply(pipe_or_unet, schedule)` / `remove(...)`: register and remove DaTo's diffusers hooks."""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers.hooks import HookRegistry

from ..space import io
from ..space.schedule import REUSE, Schedule
from .caching import EPS, ModuleCacheHook, UNetPlanHook, consumed_module, skipped_modules
from .generation import GenerationBounds
from .pruning import PruneLog, TokenPruneHook, check_prunable
from .state import DaToContext

PLAN_HOOK, CACHE_HOOK, PRUNE_HOOK = "datosearch_plan", "datosearch_cache", "datosearch_prune"
_HANDLE_ATTR = "_datosearch_handle"
TRAJECTORIES = ("schedule", "pipeline")  # `apply(..., trajectory=)`: run the schedule's own, or keep the pipeline's


def _split(target: Any) -> tuple[Any, torch.nn.Module]:
    """(pipeline or None, U-Net); a `torch.compile`d U-Net is hooked inside, where its compiled code runs."""
    unet = getattr(target, "_orig_mod", target)
    pipe = None
    if not hasattr(unet, "down_blocks"):
        pipe, unet = target, getattr(target, "unet", None)
        unet = getattr(unet, "_orig_mod", unet)
    if not isinstance(unet, torch.nn.Module) or not hasattr(unet, "down_blocks"):
        raise TypeError(f"expected a diffusers pipeline with a U-Net or a UNet2DConditionModel, got {type(target).__name__}")
    return pipe, unet


def _as_schedule(schedule: Schedule | dict | str | os.PathLike) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return io.from_json_obj(schedule)
    return io.load(schedule)


def _history_sizes(unet: torch.nn.Module, schedule: Schedule) -> dict[str, int]:
    """Full-call values each forecast path keeps: the highest order asked of it, plus one."""
    sizes: dict[str, int] = {}
    for call, fc in schedule.forecast.items():
        action = schedule.cache[call]
        path = EPS if action == REUSE else consumed_module(unet, action)
        sizes[path] = max(sizes.get(path, 0), fc.order + 1)
    return sizes


def _plan_timesteps(pipe: Any, schedule: Schedule) -> list[float] | None:
    """The timestep of each of the schedule's calls on its trajectory under `pipe`'s scheduler config
    (None without a pipeline or a trajectory, or where the trajectory does not build there)."""
    if pipe is None or schedule.trajectory is None:
        return None
    try:
        scheduler = schedule.trajectory.set_timesteps(schedule.trajectory.build(pipe.scheduler.config))
    except (TypeError, ValueError):
        return None
    return torch.as_tensor(scheduler.timesteps).float().tolist()


class DaToHandle:
    """An applied schedule; `remove()` restores the U-Net and the pipeline (its scheduler object) exactly.

    `call_kwargs` is what to pass to the pipeline call to run the schedule as it was searched:
    `num_inference_steps`, plus `timesteps` or `sigmas` where the schedule's trajectory has them
    (empty when the schedule names no trajectory)::

        handle = datosearch.apply(pipe, "schedule.json")    # swaps in the schedule's scheduler
        images = pipe(prompt, **handle.call_kwargs).images  # its steps (and timesteps)
        handle.remove()                                     # the pipeline's own scheduler is back

    Another step count maps the plan by normalized time, matched by noise level (the timestep of each
    call; one log line; `strict` refuses instead).
    """

    def __init__(self, pipe: Any, unet: torch.nn.Module, schedule: Schedule, strict: bool = False,
                 trajectory: str = "schedule") -> None:
        self.pipe, self.unet, self.schedule = pipe, unet, schedule
        self.strict, self.trajectory = strict, trajectory
        self.context = DaToContext(schedule, cfg=self._cfg, strict=strict,
                                   pipeline=None if pipe is None else type(pipe).__name__,
                                   plan_timesteps=_plan_timesteps(pipe, schedule))
        self.pruning = PruneLog()  # what pruning really did (counts, skips); see `pruning.attrs()`
        self._registries: list[HookRegistry] = []
        self._bounds: GenerationBounds | None = None
        self._scheduler: tuple[Any, Any] | None = None  # (the user's scheduler, the one swapped in)
        if trajectory == "schedule" and pipe is not None and schedule.trajectory is not None:
            original = pipe.scheduler
            pipe.scheduler = schedule.trajectory.build(original.config)
            self._scheduler = (original, pipe.scheduler)
        self._register()

    @property
    def swapped_out(self) -> Any:
        """The pipeline's scheduler that `apply` swapped the trajectory's in for (None: none swapped)."""
        return None if self._scheduler is None else self._scheduler[0]

    @property
    def call_kwargs(self) -> dict[str, Any]:
        """`num_inference_steps` (and `timesteps` / `sigmas`) the schedule was searched for; {} without a trajectory."""
        return self.schedule.trajectory.call_kwargs() if self.schedule.trajectory is not None else {}

    def _cfg(self) -> bool:
        return bool(getattr(self.pipe, "do_classifier_free_guidance", False)) if self.pipe is not None else False

    def _hook(self, module: torch.nn.Module, hook: Any, name: str) -> None:
        registry = HookRegistry.check_if_exists_or_initialize(module)
        registry.register_hook(hook, name)
        self._registries.append(registry)

    def _register(self) -> None:
        sched, unet, ctx = self.schedule, self.unet, self.context
        needs_dynamics = sched.prune.active and sched.prune.base_selection == "dynamics"
        history = _history_sizes(unet, sched)
        self._hook(unet, UNetPlanHook(ctx, needs_dynamics, history.get(EPS, 0)), PLAN_HOOK)
        cut_by: dict[str, set[int]] = {}
        for branch in sorted({a for a in sched.cache if isinstance(a, int)}):
            for path in skipped_modules(unet, branch):
                cut_by.setdefault(path, set()).add(branch)
        for path, branches in cut_by.items():
            forecast_for = frozenset(b for b in branches if consumed_module(unet, b) == path)
            hook = ModuleCacheHook(ctx, path, frozenset(branches), forecast_for, history.get(path, 0))
            self._hook(unet.get_submodule(path), hook, CACHE_HOOK)
        for block, ratio in sched.prune.ratios.items():
            if ratio > 0:
                for target in sched.prune.targets:
                    self._hook(unet.get_submodule(f"{block}.{target}"), TokenPruneHook(ctx, block, target, self.pruning),
                               PRUNE_HOOK)
        if self.pipe is not None and hasattr(self.pipe, "progress_bar"):
            self._bounds = GenerationBounds(self.pipe, ctx)

    def reset(self) -> None:
        """Forget the current generation (needed only for a bare U-Net stopped mid-generation)."""
        self.context.reset()

    def remove(self) -> None:
        """Remove every hook; the modules are left exactly as before `apply`."""
        for registry in self._registries:
            for name in (PLAN_HOOK, CACHE_HOOK, PRUNE_HOOK):
                registry.remove_hook(name, recurse=False)
            module = registry._module_ref
            if not registry.hooks:
                del module._diffusers_hook
                if getattr(module.__dict__.get("forward"), "__func__", None) is type(module).forward:
                    del module.forward  # drop the instance attribute diffusers leaves behind
        self._registries.clear()
        if self._bounds is not None:
            self._bounds.remove()
            self._bounds = None
        self.context.reset()
        if self._scheduler is not None:
            original, swapped_in = self._scheduler
            if self.pipe.scheduler is swapped_in:  # a scheduler the user set since is theirs to keep
                self.pipe.scheduler = original
            self._scheduler = None
        if getattr(self.unet, _HANDLE_ATTR, None) is self:
            delattr(self.unet, _HANDLE_ATTR)


def apply(target: Any, schedule: Schedule | dict | str | os.PathLike, *, strict: bool = False,
          trajectory: str = "schedule") -> DaToHandle:
    """Accelerate a pipeline (or a bare U-Net) with `schedule` (a Schedule, dict or JSON file path).

    By default (`trajectory="schedule"`) the pipeline runs the schedule as it was searched: the
    scheduler of its base trajectory (`Schedule.trajectory`: the pipeline's scheduler config plus the
    trajectory's overrides) is swapped in until `remove()`, and `handle.call_kwargs` holds the step
    count (and explicit timesteps or sigmas) to call the pipeline with. `trajectory="pipeline"` keeps
    the pipeline's own scheduler. A generation that makes another number of U-Net calls than the
    schedule plans gets the plan mapped by normalized time (one log line naming the plan's steps and
    the full calls it maps to; `strict=True` raises `ScheduleError` instead); a run that enters the
    trajectory late (img2img, inpainting) starts where its first timestep lies, with a full call. A
    schedule already applied to the same U-Net is removed first.
    """
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"trajectory must be one of {', '.join(map(repr, TRAJECTORIES))}, got {trajectory!r}")
    pipe, unet = _split(target)
    schedule = _as_schedule(schedule)
    schedule.validate_for(unet)
    check_prunable(unet, schedule)
    remove(unet)
    handle = DaToHandle(pipe, unet, schedule, strict, trajectory)
    setattr(unet, _HANDLE_ATTR, handle)
    return handle


def applied(target: Any) -> DaToHandle | None:
    """The handle of the schedule applied to a pipeline or U-Net (None: none)."""
    return getattr(_split(target)[1], _HANDLE_ATTR, None)


def remove(target: Any) -> bool:
    """Remove the schedule applied to a pipeline or U-Net; returns whether one was applied."""
    handle = applied(target)
    if handle is None:
        return False
    handle.remove()
    return True
