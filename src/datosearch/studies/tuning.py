"""Tuned-timestep anchors (issue 30): fewer steps at their best, for every front to be compared with.

For each solver and step count, chosen on the first `SEARCH_IMAGES` calibration images (never held-out
seeds) by mean PSNR against the study's reference:
- "config": the best of the config's own `OPTIONS` (spacing, Karras sigmas, final sigma type), kept only
  when it is not the config's own (the default fewer-steps anchor covers that);
- "tuned": explicit timesteps: the best of the default's own and a (start, power) grid of `warp_timesteps`,
  refined by coordinate descent on each timestep (`PASSES`), strictly decreasing inside 1..T-1;
- "ays": Align Your Steps' published values (`AysSchedules`, 10 steps; other counts interpolated in log
  sigma as its authors do), only on SD's noise schedule (`SD_NOISE`).
Explicit values go as `timesteps=`, else `sigmas=`; a solver taking neither (diffusers 0.42's UniPC takes
`sigmas=` only with flow sigmas) gets no tuned or AYS anchor. Results are cached as JSON under `cache_dir`.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from ..atomic import write_atomic
from ..objectives import paired_metrics, reference_key
from ..search.evaluator import Calibration, generate
from ..space.schedule import FULL, Schedule
from ..space.trajectory import (LABELS, SHORT_NAMES, Trajectory, scheduler_class, swapped, timesteps_to_sigmas,
                                warp_timesteps)
from .build import calibration

STEPS = (5, 7, 10)
SOLVERS = ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler")
SEARCH_IMAGES = 8  # the first calibration images the choice is made on
OPTIONS: tuple[dict[str, Any], ...] = ({}, {"timestep_spacing": "trailing"}, {"timestep_spacing": "linspace"},
                                       {"use_karras_sigmas": True}, {"final_sigmas_type": "sigma_min"})
GRID = tuple((start, power) for start in (0.8, 0.9, 1.0) for power in (1.5, 2.0))
PASSES = (0.15, 0.06)  # coordinate-descent step: this fraction of the half gap between a timestep's neighbours
SD_NOISE = {"beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012}
METHOD = "tuning@1"
KINDS = {"config": "best config", "tuned": "tuned", "ays": "AYS"}
T = TypeVar("T")


def explicit_kind(solver: str, base_config: Any) -> str | None:
    """"timesteps" or "sigmas": how `solver` takes explicit values under `base_config`; None: neither."""
    probe = warp_timesteps(3, 0.9, 1.5, base_config["num_train_timesteps"])
    for kind in ("timesteps", "sigmas"):
        try:
            explicit(solver, kind, probe, base_config).calls(base_config)
            return kind
        except (TypeError, ValueError):
            continue
    return None


def explicit(solver: str, kind: str, timesteps: Sequence[int], base_config: Any) -> Trajectory:
    """`solver` at these timesteps, as `timesteps=` or (`kind` "sigmas") their sigmas."""
    values = tuple(timesteps) if kind == "timesteps" else timesteps_to_sigmas(timesteps, base_config)
    return Trajectory(solver, len(timesteps), **{kind: values})


def strictly_decreasing(values: Sequence[float], top: int) -> tuple[int, ...]:
    """Rounded, at least one apart and inside 1..`top` (from the low-noise end, then from the top)."""
    out = [0] * len(values)
    for i in reversed(range(len(values))):
        out[i] = max(round(float(values[i])), out[i + 1] + 1 if i + 1 < len(values) else 1)
    return tuple(min(t, top - i) for i, t in enumerate(out))


def own_timesteps(solver: str, steps: int, base_config: Any) -> tuple[int, ...]:
    """The timesteps the config's own spacing gives `solver` at `steps` steps."""
    traj = Trajectory(solver, steps)
    raw = traj.set_timesteps(traj.build(base_config)).timesteps.tolist()
    return strictly_decreasing(raw, base_config["num_train_timesteps"] - 1)


def uses_sd_noise(base_config: Any) -> bool:
    """Whether the noise schedule is SD's (`SD_NOISE`), the one AYS's tables were optimised for."""
    def same(have: Any, want: Any) -> bool:
        if isinstance(want, float):
            return isinstance(have, (int, float)) and bool(np.isclose(have, want))
        return have == want

    return all(same(base_config.get(k), v) for k, v in SD_NOISE.items())


def ays_table(pipe: Any) -> str | None:
    """The AYS table for the pipeline ("StableDiffusion", "StableDiffusionXL"); None off SD's noise schedule."""
    if not uses_sd_noise(pipe.scheduler.config):
        return None
    return "StableDiffusionXL" if "XL" in type(pipe).__name__ else "StableDiffusion"


