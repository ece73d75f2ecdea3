"""The search loop (Optuna ask/tell): anchors first, dedup by schedule key, failures become FAIL trials."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..errors import SearchIncompleteError
from ..space.encoding import Encoding, EncodingConfig, make_encoding
from ..space.schedule import Schedule, ScheduleError
from .attrs import (ANCHOR_ATTR, DEDUP_ATTR, FAIL_ATTR, KEY_ATTR, OPERATOR_ATTR, ORIGIN_ATTRS, PARENTS_ATTR,
                    PLAN_ATTR, RETRY_ATTR, SCHEDULE_ATTR)
from .evaluator import CandidateError, Evaluation
from .liveness import heartbeat, sweep_stale
from .samplers import variation_of


class CandidateEvaluator(Protocol):
    """What the loop needs: objective names in study order, a one-off `prepare`, and `evaluate`."""

    objectives: list[str]

    def prepare(self) -> None: ...

    def evaluate(self, schedule: Schedule) -> Evaluation: ...



clock = time.monotonic  # what a `Deadline` reads (the tests replace it)


class Deadline:
    """A time budget of `run_until`, as `study.optimize(timeout=...)`: no trial starts once `seconds` have
    passed since the first trial did; a running trial finishes and is told. `spent`: it stopped the loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started, self.spent = seconds, None, False

    def allows_trial(self) -> bool:
        """Whether a trial may start now (the first call starts the clock)."""
        now = clock()
        if self.started is None:
            self.started = now
        self.spent = now - self.started >= self.seconds
        return not self.spent


_OOM_TEXT = ("out of memory", "can't allocate memory", "failed to allocate memory")


def is_candidate_failure(exc: BaseException) -> bool:
    """Whether `exc` fails one candidate but not the study: out of memory (CUDA or CPU), non-finite
    images or objectives (`CandidateError`, `ObjectiveError`), a schedule the model rejects.

    Anything else (a torch shape error, a bug of ours) is an internal error: the runner records the
    trial as FAIL and re-raises, so the command shows the traceback instead of searching on.
    """
    from ..objectives import ObjectiveError

    if isinstance(exc, (CandidateError, ObjectiveError, ScheduleError, torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _OOM_TEXT)


@dataclass
class TrialRecord:
    """What one trial cost: total seconds, seconds inside `evaluate` (generation, timing, scoring), its end state."""

    number: int
    state: TrialState
    total_s: float
    model_s: float
    dedup_of: int | None = None
    fail_reason: str | None = None


def enqueue_anchors(study: optuna.Study, anchors: Sequence[Schedule], encoding: EncodingConfig | Encoding,
                    operator: str = "anchor") -> list[str]:
    """Enqueue the anchors; returns the names of those the encoding cannot express at all.

    An anchor the encoding expresses exactly is enqueued by its genes. One it can only approximate
    (`nearest_plan`, structured encoding) is enqueued with the nearest genes plus its exact schedule
    (`PLAN_ATTR`), which is what the trial evaluates; the genes only serve as NSGA-II parents.
    Another `operator` (e.g. "refined") enqueues first-generation members the same way, not as anchors.
    """
    enc = make_encoding(encoding)
    skipped = []
    for schedule in anchors:
        name = schedule.meta.get("name", schedule.key())
        params = enc.encode(schedule)
        attrs: dict[str, Any] = {OPERATOR_ATTR: operator, **({ANCHOR_ATTR: name} if operator == "anchor" else {})}
        if params is None:
            params = enc.nearest(schedule)
            attrs[PLAN_ATTR] = schedule.to_dict()
        if params is None:
            skipped.append(name)
        else:
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=PLAN_ATTR not in attrs)
    return skipped


def enqueue_initial(study: optuna.Study, encoding: EncodingConfig | Encoding) -> int:
    """Enqueue the encoding's first-generation spread (after the anchors); returns how many."""
    enc = make_encoding(encoding)
    members = enc.initial()
    for params in members:
        study.enqueue_trial(params, user_attrs={OPERATOR_ATTR: "seeded"}, skip_if_exists=True)
    return len(members)


def complete_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _retry_attrs(attrs: dict[str, Any], number: int) -> dict[str, Any]:
    return {**{k: v for k, v in attrs.items() if k in ORIGIN_ATTRS}, RETRY_ATTR: number}


def _find_duplicate(study: optuna.Study, key: str, number: int) -> FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.number != number and trial.user_attrs.get(KEY_ATTR) == key and DEDUP_ATTR not in trial.user_attrs:
            return trial
    return None


def run_trial(study: optuna.Study, evaluator: CandidateEvaluator, encoding: EncodingConfig | Encoding) -> TrialRecord:
    """Ask one trial, evaluate (or reuse) its schedule, tell the result."""
    start = time.perf_counter()
    with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize": we run it (liveness)
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    with heartbeat(study, trial):  # records the worker first, so a kill from here on is detected
        # An enqueued trial (anchor, first-generation member, retry) has every gene fixed, so Optuna never
        # asks the sampler about it; asking for its relative params lets NSGA-II count it in a generation.
        variation = variation_of(study.sampler)
        bred = variation.children if variation is not None else 0
        enqueued = OPERATOR_ATTR in trial.user_attrs  # enqueued trials say what they are
        if variation is not None:
            variation.idle = enqueued  # Optuna keeps an enqueued trial's genes: breed nothing for it
        _ = trial.relative_params
        if not enqueued:
            made = variation.made if variation is not None and variation.children > bred else None
            trial.set_user_attr(OPERATOR_ATTR, made["operator"] if made else "sampled")
            if made:
                trial.set_user_attr(PARENTS_ATTR, made["parents"])
        return _run_asked(study, trial, evaluator, encoding, start)


