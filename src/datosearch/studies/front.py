"""The Pareto front of a study as rows: one per distinct schedule, with values, speedup and counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..search.attrs import ANCHOR_ATTR, DEDUP_ATTR, KEY_ATTR, SCHEDULE_ATTR, SPEEDUP_ATTR
from ..search.pareto import pareto_trials
from ..space.io import from_json_obj
from ..space.schedule import Schedule


@dataclass
class FrontEntry:
    trial: FrozenTrial
    schedule: Schedule
    values: dict[str, float]

    @property
    def anchor(self) -> str | None:
        return self.trial.user_attrs.get(ANCHOR_ATTR)

    @property
    def speedup(self) -> float | None:
        return self.trial.user_attrs.get(SPEEDUP_ATTR)


def objective_names(study: optuna.Study) -> list[str]:
    from .study import stored_config

    return stored_config(study).objectives


def trial_schedule(trial: FrozenTrial) -> Schedule:
    return from_json_obj(trial.user_attrs[SCHEDULE_ATTR], f"trial {trial.number}")


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible Pareto-optimal trials a user may apply. A study that searches the base trajectory
    (`--search-steps`) offers every trial; one that keeps the user's own trajectory (`--no-search-steps`)
    only those on it: the fewer-steps anchors on other samplers stay reference rows (the held-out
    table, the report), and the front is the best the study found on the user's trajectory."""
    from .study import stored_config

    config = stored_config(study)
    if config.encoding.get("trajectories"):
        return study.best_trials
    own = config.trajectory
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if trial_schedule(t).trajectory in (None, own)]
    return pareto_trials(trials, study.directions)


def pareto_front(study: optuna.Study) -> list[FrontEntry]:
    """Feasible Pareto-optimal trials (`front_trials`), one per schedule key (the originally evaluated trial),
    sorted by objective 1."""
    names = objective_names(study)
    by_key: dict[str, FrozenTrial] = {}
    for trial in front_trials(study):
        key = trial.user_attrs.get(KEY_ATTR, str(trial.number))
        kept = by_key.get(key)
        if kept is None or (DEDUP_ATTR in kept.user_attrs and DEDUP_ATTR not in trial.user_attrs):
            by_key[key] = trial
    entries = [FrontEntry(t, trial_schedule(t), dict(zip(names, t.values))) for t in by_key.values()]
    return sorted(entries, key=lambda e: (tuple(e.trial.values), e.trial.number))


def format_table(study: optuna.Study, entries: list[FrontEntry]) -> str:
    """A plain-text table of the front (one line per schedule)."""
    names = objective_names(study)
    header = ["#", "trial", *names, "speedup", "full/shallow/reuse", "pruned blocks", "anchor"]
    rows: list[list[Any]] = []
    for k, e in enumerate(entries):
        c = e.schedule.counts()
        rows.append([k, e.trial.number, *(f"{e.values[n]:.4g}" for n in names),
                     f"{e.speedup:.2f}x" if e.speedup else "-", f"{c['full']}/{c['shallow']}/{c['reuse']}",
                     len(e.schedule.prune.ratios), e.anchor or ""])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).rjust(w) for x, w in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
