"""Refined forecasting members: cached plans on searched timesteps, found by Optuna's GP sampler before the study.

Tuned fewer steps (`studies.tuning`) are hard to beat at equal U-Net calls by hand-placed plans. For each
count K of full calls in `CALLS` (below the study's own calls), a search on the first `IMAGES` calibration
images against the study's reference (never held-out seeds) refines one plan: DPM-Solver++ 2M at 2K - 2
steps, timesteps `warp_timesteps(n, start, power)`, K full calls alternating with order-2 forecast reuse,
the last two calls full (`start`; `full_positions` at warp 1, center 0, as the structured encoding places
them). It scores the start with every combination of the solver's config switches
(`space.trajectory.SWITCHES`: final sigma, solver type) and keeps the best, then Optuna's `GPSampler` moves
where the steps sit (`placement`: the timesteps' start and bend) for the rest of its `TRIALS` evaluations.
Reuse runs no U-Net layer, so a member costs about K calls.
The best plan of each K is enqueued as a first-generation member (operator "refined") by its structured
genes (`genes`; the study lists DPM-Solver++ at every step count of the family), so that evolution and its
local refinement (`search.local`) vary the plan itself, where the full calls sit included.

Why this search (the embedded model, NSGA-II seeds 0, 1, 2, AMD EPYC 2 cores, 2026-12-07; 16 calibration
images searched, the other 8 of the study's 24 as a check): refine@4 also moved where the full calls sit
(warp, center); its best plans all kept the alternation (9 of 9: `bench/results/refine-compare-timesteps.json`),
so those two genes only spread GP's evaluations over a larger space. It reached
37.96 / 37.86 / 38.04 dB at 5 full calls, 44.71 / 44.19 / 44.86 at 7 and 50.70 / 49.14 / 50.51 at 10 (the
other 8 images: 39.24 / 39.12 / 39.86, 46.01 / 45.74 / 46.19, 51.43 / 49.78 / 51.96). With the alternation
fixed, GP over the two timestep genes reached 38.10 / 37.97 / 38.05, 44.87 / 44.78 / 44.88 and 51.03 /
50.54 / 50.91 (the other 8: 39.91 / 40.11 / 39.45, 46.17 / 46.01 / 46.13, 52.67 / 52.00 / 51.74). Starting
7 and 10 calls from the previous count's best four genes instead (enqueued first) scored 36.8-48.9 dB on
that first plan and 44.19-44.46 and 49.73-50.58 at best. Before refine@4, TPE over the family's eight genes
(step count, last call, forecast order, damping too) settled at seed 1 on 6 steps without a full last
call at 5 calls, 1.6 dB below the other seeds. Confirmed on 200 held-out images of seeds 444000+ that no
choice looked at (`bench/refine_compare.py`): refine@4 → refine@5 at 5 / 7 / 10 calls, mean +0.46 / -0.06 /
+1.41 dB, worst seed +0.44 / +0.11 / +1.88 dB.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch
from optuna.distributions import FloatDistribution

from .._quiet import optuna_warnings_only
from ..objectives import paired_metrics
from ..search.evaluator import Evaluator
from ..space.placement import full_positions
from ..space.schedule import FULL, REUSE, Forecast, Schedule
from ..space.encoding import PHASES, gene_of
from ..space.structured import uniform_phases
from ..space.trajectory import (LABELS, SWITCHES, WARP_POWER, WARP_START, Trajectory, switch_choices, switch_gene, switched,
                                takes, warp_timesteps)
from .build import calibration
from .tuning import cached_json, calibration_key

SOLVER = "DPMSolverMultistepScheduler"
CALLS = (5, 7, 10)
TRIALS = 40  # evaluations per count of full calls (the start's switch combinations included); the study refines further (`search.local`)
IMAGES = 16  # the first calibration images the search scores on
METHOD = "refine@5"  # @2: damping on the encoding's steps, genes in the members' meta; @3: config switches tried;
# @4: the alternating plan's placement by GP, switches chosen on the start; @5: the timesteps alone by GP


def cached_plan(params: dict[str, Any], k: int, top: int, solver: str = SOLVER, phases: int = PHASES) -> Schedule:
    """`k` full calls on `solver` at k + `extra` warped steps, forecast reuse between; its genes in `meta`
    (`genes`, for a structured encoding of `phases` phases)."""
    n = k + int(params["extra"])
    traj = Trajectory(solver, n, switched(solver, params), timesteps=warp_timesteps(n, params["tstart"], params["tpow"], top))
    full = set(full_positions(n, k, params["power"], params["center"], params["last"]))
    order = int(params["order"])
    forecast = {c: Forecast(order, float(params["damping"])) for c in range(n) if c not in full}
    label = f"{LABELS.get(solver, solver)} {n} (searched timesteps), {k} full, forecast {order}"
    return Schedule([FULL if c in full else REUSE for c in range(n)], forecast=forecast, trajectory=traj,
                    meta={"name": f"refined-{k}", "label": label, "genes": genes(params, k, solver, phases)})


def genes(params: dict[str, Any], k: int, solver: str, phases: int) -> dict[str, Any]:
    """The structured encoding's genes of `cached_plan(params, k)`: the study enqueues the member by them
    (`StructuredEncoding.encode_plan` checks that they decode to its plan), so evolution varies the plan
    itself. The study lists `solver` at every step count of the family (`studies.build.DENSE_STEPS`)."""
    out = {"traj": f"{solver}:{k + int(params['extra'])}", "full": k, "warp": float(params["power"]),
           "center": float(params["center"]), "last": bool(params["last"]), "tstart": float(params["tstart"]),
           "tpow": float(params["tpow"]),
           **{switch_gene(solver, o): params.get(o, switch_choices(values)[0]) for o, values in SWITCHES.get(solver, {}).items()}}
    return {**out, **uniform_phases(phases, gene_of(REUSE), int(params["order"]), float(params["damping"]))}


PLACED = {"tstart": 0.94, "tpow": 1.5, "power": 1.0, "center": 0.0}  # the start's timesteps; its full calls alternate
FAMILY = {"last": True, "order": 2, "damping": 1.0}  # what every plan of the search keeps


def start(k: int) -> dict[str, Any]:
    """The hand-placed plan the search starts from: full calls alternating with order-2 forecasts over
    2k - 2 steps (k + 1 for k ≤ 3), the last two calls full, timesteps `warp_timesteps(n, 0.94, 1.5)`."""
    return {"extra": max(1, k - 2), **FAMILY, **PLACED}


def placement() -> dict[str, FloatDistribution]:
    """What the GP search moves: where the steps sit (the timesteps' start and bend); the full calls keep
    `start`'s alternation."""
    return {"tstart": FloatDistribution(*WARP_START), "tpow": FloatDistribution(*WARP_POWER)}


def search(ev: Evaluator, reference: torch.Tensor, k: int, trials: int = TRIALS, seed: int = 0,
           solver: str = SOLVER, phases: int = PHASES) -> tuple[Schedule, float]:
    """`start(k)` with each of `switch_combinations` (the best kept, diffusers' defaults on a tie), then Optuna's
    GP sampler over its `placement` for the rest of `trials` evaluations, told the start's score first; by PSNR
    of `ev`'s images against `reference`: (best, its PSNR)."""
    top = ev.pipe.scheduler.config["num_train_timesteps"]

    def psnr(params: dict[str, Any]) -> float:
        return paired_metrics(ev.images(cached_plan(params, k, top, solver)), reference)["psnr"]

    combinations = switch_combinations(solver)
    scores = [psnr({**start(k), **c}) for c in combinations]
    j = max(range(len(scores)), key=lambda n: (scores[n], -n))
    best = base = {**start(k), **combinations[j]}
    value = scores[j]
    space = placement()
    with warnings.catch_warnings():  # GPSampler is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.GPSampler(seed=seed)
    with optuna_warnings_only():  # no log line per trial
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.add_trial(optuna.trial.create_trial(params={g: base[g] for g in space}, distributions=space, value=value))
        study.optimize(lambda trial: psnr({**base, **{g: trial.suggest_float(g, d.low, d.high, log=d.log)
                                                      for g, d in space.items()}}), n_trials=max(0, trials - len(combinations)))
    if study.best_value > value:
        best, value = {**base, **study.best_params}, study.best_value
    return cached_plan(best, k, top, solver, phases), value


def switch_combinations(solver: str) -> list[dict[str, Any]]:
    """Every combination of `solver`'s config switches as {option: choice}, diffusers' defaults first."""
    switches = SWITCHES.get(solver, {})
    return [dict(zip(switches, combo)) for combo in itertools.product(*(switch_choices(v) for v in switches.values()))]


def refined_members(pipe: Any, config: Any, reference: torch.Tensor, cache_dir: Any = None,
                    calls: Sequence[int] = CALLS, trials: int = TRIALS, images: int = IMAGES,
                    log: Callable[[str], None] | None = None) -> list[Schedule]:
    """The best plan of the family (see the module) at each of `calls` full calls, chosen on the first
    `images` images of `calibration(config)` against `reference`; computed once per study (`cache_dir`)."""
    log = log or (lambda text: None)
    if not calls or not takes(SOLVER, "timesteps"):
        return []
    calib = calibration(config)
    images = max(1, min(images, len(calib.prompts)))
    key = calibration_key(config, images, steps=list(calls), scheduler=SOLVER, trials=trials, method=METHOD,
                          seed=config.sampler_seed or 0)  # GP is seeded with it
    path = None if cache_dir is None else Path(cache_dir) / f"refined-{key}.json"

    def search_all() -> dict[str, Any]:
        subset = replace(calib.part(0, images), batch_size=images)
        ev = Evaluator(pipe, subset, [], reference=reference[:images], fid=lambda _: 0.0,
                       measure_latency=lambda _: 0.0)
        members, started = [], time.perf_counter()
        for k in calls:
            best, psnr = search(ev, reference[:images], k, trials, config.sampler_seed or 0,
                                phases=config.encoding.get("phases", PHASES))
            log(f"refined member at {k} full calls: {best.meta['label']}, {psnr:.2f} dB on {images} calibration "
                f"images")
            members.append(best)
        log(f"refined members: {len(members)} found with {trials * len(calls)} evaluations, "
            f"{time.perf_counter() - started:.0f} s")
        return {"format": f"datosearch/{METHOD}", "members": [m.to_dict() for m in members]}

    return cached_json(path, "refined members", search_all,
                       lambda data: [Schedule.from_dict(m) for m in data["members"]], log)