def _suggest(trial: optuna.Trial, encoding: EncodingConfig | Encoding) -> Schedule:
    """The trial's schedule: its exact plan if it carries one, else its decoded genes."""
    enc = make_encoding(encoding)
    if PLAN_ATTR not in trial.user_attrs:
        return enc.suggest(trial)
    enc.sample(trial)  # the nearest genes, kept for NSGA-II's parents
    schedule = Schedule.from_dict(trial.user_attrs[PLAN_ATTR])
    enc.report_constraints(trial, schedule)  # the evaluated schedule's, not the genes'
    return schedule


def _run_asked(study: optuna.Study, trial: optuna.Trial, evaluator: CandidateEvaluator,
               encoding: EncodingConfig | Encoding, start: float) -> TrialRecord:
    schedule = _suggest(trial, encoding)
    if ANCHOR_ATTR in trial.user_attrs:
        schedule = schedule.with_meta(name=trial.user_attrs[ANCHOR_ATTR])
    key = schedule.key()
    trial.set_user_attr(KEY_ATTR, key)
    trial.set_user_attr(SCHEDULE_ATTR, schedule.to_dict())
    duplicate = _find_duplicate(study, key, trial.number)
    if duplicate is not None:
        for name, value in duplicate.user_attrs.items():
            if name not in (*ORIGIN_ATTRS, KEY_ATTR, SCHEDULE_ATTR, RETRY_ATTR):
                trial.set_user_attr(name, value)
        trial.set_user_attr(DEDUP_ATTR, duplicate.number)
        study.tell(trial, duplicate.values)
        return TrialRecord(trial.number, TrialState.COMPLETE, time.perf_counter() - start, 0.0, duplicate.number)
    eval_start = time.perf_counter()
    try:
        result: Evaluation = evaluator.evaluate(schedule)
    except KeyboardInterrupt:  # Ctrl-C: fail this trial, queue its genes again, stop
        trial.set_user_attr(FAIL_ATTR, "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs=_retry_attrs(trial.user_attrs, trial.number))
        raise
    except Exception as exc:
        model_s = time.perf_counter() - eval_start
        reason = f"{type(exc).__name__}: {exc}"[:500]
        failure = is_candidate_failure(exc)
        trial.set_user_attr(FAIL_ATTR, reason if failure else f"internal error: {reason}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        if not failure:
            raise
        return TrialRecord(trial.number, TrialState.FAIL, time.perf_counter() - start, model_s, fail_reason=reason)
    model_s = time.perf_counter() - eval_start
    for name, value in result.attrs.items():
        trial.set_user_attr(name, value)
    study.tell(trial, [result.values[name] for name in evaluator.objectives])
    return TrialRecord(trial.number, TrialState.COMPLETE, time.perf_counter() - start, model_s)


def run_until(study: optuna.Study, evaluator: CandidateEvaluator, encoding: EncodingConfig | Encoding, target: int,
              on_trial: Callable[[TrialRecord], Any] | None = None,
              stale_after: float | None = None, deadline: Deadline | None = None) -> list[TrialRecord]:
    """Run trials until the study holds `target` COMPLETE trials, counted across all workers, or until
    the `deadline` is spent (then `deadline.spent` is True).

    The budget rule: a worker starts a trial only while COMPLETE < target, so N workers end with
    target <= COMPLETE <= target + (trials in flight when the budget was hit) <= target + N - 1.
    Before each trial, trials of crashed workers are failed and re-queued (`sweep_stale`). A worker
    gives up after `max(10, min(target, 100))` failures in a row (a configuration where nothing can work) and
    raises `SearchIncompleteError` saying how many trials failed and the most common `fail_reason`.
    """
    records: list[TrialRecord] = []
    encoding = make_encoding(encoding)
    evaluator.prepare()  # e.g. the baseline latency, before the first trial's clock starts
    failures_in_row, limit = 0, max(10, min(target, 100))  # a time budget's target is unbounded
    while failures_in_row < limit:
        sweep_stale(study, stale_after)
        if complete_count(study) >= target or (deadline is not None and not deadline.allows_trial()):
            break
        record = run_trial(study, evaluator, encoding)
        failures_in_row = failures_in_row + 1 if record.state == TrialState.FAIL else 0
        records.append(record)
        if on_trial is not None:
            on_trial(record)
    else:
        raise _incomplete(study, records, failures_in_row, target)
    return records


def _incomplete(study: optuna.Study, records: list[TrialRecord], in_row: int, target: int) -> SearchIncompleteError:
    failed = [r for r in records if r.state == TrialState.FAIL]
    reason, count = Counter(r.fail_reason for r in failed).most_common(1)[0]
    message = (f"stopped after {in_row} failed trials in a row: {len(failed)} of this run's {len(records)} trials "
               f"failed and the study holds {complete_count(study)} of {target} COMPLETE trials; most common "
               f"fail_reason ({count} of {len(failed)}): {reason}")
    return SearchIncompleteError(message, len(failed), len(records), reason)
