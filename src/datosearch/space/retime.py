"""Map a plan to another number of U-Net calls by normalized time, and cut it where a run starts late.

Call `c` of an `n`-call plan covers the fraction [c/n, (c+1)/n) of the trajectory; that, and the
plan's length, is all the mapping needs. Given both trajectories' timesteps (`NoiseClock`), the
normalized times are matched by noise level instead: a plan searched on timesteps bent toward low
noise keeps its full calls at the noise levels it chose when a run spaces its steps otherwise.
`to_calls(schedule, m, clock)`:

- keeps the number of full calls proportional: round(k·m/n) of `m` (at least 1);
- places them where the plan's own full calls lie in normalized time: the i-th of k' target full
  calls goes to the plan's placement curve (its full calls' times, interpolated) at i/k', and
  `placement.spread` makes them distinct calls, as the structured encoding places its full calls;
- gives every other call the action (and forecast) of the plan's nearest non-full call at the same
  normalized time, and every call the per-call pruning multiplier found there.

`from_call(schedule, start)` is the plan of a run that enters the trajectory at call `start`
(img2img and inpainting at strength < 1): the calls from `start` on, the first of them full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Sequence

import numpy as np

from .placement import spread
from .schedule import FULL, Action, Forecast, Schedule


@dataclass(frozen=True)
class NoiseClock:
    """Normalized time of the plan's trajectory against that of a run, matched by timestep: each is a
    piecewise-linear timestep curve through (call c / calls, timestep of call c), ending at (1, 0)."""

    plan: tuple[float, ...]  # the timestep of each of the plan's calls, decreasing (repeats allowed: PNDM)
    run: tuple[float, ...]  # the same for the run's calls

    @staticmethod
    def _curve(timesteps: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(normalized times, timesteps) of the curve, a repeated timestep kept at its first call."""
        n, times, values = len(timesteps), [], []
        for c, t in enumerate(timesteps):
            if not values or t < values[-1]:
                times.append(c / n)
                values.append(float(t))
        return np.array(times + [1.0]), np.array(values + [0.0])

    @cached_property
    def _plan_curve(self) -> tuple[np.ndarray, np.ndarray]:
        return self._curve(self.plan)

    @cached_property
    def _run_curve(self) -> tuple[np.ndarray, np.ndarray]:
        return self._curve(self.run)

    def same(self) -> bool:
        """Whether the run's timesteps are the plan's own (nothing to map)."""
        return len(self.plan) == len(self.run) and bool(np.allclose(self.plan, self.run, rtol=0, atol=1e-3))

    @staticmethod
    def _convert(u: float, src: tuple[np.ndarray, np.ndarray], dst: tuple[np.ndarray, np.ndarray]) -> float:
        (ts, vs), (td, vd) = src, dst
        level = float(np.interp(u, ts, vs))
        return float(np.interp(-level, -vd, td))  # clamped to the ends where `dst` starts lower or higher

    def to_plan(self, u: float) -> float:
        """The plan's normalized time at the noise level of the run's normalized time `u`."""
        return self._convert(u, self._run_curve, self._plan_curve)

    def to_run(self, v: float) -> float:
        """The run's normalized time at the noise level of the plan's normalized time `v`."""
        return self._convert(v, self._plan_curve, self._run_curve)


def _source_call(j: int, m: int, n: int, clock: NoiseClock | None = None) -> int:
    """The plan's call (of `n`) at the (noise level of the) middle of target call `j` (of `m`)."""
    u = (j + 0.5) / m
    return min(n - 1, int((u if clock is None else clock.to_plan(u)) * n))


def _placement_curve(full: list[int], n: int, v: float) -> float:
    """Normalized time at fraction `v` of the full calls (linear between them, ending at 1)."""
    points = [*full, n]
    q = v * len(full)
    i = min(int(q), len(full) - 1)
    return (points[i] + (q - i) * (points[i + 1] - points[i])) / n


def _nearest_non_full(plan: list[Action], s: int) -> int | None:
    """The non-full call closest to `s` (the later one on a tie); None if every call is full."""
    for d in range(len(plan)):
        for c in (s + d, s - d):
            if 0 <= c < len(plan) and plan[c] != FULL:
                return c
    return None


def full_count(k: int, n: int, m: int) -> int:
    """Full calls of an `m`-call run for `k` full calls of an `n`-call plan (proportional, half up)."""
    return max(1, min(m, math.floor(k * m / n + 0.5)))


def to_calls(schedule: Schedule, m: int, clock: NoiseClock | None = None) -> Schedule:
    """`schedule` mapped to `m` U-Net calls by normalized time, matched by noise level with a `clock`
    (the schedule itself when it has `m` calls and no clock says its timesteps differ from the run's)."""
    n, plan = schedule.n_calls, schedule.cache
    if m == n and (clock is None or clock.same()):
        return schedule
    full = [c for c, a in enumerate(plan) if a == FULL]
    k = full_count(len(full), n, m)
    times = [_placement_curve(full, n, i / k) for i in range(k)]
    targets = set(spread(m, times if clock is None else [clock.to_run(v) for v in times]))
    source = [_source_call(j, m, n, clock) for j in range(m)]
    cache: list[Action] = []
    forecast: dict[int, Forecast] = {}
    for j in range(m):
        s = _nearest_non_full(plan, source[j]) if j not in targets else None
        cache.append(FULL if s is None else plan[s])
        if s is not None and s in schedule.forecast:
            forecast[j] = schedule.forecast[s]
    scale = schedule.prune.call_scale
    prune = replace(schedule.prune, ratios=dict(schedule.prune.ratios), call_scale=None if scale is None else
                    [scale[c] for c in source])
    return Schedule(cache, prune, dict(schedule.meta), forecast)


def from_call(schedule: Schedule, start: int) -> Schedule:
    """The plan's calls from `start` on, the first one full (its forecast dropped): a run entering late."""
    if start == 0:
        return schedule
    cache: list[Action] = [FULL, *schedule.cache[start + 1:]]
    forecast = {c - start: f for c, f in schedule.forecast.items() if c > start}
    scale = schedule.prune.call_scale
    prune = replace(schedule.prune, ratios=dict(schedule.prune.ratios),
                    call_scale=None if scale is None else list(scale[start:]))
    return Schedule(cache, prune, dict(schedule.meta), forecast)
