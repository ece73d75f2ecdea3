"""Re-score an exported front on held-out images, beside the anchors a user would try instead.

The search only ever saw its calibration prompts and seeds; a claim about the front counts on
images it never saw (`studies.heldout`: seeds 777000+, PSNR against the converged reference,
FID-proxy against real held-out digits, end-to-end speedup timed in one process). Each exported
schedule is marked with the anchors it beats there (`heldout.dominates`); every (front, anchor) pair
is compared, so a close call on speed is timed longer before its verdict (`heldout.close_calls`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from ..search.attrs import ANCHOR_ATTR
from ..space.schedule import Schedule
from . import heldout as ho
from .config import StudyConfig
from .front import FrontEntry, trial_schedule

CONVERGENCE_CHECK_IMAGES = 8  # the converged reference's own 100-vs-200-step check (fewer than heldout's default)
TIMING_ROUNDS = 9  # interleaved end-to-end timing rounds (each bracketed by full compute); the median of 9 keeps
# single ratios steady on a shared machine, where one round in five can run 30 % slow


def compared_anchor(name: str, schedule: Schedule) -> bool:
    """The anchors a front is judged against: full compute, DeepCache (uniform and non-uniform) and
    fewer steps of a fast solver (10 steps or fewer)."""
    steps = schedule.trajectory.steps if schedule.trajectory is not None else None
    return name == "full" or name.startswith("deepcache") or (steps is not None and steps <= 10)


def anchor_schedules_of(study: optuna.Study) -> list[tuple[str, Schedule]]:
    """The compared anchors among the study's completed trials, one per anchor name."""
    out: dict[str, Schedule] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        name = trial.user_attrs.get(ANCHOR_ATTR)
        if name and name not in out:
            schedule = trial_schedule(trial)
            if compared_anchor(name, schedule):
                out[name] = schedule
    return list(out.items())


def heldout_scores(study: optuna.Study, entries: Sequence[FrontEntry], pipe: Any, config: StudyConfig,
                   n_images: int, cache_dir: str | Path | None = None,
                   log: Callable[[str], None] | None = None, rounds: int = TIMING_ROUNDS,
                   refine_factor: int = ho.REFINE_FACTOR, seed0: int = ho.HELDOUT_SEED0) -> dict[str, Any]:
    """Held-out rows for the front entries (same order) and the compared anchors, with `beats`."""
    named = [(e.anchor or f"trial-{e.trial.number}", e.schedule) for e in entries]
    return score_against_anchors(named, anchor_schedules_of(study), pipe, config, n_images, cache_dir, log, rounds,
                                 refine_factor, seed0)


def score_against_anchors(named: Sequence[tuple[str, Schedule]], anchors: Sequence[tuple[str, Schedule]], pipe: Any,
                          config: StudyConfig, n_images: int, cache_dir: str | Path | None = None,
                          log: Callable[[str], None] | None = None, rounds: int = TIMING_ROUNDS,
                          refine_factor: int = ho.REFINE_FACTOR, seed0: int = ho.HELDOUT_SEED0) -> dict[str, Any]:
    """Score `named` schedules and the `anchors` on held-out images (seeds from `seed0`) in one run (one timing session);
    `front` rows (same order as `named`) carry `beats`: the anchors each dominates. Close calls get
    `refine_factor` x `rounds` more timing rounds (`heldout.close_calls`; 0: none)."""
    protocol = ho.HeldoutProtocol(n_images, seed0)
    converged = ho.converged_reference(pipe, protocol.prompts, protocol.seeds, guidance=config.guidance, check=CONVERGENCE_CHECK_IMAGES,
                                       cache_dir=cache_dir, model=config.model)
    everything = [*named, *anchors]
    unique: dict[str, tuple[str, Schedule]] = {}  # a front member that is also an anchor is generated and timed once
    for name, schedule in everything:
        unique.setdefault(schedule.key(), (name, schedule))
    position = {key: i for i, key in enumerate(unique)}
    compare = [(position[a.key()], position[b.key()]) for _, a in named for _, b in anchors]
    scored = ho.score_heldout(pipe, [s for _, s in unique.values()], n_images, names=[n for n, _ in unique.values()],
                              steps=config.steps, scheduler=config.scheduler, guidance=config.guidance,
                              model=config.model, cache_dir=cache_dir, converged=converged, repeats=rounds, log=log,
                              compare=compare, refine_factor=refine_factor, seed0=seed0)
    by_key = dict(zip(unique, scored))
    rows = [{**by_key[schedule.key()], "name": name} for name, schedule in everything]
    front, anchor_rows = rows[:len(named)], rows[len(named):]
    for row in front:
        row["beats"] = ho.beaten_anchors(row, anchor_rows)
    return {"n_images": n_images, "seed0": seed0, "reference": converged.describe(),
            "dominance": {"speed": ho.SPEED_TOLERANCE, "psnr_db": ho.PSNR_MARGIN_DB, "fid_slack": ho.FID_SLACK,
                          "fid_margin": ho.FID_MARGIN},
            "front": front, "anchors": anchor_rows}
