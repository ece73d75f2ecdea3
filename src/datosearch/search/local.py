"""Local refinement of a front member: Optuna's TPE on the sub-space of its continuous genes.

A child keeps the parent's discrete genes (trajectory, full-call count, `last`, each phase's action,
order and damping, the pruning ratios) and takes new continuous ones: where the full calls sit (``warp``,
``center``) and, on a trajectory that takes explicit timesteps, where its steps sit (``tstart``,
``tpow``). They are proposed by a seeded `optuna.samplers.TPESampler` in an in-memory study that holds
the study's own COMPLETE trials in that niche, each scored by its calibration PSNR against the reference
(`PAIRED_PREFIX` + "psnr", what every trial stores). In a niche the cost is about fixed (the same calls
do the same work), so one quality number ranks it: TPE moves toward the niche's best and spends the
evaluations where the pre-study search of DESIGN §11 found its gains (timesteps bent toward low noise,
the full calls' placement). A niche's first proposal can come from elsewhere: `transferred` gives the timestep
pair of the best trial at the nearest full-call count (`bench/warp_transfer.py`: such a pair lifted seeded
members at 4-20 full calls by 2.2-4.8 dB on the calibration images; a pair from a far count cost up to 8.5 dB),
unless the parent's own count has tried another pair and scored its own best (a refined member's tuned pair:
the other pairs of its count cost it 2.3 dB in a default study).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from .._quiet import optuna_warnings_only
from .attrs import PAIRED_PREFIX, PLAN_ATTR

PLACEMENT_GENES = ("warp", "center")
TIMESTEP_GENES = ("tstart", "tpow")
SCORE = f"{PAIRED_PREFIX}psnr"
RADIUS = 0.1  # the trust region around the niche's best: this share of each gene's range on either side,
SHRINK = 0.8  # times this for each niche trial since the best was found (down to RADIUS / 8): adaptive strength


def niche(params: dict[str, Any], free: Sequence[str]) -> dict[str, Any]:
    """The genes a local child keeps: every gene of `params` outside `free`."""
    return {k: v for k, v in params.items() if k not in free}


def history(trials: Sequence[FrozenTrial], kept: dict[str, Any], free: Sequence[str]) -> list[FrozenTrial]:
    """COMPLETE trials whose genes are their plan (no exact plan of their own), with `kept` genes and a
    calibration PSNR: the sub-study's observations (their `free` genes and PSNR)."""
    out = []
    for t in trials:
        if t.state != TrialState.COMPLETE or PLAN_ATTR in t.user_attrs or SCORE not in t.user_attrs:
            continue
        if all(t.params.get(k) == v for k, v in kept.items()) and all(k in t.params for k in free):
            out.append(t)
    return out


def transferred(parent: FrozenTrial, trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
    """The timestep genes of the best of `trials` (calibration PSNR) at the full-call count nearest `parent`'s,
    among those scored whose genes are their plan and whose timestep pair differs from `parent`'s (None: none,
    or `parent`'s count already tried another pair and its best trial has `parent`'s pair): where the steps
    sit is mostly the model's, so a pair found at one count lifts its neighbours, unless the parent's own
    count has shown that its pair is the better one there."""
    def pair(t: FrozenTrial) -> tuple[Any, ...]:
        return tuple(t.params[k] for k in TIMESTEP_GENES)

    if "full" not in parent.params:
        return None
    own = tuple(parent.params.get(k) for k in TIMESTEP_GENES)
    pool = [t for t in history(trials, {}, TIMESTEP_GENES) if "full" in t.params]
    here = [t for t in pool if t.params["full"] == parent.params["full"]]
    if any(pair(t) != own for t in here) and pair(max(here, key=lambda t: t.user_attrs[SCORE])) == own:
        return None
    pool = [t for t in pool if pair(t) != own]
    if not pool:
        return None
    best = min(pool, key=lambda t: (abs(t.params["full"] - parent.params["full"]), -t.user_attrs[SCORE]))
    return {k: best.params[k] for k in TIMESTEP_GENES}


def region(center: dict[str, Any], distributions: dict[str, BaseDistribution], radius: float) -> dict[str, FloatDistribution]:
    """The box around `center`: each gene within `radius` of its range (of its log-range for a log
    distribution), clipped to the distribution."""
    out = {}
    for k, value in center.items():
        d = distributions[k]
        if d.log:
            lo, hi = math.log(d.low), math.log(d.high)
            v, r = math.log(value), radius * (hi - lo)
            out[k] = FloatDistribution(math.exp(max(lo, v - r)), math.exp(min(hi, v + r)), log=True)
        else:
            r = radius * (d.high - d.low)
            out[k] = FloatDistribution(max(d.low, value - r), min(d.high, value + r))
    return out


def propose(parent: FrozenTrial, trials: Sequence[FrozenTrial], distributions: dict[str, BaseDistribution],
            free: Sequence[str], seed: int, asks: int = 1) -> list[dict[str, Any]]:
    """`asks` proposals for `parent`'s `free` genes, each a full genome (the parent's other genes kept): TPE
    inside the `region` around the niche's best (by calibration PSNR; the parent if none is scored), fitted on
    the niche's trials inside it. The region's radius is `RADIUS`, shrunk by `SHRINK` for every niche trial
    that did not beat the best since it was found."""
    kept = niche(parent.params, free)
    observed = history(trials, kept, free)
    best = max(observed, key=lambda t: t.user_attrs[SCORE], default=parent)
    misses = sum(t.number > best.number for t in observed)  # tried since the best was found: shrink the region
    box = region({k: best.params[k] for k in free}, distributions, RADIUS * max(SHRINK ** misses, 1 / 8))
    inside = [t for t in observed if all(box[k].low <= t.params[k] <= box[k].high for k in free)]
    with warnings.catch_warnings():  # multivariate TPE is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, multivariate=True)
    with optuna_warnings_only():
        sub = optuna.create_study(direction="maximize", sampler=sampler)
    sub.add_trials([optuna.trial.create_trial(params={k: t.params[k] for k in free}, distributions=box,
                                              value=float(t.user_attrs[SCORE])) for t in inside])
    out = []
    for _ in range(asks):
        proposal = sub.ask(box)
        out.append({**parent.params, **proposal.params})
        sub.tell(proposal, state=TrialState.FAIL)  # asked, not scored: the next ask draws afresh
    return out
