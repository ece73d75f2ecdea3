"""Per-generation state shared by all DaTo hooks, kept in a diffusers `StateManager`, and the plan each
generation runs: the schedule mapped to the pipeline's call count (`space.retime`), from the call
where the run enters the trajectory."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import torch
from diffusers.hooks.hooks import BaseState, CacheContext, StateManager

from ..space import retime
from ..space.schedule import FULL, Action, Forecast, Schedule, ScheduleError
from .forecast import History

_CONTEXT = CacheContext(name="datosearch")
log = logging.getLogger("datosearch")


class DaToState(BaseState):
    """Everything one generation accumulates: call index, cached features, recent noise predictions."""

    def __init__(self) -> None:
        self.plan: Schedule | None = None  # what this generation runs (set at its first U-Net call)
        self.call = 0  # index of the U-Net call in progress (or the next one), in `plan`
        self.action: Action = FULL
        self.forecast: Forecast | None = None  # this call's forecast, if its action has one
        self.cfg = False  # batch is [uncond, cond] halves that share base-token choices
        self.latent_hw: tuple[int, int] = (0, 0)
        self.last_output: torch.Tensor | None = None
        self.eps: list[torch.Tensor] = []  # the last two *computed* noise predictions, newest last
        self.features: dict[str, Any] = {}  # DeepCache: module path -> last output
        self.dynamics: dict[tuple[int, int], torch.Tensor] = {}  # per call: grid -> pooled dynamics
        self.history: dict[str, History] = {}  # forecast path (module path, or EPS) -> full-call values
        self.generator: torch.Generator | None = None

    def reset(self) -> None:
        self.__init__()

    def remember(self, path: str, size: int, value: torch.Tensor) -> None:
        """Keep `value` as this full call's value of forecast path `path` (the last `size` are kept)."""
        self.history.setdefault(path, History(size)).update(self.call, value)

    def predict(self, path: str, fallback: torch.Tensor) -> torch.Tensor:
        """This call's forecast of `path`; `fallback` (the plain cache) when the call does not forecast."""
        fc, history = self.forecast, self.history.get(path)
        if fc is None or history is None:
            return fallback
        return history.predict(self.call, fc.order, fc.damping)