def ays_timesteps(steps: int, base_config: Any, model: str = "StableDiffusion") -> tuple[int, ...]:
    """AYS's `model` table at `steps` steps: the published timesteps at 10, else its step sigmas
    interpolated in log sigma over a linspace and mapped to timesteps on `base_config`'s schedule."""
    from diffusers.schedulers import AysSchedules

    top = base_config["num_train_timesteps"] - 1
    published = AysSchedules.get(f"{model}Timesteps")
    if published is not None and len(published) == steps:
        return strictly_decreasing(published, top)
    table = np.log(np.asarray(AysSchedules[f"{model}Sigmas"][:-1], dtype=float))[::-1]  # rising, without the final 0
    log_sigmas = np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, len(table)), table)[::-1]
    model_log_sigmas = np.log(np.asarray(timesteps_to_sigmas(range(top + 1), base_config)))  # rising with t
    return strictly_decreasing(np.interp(log_sigmas, model_log_sigmas, np.arange(top + 1)), top)


@dataclass
class _Search:
    """Scores trajectories on the search images (each one once) and tallies what that costs."""

    pipe: Any
    calib: Calibration
    reference: torch.Tensor
    generations: int = 0
    unet_calls: int = 0

    def __post_init__(self) -> None:
        self.scores: dict[Trajectory, float] = {}

    def __call__(self, traj: Trajectory) -> float:
        if traj not in self.scores:
            with swapped(self.pipe, traj):
                images = generate(self.pipe, self.calib, trajectory=traj)
            self.generations += 1
            self.unet_calls += traj.calls(self.pipe.scheduler.config) * len(self.calib.chunks())
            self.scores[traj] = paired_metrics(images, self.reference)["psnr"]
        return self.scores[traj]


def descend(score: Callable[[tuple[int, ...]], float], start: tuple[int, ...], top: int) -> tuple[int, ...]:
    """Coordinate descent (ascent on `score`) on each timestep: one pass per `PASSES` fraction, each
    timestep moved up, else down, when that scores higher; strictly decreasing inside 1..`top`."""
    best, value = list(start), score(start)
    for frac in PASSES:
        for i in range(len(best)):
            hi = best[i - 1] - 1 if i else top
            lo = best[i + 1] + 1 if i + 1 < len(best) else 1
            step = max(1, round(frac * (hi - lo) / 2))
            for t in (min(hi, best[i] + step), max(lo, best[i] - step)):
                cand = (*best[:i], t, *best[i + 1:])
                if t != best[i] and (v := score(cand)) > value:
                    best, value = list(cand), v
                    break
    return tuple(best)


def _best_config(search: _Search, solver: str, steps: int, base_config: Any) -> Trajectory | None:
    """The best of `OPTIONS` the class accepts; None when it is the config's own (or nothing differs)."""
    accepted = inspect.signature(scheduler_class(solver).__init__).parameters

    def plan(traj: Trajectory) -> tuple:
        scheduler = traj.set_timesteps(traj.build(base_config))
        return tuple(scheduler.timesteps.tolist()), tuple(np.round(scheduler.sigmas.tolist(), 6))

    default, seen, candidates = Trajectory(solver, steps), set(), []
    for options in OPTIONS:
        traj = Trajectory(solver, steps, options)
        if any(k not in accepted for k in options):
            continue
        try:
            key = plan(traj)
        except ValueError:
            continue
        if key not in seen:  # an option that changes nothing here is the config's own
            seen.add(key)
            candidates.append(traj)
    best = max(candidates, key=search)
    return None if best == default else best


def _found(search: _Search, solver: str, n: int, kind: str | None, ays: str | None) -> dict[str, Trajectory | None]:
    """The best-config, tuned and (`ays`: the table's model name) AYS trajectories of `solver` at `n` steps."""
    base_config = search.pipe.scheduler.config
    found: dict[str, Trajectory | None] = {"config": _best_config(search, solver, n, base_config)}
    if kind is not None:
        def score(ts: tuple[int, ...]) -> float:
            return search(explicit(solver, kind, ts, base_config))

        top = base_config["num_train_timesteps"] - 1
        own = own_timesteps(solver, n, base_config)
        starts = [own] + [warp_timesteps(n, s, p, top + 1) for s, p in GRID]
        tuned = descend(score, max(dict.fromkeys(starts), key=score), top)
        found["tuned"] = None if tuned == own else explicit(solver, kind, tuned, base_config)
        found["ays"] = explicit(solver, kind, ays_timesteps(n, base_config, ays), base_config) if ays else None
    return {k: t for k, t in found.items() if t is not None}


