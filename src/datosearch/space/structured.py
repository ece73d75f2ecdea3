"""The structured encoding (default): how many full calls, where, and what the calls between do.

Genes:
- ``traj`` (only with several base trajectories): which scheduler and step count to run;
- ``full``: the number of full calls; ``warp`` and ``center``: their placement on normalized time
  (`space.placement.full_positions`: uniform, denser early, denser late, DeepCache's quadratic center);
  ``last`` (with `EncodingConfig.last_gene`): the full calls span the trajectory to its last call;
- ``tstart`` and ``tpow`` (with `EncodingConfig.timestep_genes`): where the steps of a trajectory whose
  scheduler takes explicit timesteps (DPM-Solver++, Euler) sit: `space.trajectory.warp_timesteps`,
  passed to the pipeline as `timesteps=` (DESIGN §11: bent toward low noise they beat default spacing
  by 3-7 dB at 5-10 steps on the embedded model);
- ``dpm.final_sigmas_type``, ``unipc.disable_corrector``, ... (with `EncodingConfig.option_genes`): the
  listed solvers' config switches of `space.trajectory.SWITCHES` (first choice: diffusers' default),
  written into the trajectory's config where they differ from it;
- per phase p (early / middle / late thirds of the trajectory): ``act{p}`` the action of its
  non-full calls (shallow branch or reuse), ``ord{p}`` the forecast order (0 = plain reuse of the
  cache) and ``damp{p}`` the forecast damping;
- the shared pruning genes.

Anchors outside the family are enqueued with their nearest genes and their exact plan (see
`search.runner`); NSGA-II varies the genes with `search.variation.StructuredVariation`
(`search.samplers` hands it to the sampler).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from .encoding import Encoding, action_of, gene_of, nearest_step
from .schedule import FULL, REUSE, Action, Forecast, Schedule
from .placement import full_positions, phase_of
from .trajectory import (SWITCHES, WARP_POWER, WARP_START, Trajectory, switch_choices, switch_gene, switched, takes,
                         warp_timesteps)

POWER_RANGE = (0.3, 3.0)
# The first generation: placements and actions spread across the speed range.
INITIAL_WARPS = ((0.6, 0.0), (1.0, 0.0), (1.6, 0.0), (1.4, 0.3))
# First-generation forecasting members on the other solvers: full-call counts (about √2 apart, the
# fewer-steps anchors' range), this many of the solver's calls per full call, full calls denser late
# (warp power < 1), forecasts (order, damping) alternating along the counts, offset per solver.
# Measured on the embedded model (held-out, bench/results/forecast-grid.md): ~2 calls per full call,
# warp 0.6-0.8 and no damping do best.
FORECAST_FULLS = (4, 5, 7, 10, 14, 20)
CALLS_PER_FULL = 2.2
FORECAST_WARP = 0.7
INITIAL_FORECASTS = ((2, 1.0), (1, 1.0))
# With the `last` gene the forecasting members end on a full call, at about LAST_CALLS_PER_FULL solver
# steps per full call, placed uniformly (LAST_WARP), forecasts LAST_FORECAST. On 100 calibration-side
# images (seeds 0..99, bench/results/forecast-last.md) forecasting that leaves the last call to a
# forecast never beat UniPC 5 (at best -0.7 dB), while ending on a full call gave +2.9 dB at UniPC 5's
# FID-proxy (8 steps, full calls 0 2 4 6 7) and +3.4 / +3.5 dB at 7 full calls (12 / 13 steps); order 2
# kept the FID-proxy against real digits 4-6 % lower than order 1 at 5 and 7 full calls.
LAST_CALLS_PER_FULL = 1.7
LAST_WARP = 1.0
LAST_FORECAST = (2, 1.0)
# First-generation timestep genes: DESIGN §11's best (start, power) on 40 calibration-side images (t0 900 of 999
# at 7 steps, power 1.7); the search moves them.
INITIAL_TIMESTEPS = (0.9, 1.7)


class StructuredEncoding(Encoding):
    """Full-call count and placement, per-phase action / forecast, optional base trajectory."""

    name = "structured"

    # ---------------------------------------------------------------- trajectories
    @property
    def trajectories(self) -> list[dict[str, Any]]:
        """The base trajectories to choose from; the first is the study's own."""
        return self.cfg.trajectories or [{"scheduler": None, "steps": None, "calls": self.cfg.n_calls}]

    def _traj_names(self) -> list[str]:
        return [f"{t['scheduler']}:{t['steps']}" for t in self.trajectories]

    def trajectory_of(self, params: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """(index, entry) of the listed trajectory that `params` run on (the study's own without a ``traj`` gene)."""
        i = self._traj_names().index(params["traj"]) if "traj" in params else 0
        return i, self.trajectories[i]

    @property
    def max_calls(self) -> int:
        return max(t["calls"] for t in self.trajectories)

    # ---------------------------------------------------------------- genes
    def plan_distributions(self) -> dict[str, BaseDistribution]:
        cfg = self.cfg
        dists: dict[str, BaseDistribution] = {}
        if len(self.trajectories) > 1:
            dists["traj"] = CategoricalDistribution(self._traj_names())
        dists["full"] = IntDistribution(max(1, cfg.min_full), self.max_calls)
        dists["warp"] = FloatDistribution(*POWER_RANGE, log=True)
        dists["center"] = FloatDistribution(0.0, 1.0)
        if cfg.last_gene:
            dists["last"] = CategoricalDistribution([False, True])
        if self.timestep_genes:
            dists["tstart"] = FloatDistribution(*WARP_START)
            dists["tpow"] = FloatDistribution(*WARP_POWER)
        for gene, (_, _, values) in self.switch_genes().items():
            dists[gene] = CategoricalDistribution(list(switch_choices(values)))
        for p in range(cfg.phases):
            dists[f"act{p}"] = CategoricalDistribution(cfg.actions)
            dists[f"ord{p}"] = CategoricalDistribution(cfg.orders)
            dists[f"damp{p}"] = CategoricalDistribution(cfg.damping_steps)
        return dists

    def decode_plan(self, params: Mapping[str, Any]) -> Schedule:
        cfg = self.cfg
        index, traj = self.trajectory_of(params)
        n = traj["calls"]
        full = set(full_positions(n, int(params["full"]), float(params["warp"]), float(params["center"]),
                                  bool(params.get("last", False))))
        plan: list[Action] = []
        forecast: dict[int, Forecast] = {}
        for t in range(n):
            if t in full:
                plan.append(FULL)
                continue
            p = phase_of(t, n, cfg.phases)
            plan.append(action_of(params[f"act{p}"]))
            if int(params[f"ord{p}"]) > 0:
                forecast[t] = Forecast(int(params[f"ord{p}"]), float(params[f"damp{p}"]))
        return Schedule(plan, forecast=forecast, trajectory=self._base(traj, params) if index > 0 else None)

    def warped(self, params: Mapping[str, Any]) -> bool:
        """Whether the timestep genes of `params` move its trajectory's steps (not the study's own trajectory,
        whose timesteps stay the pipeline's; a listed one whose scheduler takes explicit timesteps)."""
        index, traj = self.trajectory_of(params)
        return index > 0 and "tstart" in params and _warpable(traj)

    @property
    def timestep_genes(self) -> bool:
        """Whether the genome has ``tstart`` / ``tpow`` (some trajectory's scheduler takes explicit timesteps)."""
        return self.cfg.timestep_genes and any(_warpable(t) for t in self.trajectories)

    def switch_genes(self) -> dict[str, tuple[str, str, tuple[Any, ...]]]:
        """gene -> (scheduler, option, config values): the config switches (`SWITCHES`) of the listed solvers, with
        `EncodingConfig.option_genes` (none for the study's own trajectory, which keeps the pipeline's)."""
        if not self.cfg.option_genes:
            return {}
        solvers = dict.fromkeys(t["scheduler"] for t in self.trajectories[1:] if t["scheduler"] is not None)
        return {switch_gene(s, o): (s, o, c) for s in solvers for o, c in SWITCHES.get(s, {}).items()}

    def _switch_values(self, trajectory: Trajectory | None) -> dict[str, Any]:
        """The switch genes that express `trajectory`'s config (the first choice where it sets none)."""
        out = {}
        for gene, (solver, option, values) in self.switch_genes().items():
            value = trajectory.config.get(option) if trajectory is not None and trajectory.scheduler == solver else None
            out[gene] = switch_choices(values)[values.index(value) if value in values else 0]
        return out

    def _unswitched(self, trajectory: Trajectory) -> Trajectory:
        """`trajectory` without the config options its switch genes express."""
        values = {o: c for s, o, c in self.switch_genes().values() if s == trajectory.scheduler}
        return replace(trajectory, config={k: v for k, v in trajectory.config.items()
                                           if k not in values or v not in values[k]})

    def _base(self, traj: dict[str, Any], params: Mapping[str, Any]) -> Trajectory:
        """The trajectory of a listed entry: its config switched and its timesteps warped by the genes (where its
        scheduler takes them)."""
        base = Trajectory.from_dict(traj)
        options = switched(base.scheduler, {o: params[g] for g, (solver, o, _) in self.switch_genes().items()
                                            if solver == base.scheduler and g in params})
        if options:
            base = replace(base, config={**base.config, **options})
        if "tstart" not in params or not _warpable(traj):
            return base
        return replace(base, timesteps=warp_timesteps(base.steps, float(params["tstart"]), float(params["tpow"])))

    def encode_plan(self, schedule: Schedule) -> dict[str, Any] | None:
        """Exact genes: the genes the schedule names (`meta["genes"]`, as `studies.refine`'s members do) or the
        nearest genes, if they decode to the same plan, forecasts and trajectory."""
        named = schedule.meta.get("genes")
        if named is not None and self._decodes_to(named, schedule):
            genes = self.plan_distributions()
            return {**self._switch_values(schedule.trajectory), **{k: v for k, v in named.items() if k in genes}}
        params = self.nearest_plan(schedule)
        if params is None:
            return None
        lasts = [{"last": params["last"]}, {"last": not params["last"]}] if "last" in params else [{}]
        grid = itertools.chain([(params["warp"], params["center"])], _placement_grid())
        for (warp, center), last in itertools.product(grid, lasts):
            trial = {**params, "warp": warp, "center": center, **last}
            if self._decodes_to(trial, schedule):
                return trial
        return None

    def _decodes_to(self, params: Mapping[str, Any], schedule: Schedule) -> bool:
        """Whether `params` (plan genes) decode to `schedule`'s plan, forecasts and trajectory."""
        try:
            decoded = self.decode_plan(params)
        except (KeyError, ValueError):  # genes of another encoding
            return False
        return (decoded.cache, decoded.forecast, decoded.trajectory) == \
            (schedule.cache, schedule.forecast, schedule.trajectory)

    def nearest_plan(self, schedule: Schedule) -> dict[str, Any] | None:
        """Genes of the family member closest to `schedule`: same trajectory (if offered), full-call
        count, uniform placement, each phase's most common action and forecast. None: no such trajectory."""
        cfg = self.cfg
        names = self._traj_names()
        if schedule.trajectory is None:
            index = 0
        else:  # the listed trajectory of the same scheduler and steps (its timesteps: the nearest genes)
            unswitched = self._unswitched(schedule.trajectory)
            matches = [i for i, t in enumerate(self.trajectories) if _same_base(t, unswitched)]
            if not matches:
                return None
            index = matches[0]
        n = schedule.n_calls
        if n != self.trajectories[index]["calls"]:
            return None
        params: dict[str, Any] = {"full": max(1, min(schedule.counts()["full"], self.max_calls)), "warp": 1.0,
                                  "center": 0.0}
        if len(names) > 1:
            params["traj"] = names[index]
        if cfg.last_gene:
            params["last"] = schedule.cache[-1] == FULL
        if self.timestep_genes:
            timesteps = schedule.trajectory.timesteps if schedule.trajectory is not None else None
            params["tstart"], params["tpow"] = _fit_warp(timesteps) if timesteps else INITIAL_TIMESTEPS
        params.update(self._switch_values(schedule.trajectory))
        for p in range(cfg.phases):
            calls = [t for t in range(n) if schedule.cache[t] != FULL and phase_of(t, n, cfg.phases) == p]
            genes = Counter(gene_of(schedule.cache[t]) for t in calls)
            act = max(genes, key=genes.get) if genes else cfg.actions[0]
            fcs = Counter(schedule.forecast.get(t) for t in calls)
            fc = max(fcs, key=fcs.get) if fcs else None
            params[f"act{p}"] = act if act in cfg.actions else cfg.actions[0]
            params[f"ord{p}"] = fc.order if fc is not None and fc.order in cfg.orders else 0
            damping = nearest_step(fc.damping, cfg.damping_steps) if fc is not None else None
            params[f"damp{p}"] = damping if damping is not None else cfg.damping_steps[-1]
        return params

    def initial(self) -> list[dict[str, Any]]:
        """The first generation, spread over the speed range (no random genes).

        On the study's own trajectory: full-call counts from dense to sparse (about √2 apart), with
        placements, actions and forecast orders taken in turn. With several trajectories, also
        forecasting members at `FORECAST_FULLS` full calls on each other solver, on the step count
        nearest `CALLS_PER_FULL` calls per full call: every non-full call a forecast reuse, so the
        member costs about as much as that solver at that many steps (what a user runs instead).
        """
        cfg, trajs = self.cfg, self.trajectories
        own_calls = trajs[0]["calls"]
        ks = sorted({max(cfg.min_full, 2, round(own_calls / 2 ** (j / 2))) for j in range(2, 10)}, reverse=True)
        out = []
        for j, k in enumerate(ks):
            warp, center = INITIAL_WARPS[j % len(INITIAL_WARPS)]
            genes: dict[str, Any] = {"full": min(k, own_calls), "warp": warp, "center": center}
            for p in range(cfg.phases):
                genes[f"act{p}"] = cfg.actions[(j + p) % len(cfg.actions)] if j % 2 else cfg.actions[-1]
                genes[f"ord{p}"] = cfg.orders[-1 - (j // 2) % len(cfg.orders)]
                genes[f"damp{p}"] = cfg.damping_steps[-1 - (j // 3) % 2]
            out.append(self._member(0, genes))
        if len(trajs) > 1 and REUSE in cfg.actions:
            out += self._forecasting_members()
        return out

    def _forecasting_members(self) -> list[dict[str, Any]]:
        """Forecast-reuse members on the other solvers (see `initial`). Without the `last` gene the
        forecast settings of `INITIAL_FORECASTS` alternate along the counts, offset per solver; with it
        the members end on a full call (`LAST_CALLS_PER_FULL`, `LAST_WARP`, `LAST_FORECAST`)."""
        cfg, trajs = self.cfg, self.trajectories
        own = trajs[0]["scheduler"]
        solvers = list(dict.fromkeys(t["scheduler"] for t in trajs[1:] if t["scheduler"] != own))
        per_full = LAST_CALLS_PER_FULL if cfg.last_gene else CALLS_PER_FULL
        out = []
        for s, solver in enumerate(solvers):
            for m, k in enumerate(FORECAST_FULLS):
                turn = INITIAL_FORECASTS[(m + s) % len(INITIAL_FORECASTS)]
                order, damping = LAST_FORECAST if cfg.last_gene else turn
                order = max(o for o in cfg.orders if o <= order)
                damping = min(cfg.damping_steps, key=lambda d: abs(d - damping))
                i = min((i for i, t in enumerate(trajs) if t["scheduler"] == solver and t["calls"] > k),
                        key=lambda i: abs(trajs[i]["calls"] - per_full * k), default=None)
                if i is None or k >= trajs[0]["calls"] / 2:
                    continue
                genes: dict[str, Any] = {"full": k, "warp": FORECAST_WARP, "center": 0.0}
                if cfg.last_gene:
                    genes.update(last=True, warp=LAST_WARP)
                genes.update(uniform_phases(cfg.phases, REUSE, order, damping))
                out.append(self._member(i, genes))
        return out

    def _member(self, traj: int, genes: dict[str, Any]) -> dict[str, Any]:
        """A first-generation genome: `genes` on trajectory `traj`, no pruning."""
        params = dict(genes)
        if self.cfg.last_gene:
            params.setdefault("last", False)
        if self.timestep_genes:
            params.setdefault("tstart", INITIAL_TIMESTEPS[0])
            params.setdefault("tpow", INITIAL_TIMESTEPS[1])
        for gene, value in self._switch_values(None).items():
            params.setdefault(gene, value)
        if len(self.trajectories) > 1:
            params["traj"] = self._traj_names()[traj]
        params.update({f"r:{b}": 0.0 for b in self.cfg.blocks})
        return params


def uniform_phases(phases: int, action: str, order: int, damping: float) -> dict[str, Any]:
    """Phase genes giving every one of `phases` phases the same action gene, forecast order and damping."""
    return {f"{gene}{p}": value for p in range(phases)
            for gene, value in (("act", action), ("ord", order), ("damp", damping))}


def _warpable(traj: dict[str, Any]) -> bool:
    """Whether a listed trajectory's scheduler takes explicit timesteps (and so the timestep genes)."""
    return traj["scheduler"] is not None and takes(traj["scheduler"], "timesteps")


def _same_base(traj: dict[str, Any], trajectory: Trajectory) -> bool:
    """Whether `trajectory` runs on listed entry `traj` (with any timesteps where the genes place them)."""
    if traj["scheduler"] is None:
        return False
    return Trajectory.from_dict(traj) == (replace(trajectory, timesteps=None) if _warpable(traj) else trajectory)


def _fit_warp(timesteps: tuple[int, ...]) -> tuple[float, float]:
    """The (tstart, tpow) whose warp is nearest `timesteps` (least squares over a grid)."""
    grid = [(WARP_START[0] + i * (WARP_START[1] - WARP_START[0]) / 30, WARP_POWER[0] + j * (WARP_POWER[1] - WARP_POWER[0]) / 40)
            for i in range(31) for j in range(41)]
    return min(grid, key=lambda g: sum((a - b) ** 2 for a, b in zip(warp_timesteps(len(timesteps), *g), timesteps)))


def _placement_grid() -> list[tuple[float, float]]:
    """Placements tried when encoding a schedule exactly (powers × centers)."""
    powers = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.25, 1.4, 1.6, 2.0, 2.5]
    return [(p, c) for p in powers for c in (0.0, 0.1, 0.2, 0.3, 0.5)]
