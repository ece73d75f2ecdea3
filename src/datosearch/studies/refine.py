"""Refined forecasting members: cached plans on searched timesteps, found by Optuna's TPE before the study.

Tuned fewer steps (`studies.tuning`) are hard to beat at equal U-Net calls by hand-placed plans. For
each count K of full calls in `CALLS` (below the study's own calls), TPE (Optuna's own sampler, seeded)
searches one family on the first `IMAGES` calibration images against the study's reference (never
held-out seeds): DPM-Solver++ 2M at n = K+1..2K steps, timesteps `warp_timesteps(n, start, power)`, K
full calls placed by `full_positions(power, center, last)` as the structured encoding places them, every
other call a forecast reuse (order, damping); then the best plan is tried with every combination of the
solver's config switches (`space.trajectory.SWITCHES`: final sigma, solver type) and the best kept (inside
TPE's 40 trials the two extra dimensions cost 1 dB at 7 full calls on the calibration images: 42.73
against 43.70 dB). Reuse runs no U-Net layer, so a member costs about K calls.
The best plan of each K is enqueued as a first-generation member (operator "refined") by its structured
genes (`genes`; the study lists DPM-Solver++ at every step count of the family), so that evolution and its
local refinement (`search.local`) vary the plan itself.
Results are cached as JSON under the study's directory, as the tuned anchors are.

Measured with the first version (continuous damping, 60 trials; the default study exported with `--heldout
200`, README "Refined members"): at 5, 7 and 10
full calls the refined members alternate full calls and order-2 forecasts over 8, 12 and 19 DPM-Solver++
steps and score 40.3, 45.9 and 52.7 dB against tuned DPM-Solver++'s 37.0, 43.6 and 48.7 dB at 1.04x,
1.02x and 1.00x its speed (FID-proxy +11.5 %, -2 %, -3 %).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch

from .._quiet import optuna_warnings_only
from ..objectives import paired_metrics
from ..search.evaluator import Evaluator
from ..space.placement import full_positions
from ..space.schedule import FULL, REUSE, Forecast, Schedule
from ..space.encoding import DAMPING_STEPS, PHASES, gene_of
from ..space.structured import POWER_RANGE, uniform_phases
from ..space.trajectory import (LABELS, SWITCHES, WARP_POWER, WARP_START, Trajectory, switch_choices, switch_gene, switched,
                                takes, warp_timesteps)
from .build import calibration
from .tuning import cached_json, calibration_key

SOLVER = "DPMSolverMultistepScheduler"
CALLS = (5, 7, 10)
TRIALS = 40  # TPE trials per count of full calls (the two `starts` included); the study refines further (`search.local`)
IMAGES = 16  # the first calibration images the search scores on
METHOD = "refine@3"  # @2: damping on the encoding's steps, genes in the members' meta; @3: config switches tried


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


def suggest(trial: optuna.Trial, k: int) -> dict[str, Any]:
    """The family's genes for `k` full calls (the solver's default config)."""
    return {"extra": trial.suggest_int("extra", 1, k), "tstart": trial.suggest_float("tstart", *WARP_START),
            "tpow": trial.suggest_float("tpow", *WARP_POWER),
            "power": trial.suggest_float("power", *POWER_RANGE, log=True),
            "center": trial.suggest_float("center", 0.0, 1.0), "last": trial.suggest_categorical("last", [True, False]),
            "order": trial.suggest_int("order", 1, 2), "damping": trial.suggest_categorical("damping", DAMPING_STEPS)}


def starts(k: int) -> list[dict[str, Any]]:
    """Where TPE starts (enqueued before its own draws), both ending on a full call with order-2 forecasts:
    one forecast call among k + 1 steps, and full calls alternating with forecasts over 2k - 2 steps. On 16
    calibration images of the embedded model, TPE alone (200 trials) never left k + 1 steps at 5 and 7 full
    calls, while the alternating plan was the best hand-placed one at 5, 7 and 10."""
    base = {"tstart": 0.94, "tpow": 1.5, "power": 1.0, "center": 0.0, "last": True, "order": 2, "damping": 1.0}
    return [dict(base, extra=1)] + ([dict(base, extra=k - 2)] if k > 3 else [])


def search(ev: Evaluator, reference: torch.Tensor, k: int, trials: int = TRIALS, seed: int = 0,
           solver: str = SOLVER, phases: int = PHASES) -> tuple[Schedule, float]:
    """TPE over the family at `k` full calls, then the best plan's `switch_combinations`, by PSNR of `ev`'s images
    against `reference`: (best, its PSNR)."""
    top = ev.pipe.scheduler.config["num_train_timesteps"]

    def psnr(params: dict[str, Any]) -> float:
        return paired_metrics(ev.images(cached_plan(params, k, top, solver)), reference)["psnr"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for start in starts(k):
        study.enqueue_trial(start)
    with optuna_warnings_only():  # no log line per trial
        study.optimize(lambda trial: psnr(suggest(trial, k)), n_trials=trials)
    best, value = study.best_params, study.best_value
    for combination in switch_combinations(solver)[1:]:  # the first (the defaults) is TPE's own
        params = {**study.best_params, **combination}
        if (score := psnr(params)) > value:
            best, value = params, score
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
    key = calibration_key(config, images, steps=list(calls), scheduler=SOLVER, trials=trials, method=METHOD)
    path = None if cache_dir is None else Path(cache_dir) / f"refined-{key}.json"

    def search_all() -> dict[str, Any]:
        subset = replace(calib, prompts=calib.prompts[:images], seeds=calib.seeds[:images], batch_size=images)
        ev = Evaluator(pipe, subset, [], reference=reference[:images], fid=lambda _: 0.0,
                       measure_latency=lambda _: 0.0)
        members, started = [], time.perf_counter()
        for k in calls:
            best, psnr = search(ev, reference[:images], k, trials, config.sampler_seed or 0,
                                phases=config.encoding.get("phases", PHASES))
            log(f"refined member at {k} full calls: {best.meta['label']}, {psnr:.2f} dB on {images} calibration "
                f"images")
            members.append(best)
        log(f"refined members: {len(members)} found with {trials * len(calls)} TPE trials, "
            f"{time.perf_counter() - started:.0f} s")
        return {"format": f"datosearch/{METHOD}", "members": [m.to_dict() for m in members]}

    return cached_json(path, "refined members", search_all,
                       lambda data: [Schedule.from_dict(m) for m in data["members"]], log)