def _search(pipe: Any, calib: Calibration, reference: torch.Tensor, steps: Sequence[int], solvers: Sequence[str],
            log: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The anchors' entries ({kind, solver, steps, trajectory, psnr, default_psnr}) and what finding them cost."""
    base_config, started = pipe.scheduler.config, time.perf_counter()
    search, entries = _Search(pipe, calib, reference), []
    ays = ays_table(pipe)
    for solver in solvers:
        kind, name = explicit_kind(solver, base_config), LABELS.get(solver, solver)
        if kind is None:
            log(f"{name} takes no explicit timesteps or sigmas here: no tuned or AYS anchor")
        for n in steps:
            found, default = _found(search, solver, n, kind, ays), search(Trajectory(solver, n))
            log(f"{name} {n} steps on {len(calib.prompts)} calibration images, PSNR: default {default:.2f} dB"
                + "".join(f", {KINDS[k]} {search(t):.2f}" for k, t in found.items()))
            entries += [{"kind": k, "solver": solver, "steps": n, "trajectory": t.to_dict(),
                         "psnr": round(search(t), 3), "default_psnr": round(default, 3)} for k, t in found.items()]
    cost = {"generations": search.generations, "unet_calls": search.unet_calls, "images": len(calib.prompts),
            "seconds": round(time.perf_counter() - started, 1)}
    return entries, cost


def anchor(entry: dict[str, Any], base_config: Any) -> Schedule:
    """Full compute on the entry's trajectory, named "unipc-5-tuned" and labelled "UniPC 5, tuned"."""
    traj = Trajectory.from_dict(entry["trajectory"])
    short = {v: k for k, v in SHORT_NAMES.items() if k != "dpm"}.get(traj.scheduler, traj.scheduler)  # as anchors.py
    name = f"{short}-{traj.steps}-{entry['kind']}"
    label = f"{LABELS.get(traj.scheduler, traj.scheduler)} {traj.steps}, {KINDS[entry['kind']]}"
    return Schedule([FULL] * traj.calls(base_config), meta={"name": name, "label": label}, trajectory=traj)


def calibration_key(config: Any, images: int, **search: Any) -> str:
    """`reference_key` of what a pre-study search on the first `images` calibration images against the
    study's reference depends on, plus the `search`'s own settings (it must name `steps` and `scheduler`)."""
    return reference_key(model=config.model, prompts=config.prompts[:images], seeds=config.seeds[:images],
                         resolution=[config.height, config.width], guidance=config.guidance, dtype=config.dtype,
                         reference=config.reference, reference_steps=config.steps,
                         reference_scheduler=config.scheduler, converged_spacing=config.converged_spacing, **search)


def cached_json(path: Path | None, what: str, compute: Callable[[], dict[str, Any]],
                read: Callable[[dict[str, Any]], list[T]], log: Callable[[str], None]) -> list[T]:
    """`read` of the JSON stored at `path`; where there is none or it does not read, of `compute()`'s,
    then stored there atomically (no `path`: not stored). `what` names it in the log."""
    if path is not None and path.is_file():
        try:
            out = read(json.loads(path.read_text()))
            log(f"{what}: {len(out)} from {path}")
            return out
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log(f"{what}: {path} is unreadable ({exc}); searching again")
    data = compute()
    if path is not None:
        write_atomic(path, json.dumps(data, indent=1))
    return read(data)


def cache_path(cache_dir: str | Path, config: Any, steps: Sequence[int], solvers: Sequence[str], images: int,
               explicit_kinds: dict[str, str | None]) -> Path:
    """Where the chosen trajectories of this calibration set, reference and search are cached."""
    key = calibration_key(config, images, steps=list(steps), scheduler=list(solvers), explicit=explicit_kinds,
                          method=METHOD, options=list(OPTIONS), grid=list(GRID), passes=list(PASSES))
    return Path(cache_dir) / f"tuning-{key}.json"


def tuned_anchors(pipe: Any, config: Any, reference: torch.Tensor, cache_dir: str | Path | None = None,
                  steps: Sequence[int] = STEPS, solvers: Sequence[str] = SOLVERS,
                  log: Callable[[str], None] | None = None, images: int = SEARCH_IMAGES) -> list[Schedule]:
    """Best-config, tuned and AYS anchors for each of `solvers` at each of `steps` (see the module), chosen
    on the first `images` images of `calibration(config)` against `reference` (its converged images);
    computed once per study when `cache_dir` is given."""
    log = log or (lambda text: None)
    base_config = pipe.scheduler.config
    calib = calibration(config)
    images = max(1, min(images, len(calib.prompts)))
    solvers = [Trajectory(s, 1).scheduler for s in solvers]
    kinds = {s: explicit_kind(s, base_config) for s in solvers}
    path = cache_path(cache_dir, config, steps, solvers, images, kinds) if cache_dir is not None else None

    def search() -> dict[str, Any]:
        subset = calib.part(0, images)
        entries, cost = _search(pipe, subset, reference[:images], list(steps), solvers, log)
        log(f"tuned anchors: {len(entries)} found with {cost['generations']} generations of {images} images, "
            f"{cost['unet_calls']} U-Net calls, {cost['seconds']:.0f} s")
        return {"format": f"datosearch/{METHOD}", "anchors": entries, "cost": cost}

    return cached_json(path, "tuned anchors", search, lambda data: [anchor(e, base_config) for e in data["anchors"]],
                       log)