class DaToContext:
    """The schedule, the state manager and the generation's trajectory; one per applied U-Net.

    A pipeline's generation is bracketed by `begin` / `end` (`dato.generation`); a bare U-Net's
    generations follow one another by call count (the schedule's own).
    """

    def __init__(self, schedule: Schedule, cfg: Callable[[], bool] = lambda: False, strict: bool = False,
                 pipeline: str | None = None, plan_timesteps: Sequence[float] | None = None) -> None:
        self.schedule = schedule
        self.cfg = cfg
        self.strict = strict
        self.pipeline = pipeline  # the class of the pipeline applied to (None: a bare U-Net)
        self.trajectory: list[float] | None = None  # the scheduler's timesteps, inside a pipeline generation
        self.manager = StateManager(DaToState)
        self.manager.set_context(_CONTEXT)
        # the timestep of each of the schedule's calls (its trajectory's): another run is mapped by noise level
        ok = plan_timesteps is not None and len(plan_timesteps) == schedule.n_calls
        self.plan_timesteps = tuple(float(t) for t in plan_timesteps) if ok else None
        self._plans: dict[tuple, Schedule] = {}

    @property
    def bounded(self) -> bool:
        """Inside a pipeline's denoising loop, whose end drops the state (not a bare U-Net)."""
        return self.trajectory is not None

    def state(self) -> DaToState:
        return self.manager.get_state()

    def reset(self) -> None:
        """Start a new generation: drop caches and restart the call count and the noise generator."""
        self.manager.reset()
        self.manager.set_context(_CONTEXT)

    def holds_cache(self) -> bool:
        """Whether any cached tensor (features, forecast history, noise predictions) is held."""
        return any(st.features or st.history or st.eps or st.last_output is not None
                   for st in self.manager._state_cache.values())

    def begin(self, timesteps: Sequence[float], scheduler: str, steps: int | None = None) -> None:
        """A pipeline generation starts on a trajectory of these timesteps (`steps` steps of `scheduler`):
        fresh state, plan checked."""
        self.reset()
        self.plan_for(len(timesteps), scheduler, steps, timesteps)
        self.trajectory = list(timesteps)

    def end(self) -> None:
        """The generation is over (or was interrupted): nothing is kept."""
        self.reset()
        self.trajectory = None

    def plan_for(self, n_calls: int, scheduler: str = "the scheduler", steps: int | None = None,
                 timesteps: Sequence[float] | None = None) -> Schedule:
        """The plan for a run of `n_calls` calls (at these `timesteps`): the schedule, or it mapped by
        normalized time, matched by noise level where both trajectories' timesteps are known (logged once
        per run trajectory); `strict` refuses instead."""
        clock = None
        if self.plan_timesteps is not None and timesteps is not None and len(timesteps) == n_calls:
            clock = retime.NoiseClock(self.plan_timesteps, tuple(float(t) for t in timesteps))
        key = (n_calls, None if clock is None else clock.run)
        plan = self._plans.get(key)
        if plan is None:
            plan = retime.to_calls(self.schedule, n_calls, clock)
            if plan is not self.schedule:
                self._mapped(plan, n_calls, scheduler, steps, clock)
            self._plans[key] = plan
        return plan

    def _mapped(self, plan: Schedule, n_calls: int, scheduler: str, steps: int | None,
                clock: retime.NoiseClock | None) -> None:
        """`strict`: refuse the mapped plan; else say once what it maps to."""
        n, sched = self.schedule.n_calls, self.schedule
        if self.strict:
            differ = f"{scheduler} will make {n_calls}" if n_calls != n else f"{scheduler} places them at other timesteps"
            raise ScheduleError(f"the schedule plans {n} U-Net calls but {differ}; use a schedule made for this "
                                f"scheduler and step count, or drop strict (--strict) to map it by normalized time")
        k = sched.counts()["full"]
        head = (f"the schedule was searched for {sched.trajectory.label()} ({n} U-Net calls, {k} full)"
                if sched.trajectory is not None else f"the schedule plans {n} U-Net calls ({k} full)")
        run = f"{scheduler} at {steps} steps makes {n_calls}" if steps else f"{scheduler} will make {n_calls}"
        how = "normalized time" if clock is None else "noise level"
        log.warning("%s; %s: mapped by %s to %d full calls of %d (strict=True or --strict refuses instead)",
                    head, run, how, plan.counts()["full"], n_calls)

    def first_call(self, timestep: Any) -> Schedule:
        """This generation's plan, fixed at its first U-Net call: a run entering the trajectory late
        (img2img, inpainting) starts where its timestep lies, with a full call."""
        if self.trajectory is None:
            if self.pipeline is not None:
                raise ScheduleError(f"the U-Net was called outside the denoising loop of the {self.pipeline} the "
                                    f"schedule was applied to (another pipeline sharing it?); apply the schedule to "
                                    f"the pipeline that runs it")
            return self.schedule
        plan = self.plan_for(len(self.trajectory), timesteps=self.trajectory)
        return retime.from_call(plan, entry_call(self.trajectory, timestep))

    def plan(self) -> Schedule:
        """The plan of the generation in progress (the schedule itself before its first call)."""
        return self.state().plan or self.schedule

    def generator(self, device: torch.device) -> torch.Generator:
        st = self.state()
        if st.generator is None or st.generator.device != device:
            st.generator = torch.Generator(device=device).manual_seed(self.schedule.prune.seed)
        return st.generator


def entry_call(trajectory: Sequence[float], timestep: Any) -> int:
    """The index in `trajectory` of the timestep a run's first call has (the first of equal ones);
    0 if it is not there."""
    t = float(torch.as_tensor(timestep).flatten()[0])
    best = min(range(len(trajectory)), key=lambda i: (abs(trajectory[i] - t), i))
    return best if abs(trajectory[best] - t) <= 1e-3 * max(1.0, abs(t)) else 0


def token_grid(n_tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of a block with `n_tokens`, from the latent size and stride-2 downsampling."""
    h, w = latent_hw
    for _ in range(8):
        if h * w == n_tokens:
            return h, w
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    raise ValueError(f"cannot map {n_tokens} tokens onto a grid of latents {latent_hw}")
