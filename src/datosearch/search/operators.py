"""Where a study's trials and its front came from: per operator, what it made and what that was worth.

Every trial says what made its genes (`OPERATOR_ATTR`): "anchor", "refined" and "seeded" (enqueued:
the anchors, `studies.refine`'s members and the encoding's first generation), "sampled" (the sampler's
own draw: NSGA-II's random first generation, TPE, ...), or the structured variation's operators joined by "+" ("crossover+full+warp";
bred from `PARENTS_ATTR`). A bred child *beats a parent* when it dominates at least one of its parents
(feasible and completed, on the study's objectives). A child made by several operators counts for each.
Trials stored before operators were recorded count as "unrecorded".
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from .attrs import DEDUP_ATTR, OPERATOR_ATTR, PARENTS_ATTR
from .pareto import dominates, feasible_complete, pareto_trials

ORIGINS = ("anchor", "refined", "seeded", "sampled", "unrecorded")


def operators_of(trial: FrozenTrial) -> list[str]:
    """The operators a trial counts for: its origin, or each of the variation's operators."""
    made = trial.user_attrs.get(OPERATOR_ATTR, "unrecorded")
    return [made] if made in ORIGINS else str(made).split("+")


def operator_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per operator, origins first: trials made, completed (feasible), bred children that beat a
    parent, and trials on the study's Pareto front. A trial that repeated an evaluated schedule
    (`DEDUP_ATTR`) found nothing new: it counts as made only."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    ok = {t.number for t in feasible_complete(trials) if DEDUP_ATTR not in t.user_attrs}
    front = {t.number for t in pareto_trials(trials, study.directions)} & ok
    made, done, beat, on_front = Counter(), Counter(), Counter(), Counter()
    for trial in trials:
        parents = [by_number[p] for p in trial.user_attrs.get(PARENTS_ATTR, []) if p in by_number]
        wins = trial.number in ok and any(p.number in ok and dominates(trial, p, study.directions) for p in parents)
        for op in operators_of(trial):
            made[op] += 1
            done[op] += trial.number in ok
            beat[op] += wins
            on_front[op] += trial.number in front
    order = [o for o in ORIGINS if o in made] + sorted(o for o in made if o not in ORIGINS)
    return [{"operator": op, "trials": made[op], "complete": done[op],
             "beat_parent": beat[op] if op not in ORIGINS else None, "on_front": on_front[op]} for op in order]
