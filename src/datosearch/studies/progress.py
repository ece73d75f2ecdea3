"""A tqdm progress bar showing trials done, Pareto size and hypervolume."""

from __future__ import annotations

import optuna
from tqdm import tqdm

from ..options import MAX_TRIALS
from ..search.pareto import study_hypervolume
from ..search.runner import TrialRecord, complete_count
from .study import budget


class ProgressBar:
    def __init__(self, study: optuna.Study, target: int) -> None:
        self.study = study
        done = complete_count(study)
        total = None if target >= MAX_TRIALS else max(target, done)  # no trial target (`run --budget` alone)
        self.bar = tqdm(total=total, initial=done, desc=study.study_name, unit="trial", dynamic_ncols=True)

    def update_trial(self, record: TrialRecord) -> None:
        front = len(self.study.best_trials)
        hv = study_hypervolume(self.study) if len(self.study.directions) > 1 else float("nan")
        state = "dup" if record.dedup_of is not None else record.state.name.lower()
        self.bar.set_postfix_str(f"pareto={front} hv={hv:.4g} last=#{record.number} {state}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_bar(study: optuna.Study, target: int | None, disabled: bool) -> ProgressBar | None:
    """The bar of `run | resume | worker` (None when `disabled`), up to `target` (None: the stored budget)."""
    if disabled:
        return None
    return ProgressBar(study, target if target is not None else budget(study))
