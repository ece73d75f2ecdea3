"""Create, reopen and run studies; the configuration is stored in the study and checked on every reopen."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import optuna

from ..errors import UserValueError
from ..search.runner import (CandidateEvaluator, Deadline, TrialRecord, complete_count, enqueue_anchors, enqueue_initial,
                             run_until)
from ..search.samplers import make_sampler
from ..space.encoding import make_encoding
from ..space.schedule import Schedule
from ..search.attrs import ANCHORS_SKIPPED_ATTR, BUDGET_ATTR, CONFIG_ATTR
from .config import StudyConfig, StudyConfigError
from .storage import NoDatabaseError, open_storage, sqlite_path, study_names


class StudyNotFoundError(UserValueError):
    """No study of that name in that storage."""


def directions(objectives: Sequence[str]) -> list[str]:
    """Optuna directions of the objectives (`ObjectiveError`, a ValueError, for unknown names)."""
    from ..objectives import objective_directions

    return objective_directions(objectives)


def sampler_for(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study's sampler, with its encoding's variation (NSGA-II)."""
    return make_sampler(config.sampler, config.population, config.sampler_seed, config.encoding)


def stored_config(study: optuna.Study) -> StudyConfig:
    data = study.user_attrs.get(CONFIG_ATTR)
    if data is None:
        raise StudyConfigError(f"study {study.study_name!r} was not created by datosearch (no stored configuration)")
    return StudyConfig.from_json(data)


def open_study(url: str, name: str, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Load an existing study without creating or writing a database (a missing or empty SQLite or journal
    file, or one without Optuna's tables, is an error and stays as it was)."""
    try:
        storage = open_storage(url, create=False)
    except NoDatabaseError as exc:
        raise StudyNotFoundError(f"{exc}; start one with `datosearch run --study {name}`") from None
    if name not in study_names(storage):
        raise StudyNotFoundError(f"no study named {name!r} in {url}")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    if sampler is None:
        config = stored_config(study)
        study.sampler = sampler_for(config)
    return study


def exists(url: str, name: str) -> bool:
    db = sqlite_path(url)
    return (db is None or db.exists()) and name in study_names(open_storage(url))


def check_existing(url: str, name: str, config: StudyConfig) -> optuna.Study | None:
    """The stored study if there is one and its configuration equals `config` (else `StudyConfigError`)."""
    if not exists(url, name):
        return None
    study = open_study(url, name, sampler_for(config))
    config.require_same(stored_config(study), name)
    return study


def create(url: str, name: str, config: StudyConfig, anchors: Sequence[Schedule] = (),
           members: Sequence[Schedule] = ()) -> optuna.Study:
    """Create the study, store `config`, enqueue the `anchors`, the refined `members` (`studies.refine`)
    and the encoding's first generation."""
    sampler = sampler_for(config)
    study = optuna.create_study(study_name=name, storage=open_storage(url), directions=directions(config.objectives),
                                sampler=sampler)
    with warnings.catch_warnings():  # stable since Optuna 3.2 but still marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.objectives))  # optuna-dashboard shows them instead of "None"
    study.set_user_attr(CONFIG_ATTR, config.to_json())
    encoding = make_encoding(config.encoding)
    skipped = enqueue_anchors(study, anchors, encoding)
    study.set_user_attr(ANCHORS_SKIPPED_ATTR, skipped)
    enqueue_anchors(study, members, encoding, operator="refined")
    enqueue_initial(study, encoding)
    return study


def budget(study: optuna.Study) -> int:
    return int(study.user_attrs.get(BUDGET_ATTR, 0))


def run(study: optuna.Study, evaluator: CandidateEvaluator, config: StudyConfig, target: int | None,
        on_trial: Callable[[TrialRecord], Any] | None = None, stale_after: float | None = None,
        deadline: Deadline | None = None) -> list[TrialRecord]:
    """Run until the study holds `target` COMPLETE trials (None: the stored budget), with any number
    of other workers, or until this run's `deadline` is spent (a time budget, never stored in the study);
    trials of crashed workers are failed and re-queued on the way (`run_until`)."""
    if target is not None:
        study.set_user_attr(BUDGET_ATTR, int(target))
    return run_until(study, evaluator, make_encoding(config.encoding), budget(study), on_trial, stale_after, deadline)


def time_budget_spent(study: optuna.Study, minutes: float) -> str:
    """What `run | resume | worker --budget MINUTES` says when its time budget stopped the search."""
    name = study.study_name
    return (f"time budget of {minutes:g} min spent: no new trial started; study {name!r} holds "
            f"{complete_count(study)} COMPLETE trials; `datosearch resume --study {name}` continues it")
