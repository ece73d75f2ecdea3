"""A calibrated latency cost model: seconds of one generation as a linear function of plan counts.

    t = const + Σ_S c_S·calls_S + a·full + Σ_b a_b·shallow_b + f·forecast + Σ_g (o_g·pruned_g + p_g·prune_g)

`calls_S`: U-Net calls (= scheduler steps) on scheduler class S (loop + scheduler step: all a reuse call
costs); `full`, `shallow_b`: calls that run the whole U-Net / the part outside branch b's cut;
`forecast`: calls that forecast; per pruning group g (a resolution level, or one block), over the
calls where a block of g is computed, `pruned_g` counts those with ratio > 0 (token selection
overhead) and `prune_g` sums their ratios (the saving). `calibrate` times a small design of
schedules interleaved, fits the coefficients by least squares and returns a `CostModel` whose
`predict` is deterministic, needs no U-Net (its layout is stored) and round-trips through JSON.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..dato.caching import skipped_modules
from ..space.layout import n_branches, transformer_blocks
from ..space.schedule import FULL, REUSE, PruneConfig, Schedule
from ..space.trajectory import Trajectory, class_name
from .errors import ObjectiveError

CONST, FULL_F, FORECAST_F = "const", "full", "forecast"


class CostModelError(ObjectiveError):
    """A cost model that cannot be fitted or cannot predict a schedule."""


@dataclass
class PlanLayout:
    """What features need from a U-Net: each block's pruning group, the blocks each branch computes."""

    groups: dict[str, str]
    computed: dict[int, list[str]]

    @classmethod
    def of(cls, unet: torch.nn.Module, group_by: str = "level") -> "PlanLayout":
        """`group_by`: "level" (one group per resolution level) or "block" (one per transformer block)."""
        if group_by not in ("level", "block"):
            raise CostModelError(f"group_by must be 'level' or 'block', got {group_by!r}")
        blocks = transformer_blocks(unet)
        groups = {b.path: (f"L{b.level}" if group_by == "level" else b.path) for b in blocks}
        computed = {}
        for branch in range(n_branches(unet)):
            cut = skipped_modules(unet, branch)
            computed[branch] = [b.path for b in blocks if not any(b.path.startswith(c + ".") for c in cut)]
        return cls(groups, computed)

    def to_dict(self) -> dict[str, Any]:
        return {"groups": dict(self.groups), "computed": {str(b): list(v) for b, v in self.computed.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlanLayout":
        return cls(dict(data["groups"]), {int(b): list(v) for b, v in data["computed"].items()})


def plan_features(schedule: Schedule | None, unet: torch.nn.Module | PlanLayout, n_calls: int | None,
                  scheduler_name: str) -> dict[str, float]:
    """The counts that explain one generation's latency on `scheduler_name` (a short or class name).

    `schedule` None: full compute for `n_calls` calls; otherwise `n_calls` (if given) must match it.
    """
    layout = unet if isinstance(unet, PlanLayout) else PlanLayout.of(unet)
    if schedule is None:
        if not n_calls:
            raise CostModelError("full compute (schedule None) needs n_calls")
        schedule = Schedule.full(n_calls)
    elif n_calls is not None and n_calls != schedule.n_calls:
        raise CostModelError(f"the schedule plans {schedule.n_calls} calls, not {n_calls}")
    out: dict[str, float] = {CONST: 1.0, f"calls:{class_name(scheduler_name)}": float(schedule.n_calls)}
    prune: PruneConfig = schedule.prune
    for t, action in enumerate(schedule.cache):
        if action == REUSE:
            blocks: list[str] = []
        elif action == FULL:
            _add(out, FULL_F, 1)
            blocks = list(layout.groups)
        else:
            if action not in layout.computed:
                raise CostModelError(f"branch {action} does not exist in this U-Net")
            _add(out, f"shallow:{action}", 1)
            blocks = layout.computed[action]
        for block in blocks:
            r = prune.ratio(block, t) if prune.active else 0.0
            if r > 0:
                _add(out, f"pruned:{layout.groups[block]}", 1)
                _add(out, f"prune:{layout.groups[block]}", r)
    if schedule.forecast:
        out[FORECAST_F] = float(len(schedule.forecast))
    return out


def _add(counts: dict[str, float], key: str, value: float) -> None:
    counts[key] = counts.get(key, 0.0) + value


def _nonnegative(name: str) -> bool:
    """Every coefficient is a cost (>= 0) except the pruning saving per unit ratio."""
    return not name.startswith("prune:")


def fit(rows: Sequence[dict[str, float]], times: Sequence[float], names: Sequence[str] | None = None,
        relative: bool = True) -> dict[str, float]:
    """Least-squares coefficients (seconds) with costs clamped at 0 (active set: the most negative is
    fixed at 0 and the rest refitted). `relative`: rows weighted by 1/time (fits relative error)."""
    names = list(names) if names is not None else sorted({k for r in rows for k in r})
    if not rows or not names:
        raise CostModelError("cannot fit a cost model without timed schedules and features")
    x = np.array([[r.get(n, 0.0) for n in names] for r in rows], dtype=np.float64)
    y = np.asarray(times, dtype=np.float64)
    if x.shape[0] != y.shape[0] or not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise CostModelError("times must be finite, positive and one per feature row")
    w = 1 / y if relative else np.ones_like(y)
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    xs = x / scale * w[:, None]
    rank = np.linalg.matrix_rank(xs)
    if rank < len(names) or np.linalg.cond(xs) > 1e8:
        free = [n for j, n in enumerate(names) if np.linalg.matrix_rank(np.delete(xs, j, axis=1)) == rank]
        why = f"not separable: {', '.join(free)}" if free else f"condition number {np.linalg.cond(xs):.3g}"
        raise CostModelError(f"the calibration design does not identify every coefficient ({len(rows)} timed "
                             f"schedules, rank {rank} of {len(names)} features); {why}")
    active = list(range(len(names)))
    coef = np.zeros(len(names))
    while True:
        sol = np.linalg.lstsq(xs[:, active], y * w, rcond=None)[0]
        coef[:] = 0
        coef[active] = sol / scale[active]
        negative = [j for j in active if coef[j] < 0 and _nonnegative(names[j])]
        if not negative:
            return {n: float(c) for n, c in zip(names, coef)}
        active.remove(min(negative, key=lambda j: coef[j] * scale[j]))


@dataclass
class CostModel:
    """Calibrated per-feature costs (seconds) for one pipeline setting on one device."""

    coefficients: dict[str, float]
    layout: PlanLayout
    schedulers: list[str]  # class names; the first is the pipeline's own (schedules that name none)
    device: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.coefficients)

    def features_of(self, schedule: Schedule | None, n_calls: int | None = None,
                    scheduler: str | None = None) -> dict[str, float]:
        """`plan_features` with the scheduler of the schedule's trajectory (else the pipeline's own)."""
        name = scheduler or (schedule.trajectory.scheduler if schedule is not None and schedule.trajectory else None)
        name = class_name(name) if name else self.schedulers[0]
        if name not in self.schedulers:
            raise CostModelError(f"the cost model is not calibrated for {name} (only {', '.join(self.schedulers)})")
        return plan_features(schedule, self.layout, n_calls, name)

    def predict(self, schedule: Schedule | None, n_calls: int | None = None, scheduler: str | None = None) -> float:
        """Predicted seconds of one generation (None: full compute with `n_calls` calls)."""
        feats = self.features_of(schedule, n_calls, scheduler)
        unknown = [k for k, v in feats.items() if v and k not in self.coefficients]
        if unknown:
            raise CostModelError(f"the cost model was not calibrated for {', '.join(unknown)}")
        return float(sum(self.coefficients[k] * v for k, v in feats.items() if k in self.coefficients))

    def scaled(self, factor: float) -> "CostModel":
        """Every cost times `factor`: re-anchors absolute seconds (e.g. to a baseline measured now, as
        `measured / predict(baseline)`) when the machine's load has changed; speedups are unchanged."""
        return CostModel({k: v * factor for k, v in self.coefficients.items()}, self.layout, list(self.schedulers),
                         self.device, {**self.stats, "scale": self.stats.get("scale", 1.0) * factor})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for an Optuna study's user attrs)."""
        return {"coefficients": dict(self.coefficients), "layout": self.layout.to_dict(),
                "schedulers": list(self.schedulers), "device": self.device, "stats": dict(self.stats)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CostModel":
        return cls(dict(data["coefficients"]), PlanLayout.from_dict(data["layout"]), list(data["schedulers"]),
                   data.get("device", ""), dict(data.get("stats", {})))


def fit_stats(measured: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """R² (seconds), max and median relative error |pred - meas| / meas, number of points."""
    m, p = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    ss_tot = float(((m - m.mean()) ** 2).sum())
    rel = np.abs(p - m) / m
    return {"r2": 1 - float(((p - m) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan,
            "max_rel_err": float(rel.max()), "median_rel_err": float(np.median(rel)), "n_points": int(m.size)}


def design(unet: torch.nn.Module, n_calls_of: Callable[[str, int], int], schedulers: Sequence[str],
           steps: Sequence[int], branches: Sequence[int] = (0, 1, 2), ratios: Sequence[float] = (0.25, 0.5, 0.75),
           group_by: str = "level", interval: int = 4) -> list[Schedule]:
    """Calibration schedules that identify every coefficient: full compute on every scheduler at every
    step count; on the first scheduler at the most steps, a full call every `interval` and every
    2·`interval` calls with reuse (with and without forecasting) or shallow `b` (each branch) between; at
    the fewest steps (a relative saving needs few calls), full compute pruned at each ratio on each
    group, and at the middle ratio on all groups at once."""
    if len(set(steps)) < 2 or not schedulers:
        raise CostModelError("calibration needs at least one scheduler and two distinct step counts")
    out = [Schedule([FULL] * n_calls_of(s, k), meta={"name": f"full-{s}-{k}"}, trajectory=Trajectory(s, k))
           for s in schedulers for k in steps]
    s0, k0 = schedulers[0], max(steps)
    n, traj = n_calls_of(s0, k0), Trajectory(s0, k0)

    def every(k: int, action: Any, name: str) -> Schedule:
        return Schedule([FULL if t % k == 0 else action for t in range(n)], meta={"name": name}, trajectory=traj)

    out += [every(k, REUSE, f"reuse-N{k}") for k in (interval, 2 * interval)]
    out += [every(k, REUSE, f"forecast2-N{k}").with_forecast(2) for k in (interval, 2 * interval)]
    out += [every(k, b, f"shallow{b}-N{k}") for b in branches for k in (interval, 2 * interval)]
    layout = PlanLayout.of(unet, group_by)
    m, lo = n_calls_of(s0, min(steps)), Trajectory(s0, min(steps))
    for g in sorted(set(layout.groups.values())):
        blocks = [b for b, gb in layout.groups.items() if gb == g]
        out += [Schedule([FULL] * m, PruneConfig({b: r for b in blocks}), {"name": f"prune-{g}-r{r:g}"}, trajectory=lo)
                for r in ratios]
    r = ratios[len(ratios) // 2]  # every group at once: checks that group costs add up
    if layout.groups:
        everything = PruneConfig({b: r for b in layout.groups})
        out.append(Schedule([FULL] * m, everything, {"name": f"prune-all-r{r:g}"}, trajectory=lo))
    return out


def time_interleaved(time_schedule: Callable[[Schedule], float], schedules: Sequence[Schedule], repeats: int = 5,
                     warmup: int = 1, shuffle: bool = True) -> list[float]:
    """Median seconds per schedule over `repeats` rounds that time each schedule once, after `warmup`
    untimed rounds; `shuffle`: each round in its own seeded order, so drift within a round is spread."""
    times: list[list[float]] = [[] for _ in schedules]
    rng = random.Random(0)
    for r in range(warmup + repeats):
        order = list(range(len(schedules)))
        if shuffle and r >= warmup:
            rng.shuffle(order)
        for i in order:
            t = time_schedule(schedules[i])
            if r >= warmup:
                times[i].append(t)
    return [statistics.median(t) for t in times]


def calibrate(time_schedule: Callable[[Schedule], float], unet: torch.nn.Module,
              n_calls_of: Callable[[str, int], int], schedulers: Sequence[str], steps: Sequence[int], *,
              branches: Sequence[int] = (0, 1, 2), ratios: Sequence[float] = (0.25, 0.5, 0.75), group_by: str = "level",
              repeats: int = 5, warmup: int = 1, device: str = "") -> CostModel:
    """Time `design(...)` interleaved and fit a `CostModel`.

    `time_schedule(schedule)`: seconds of one generation with `schedule` applied on the scheduler and
    step count its meta names (e.g. `Evaluator.latency` with warm-up 0 and 1 repeat; warm-up and
    interleaving happen here). `n_calls_of(scheduler, steps)`: U-Net calls of that trajectory.
    `schedulers[0]` must be the pipeline's own (it prices schedules that name no scheduler).
    """
    names = [class_name(s) for s in schedulers]
    schedules = design(unet, n_calls_of, names, steps, branches, ratios, group_by)
    start = time.perf_counter()
    times = time_interleaved(time_schedule, schedules, repeats, warmup)
    model = fit_model(schedules, times, PlanLayout.of(unet, group_by), names, device)
    model.stats.update(calibration_s=time.perf_counter() - start, repeats=repeats)
    return model


def fit_model(schedules: Sequence[Schedule], times: Sequence[float], layout: PlanLayout, schedulers: Sequence[str],
              device: str = "") -> CostModel:
    """Fit a `CostModel` to measured seconds of `schedules` (each on its trajectory's scheduler, else the first)."""
    names = [class_name(s) for s in schedulers]
    rows = [plan_features(s, layout, None, s.trajectory.scheduler if s.trajectory else names[0]) for s in schedules]
    model = CostModel(fit(rows, times), layout, names, device)
    predicted = [model.predict(s) for s in schedules]
    model.stats = {**fit_stats(times, predicted),
                   "points": [{"name": s.meta.get("name", ""), "measured_s": m, "predicted_s": p}
                              for s, m, p in zip(schedules, times, predicted)]}
    return model
