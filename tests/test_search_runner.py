"""The ask/tell loop: anchors first, dedup by schedule key, failures become FAIL trials, hypervolume."""

import os
import socket

import optuna
import pytest
import torch
from optuna.study import StudyDirection
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from datosearch.errors import SearchIncompleteError
from datosearch.models.tiny import tiny_unet
from datosearch.search import anchor_schedules, enqueue_anchors, hypervolume, make_sampler, run_until
from datosearch.search.pareto import reference_point, study_hypervolume
from datosearch.search.liveness import WORKER_ATTR, _start_ticks, sweep_stale
from datosearch.search.runner import DEDUP_ATTR, FAIL_ATTR, KEY_ATTR
from datosearch.space.encoding import EncodingConfig, encode, suggest
from datosearch.space.layout import transformer_blocks
from datosearch.space.schedule import Schedule
from search_helpers import FakeEvaluator

UNET = tiny_unet()
ENC = EncodingConfig(n_calls=6, blocks=[b.path for b in transformer_blocks(UNET)], branches=[0, 1])


def new_study(sampler: str = "nsga2") -> optuna.Study:
    return optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler(sampler, population=4))


def test_anchors_run_first_and_are_labelled():
    study = new_study()
    skipped = enqueue_anchors(study, anchor_schedules(UNET, ENC.n_calls), ENC)
    assert skipped == []
    evaluator = FakeEvaluator()
    run_until(study, evaluator, ENC, 10)
    anchors = [t.user_attrs.get("anchor") for t in study.trials[:7]]
    assert anchors == ["full", "deepcache-N2-b0", "deepcache-N3-b0", "deepcache-N4-b0", "deepcache-N5-b0",
                       "dato-coco-r0.4-resampled", "ratio-0.3"]
    assert len(study.trials) == 10


def test_enqueued_duplicate_is_not_re_evaluated():
    study = new_study("random")
    params = encode(Schedule.deepcache(ENC.n_calls, 2, 0), ENC)
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    evaluator = FakeEvaluator()
    run_until(study, evaluator, ENC, 2)
    first, second = study.trials
    assert len(evaluator.calls) == 1
    assert second.user_attrs[DEDUP_ATTR] == first.number
    assert second.values == first.values and second.user_attrs[KEY_ATTR] == first.user_attrs[KEY_ATTR]
    assert second.user_attrs["speedup"] == first.user_attrs["speedup"]


def test_failing_candidate_becomes_fail_and_study_goes_on():
    study = new_study("random")
    study.enqueue_trial(encode(Schedule.deepcache(ENC.n_calls, 3, 0), ENC))
    evaluator = FakeEvaluator(fail_if=lambda s: s.counts()["full"] == 2)
    records = run_until(study, evaluator, ENC, 6)
    failed = study.trials[0]
    assert failed.state == TrialState.FAIL and "NaN" in failed.user_attrs[FAIL_ATTR]
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert complete == 6 and records[0].state == TrialState.FAIL  # the budget counts COMPLETE trials
    assert len(records) == len(study.trials) == complete + sum(t.state == TrialState.FAIL for t in study.trials)
    assert any(t.state == TrialState.COMPLETE for t in study.trials[1:])


def test_trial_of_a_dead_worker_is_failed_and_retried():
    study = new_study("random")
    study.enqueue_trial(encode(Schedule.deepcache(ENC.n_calls, 2, 0), ENC), user_attrs={"anchor": "deepcache-N2-b0"})
    dead = study.ask()
    suggest(dead, ENC)
    dead.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:999999999:1")  # a process that no longer exists
    alive = study.ask()
    alive.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}")
    elsewhere = study.ask()
    elsewhere.set_user_attr(WORKER_ATTR, "another-host:1:1")
    assert sweep_stale(study) == [0]
    assert sweep_stale(study, stale_after=3600) == []  # the other host's trial is young
    assert sweep_stale(study, stale_after=0) == [2]
    run_until(study, FakeEvaluator(), ENC, 2)
    retry = next(t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0)
    assert study.trials[0].state == TrialState.FAIL and study.trials[1].state == TrialState.RUNNING
    assert retry.params == study.trials[0].params and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["anchor"] == "deepcache-N2-b0"


SAMPLER_CLASSES = {"nsga2": optuna.samplers.NSGAIISampler, "nsga3": optuna.samplers.NSGAIIISampler,
                   "tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
                   "random": optuna.samplers.RandomSampler}


@pytest.mark.parametrize("sampler", ["nsga3", "tpe", "gp"])
def test_other_samplers_run(sampler, monkeypatch):
    """The sampler named is the one that picks every trial's parameters (not only that the trials complete)."""
    study = new_study(sampler)
    assert type(study.sampler) is SAMPLER_CLASSES[sampler]
    asked = []
    for method in ("sample_relative", "sample_independent"):
        real = getattr(study.sampler, method)
        monkeypatch.setattr(study.sampler, method, lambda *a, real=real, **k: (asked.append(a[1].number), real(*a, **k))[1])
    n = 5 if sampler != "gp" else 3
    run_until(study, FakeEvaluator(), ENC, n)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert set(asked) == {t.number for t in study.trials} and len(study.trials) == n


def test_the_study_configuration_picks_the_sampler():
    from datosearch.studies.study import sampler_for
    from test_workers import _config

    for name, cls in SAMPLER_CLASSES.items():
        assert type(make_sampler(name, population=4)) is cls, name
        config = _config()
        config.sampler = name
        assert type(sampler_for(config)) is cls, name


def test_hypervolume_2d_and_3d():
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume([(1, 3), (2, 2), (2, 2), (5, 0)], (4, 4)) == pytest.approx(5.0)
    assert hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    assert hypervolume([(0, 1, 1), (1, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(4.0)


def _trial(values, anchor=None, state=TrialState.COMPLETE, constraints=None):
    return optuna.trial.create_trial(state=state, values=values if state == TrialState.COMPLETE else None,
                                     user_attrs={"anchor": anchor} if anchor else {}, constraints=constraints)


def test_reference_point_is_the_worst_anchor_value_plus_ten_percent():
    mm = [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    trials = [_trial([2, 4], "a"), _trial([4, 2], "b"), _trial([9, 9]), _trial(None, "c", state=TrialState.FAIL)]
    assert reference_point(trials, mm) == pytest.approx((4.4, 4.4))  # the non-anchor (9, 9) does not count
    mx = [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]  # maximised values are negated first
    assert reference_point([_trial([2, 5], "a"), _trial([4, 1], "b")], mx) == pytest.approx((4.4, -0.9))
    assert reference_point([_trial([2, 5]), _trial([-4, 1])], mm) == pytest.approx((2.2, 5.5))  # no anchors: all
    assert reference_point([_trial([-2, -4], "a")], mm) == pytest.approx((-1.8, -3.6))  # + 10 % of |worst|
    assert reference_point([], mm) == (1.0, 1.0)


def test_study_hypervolume_by_hand():
    study = new_study("random")
    study.add_trials([_trial([2, 4], "a"), _trial([4, 2], "b"), _trial([1, 3]),
                      _trial([0.1, 0.1], constraints={"c": 1.0}),  # infeasible: not counted
                      _trial(None, state=TrialState.FAIL)])
    ref = reference_point(study.trials, study.directions)
    assert ref == pytest.approx((4.4, 4.4))
    # front {(1, 3), (4, 2)}: (4.4 - 1) * (4.4 - 3) + (4.4 - 4) * (3 - 2) = 4.76 + 0.4
    assert study_hypervolume(study) == pytest.approx(5.16)
    study.add_trial(_trial([0.5, 0.5]))  # dominates the whole front
    assert study_hypervolume(study, ref) == pytest.approx(3.9 * 3.9)


def test_study_hypervolume_grows_with_the_front():
    study = new_study("random")
    enqueue_anchors(study, anchor_schedules(UNET, ENC.n_calls), ENC)
    run_until(study, FakeEvaluator(), ENC, 5)
    ref = reference_point(study.trials, study.directions)
    points = [tuple(t.values) for t in study.trials if t.state == TrialState.COMPLETE]
    assert study_hypervolume(study, ref) == pytest.approx(hypervolume(points, ref))
    assert hypervolume(points, ref) > 0


def test_oom_and_nan_candidates_fail_and_the_study_goes_on():
    n3, n2 = Schedule.deepcache(ENC.n_calls, 3, 0), Schedule.deepcache(ENC.n_calls, 2, 0)

    def evaluate(schedule, real=FakeEvaluator().evaluate):
        if schedule.key() == n3.key():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if schedule.key() == n2.key():
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real(schedule)

    study = new_study("random")
    study.enqueue_trial(encode(n3, ENC))
    study.enqueue_trial(encode(n2, ENC))
    evaluator = FakeEvaluator()
    evaluator.evaluate = evaluate
    records = run_until(study, evaluator, ENC, 3)
    assert [r.state for r in records[:2]] == [TrialState.FAIL, TrialState.FAIL]
    assert "OutOfMemoryError" in records[0].fail_reason and "can't allocate" in study.trials[1].user_attrs[FAIL_ATTR]
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3


def test_internal_error_is_raised_not_searched_past():
    def broken(schedule):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x8)")

    study = new_study("random")
    evaluator = FakeEvaluator()
    evaluator.evaluate = broken
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_until(study, evaluator, ENC, 5)
    (trial,) = study.trials  # stopped at the first one; it is not left RUNNING
    assert trial.state == TrialState.FAIL and trial.user_attrs[FAIL_ATTR].startswith("internal error: RuntimeError")


def test_every_candidate_failing_raises_with_the_count_and_reason():
    study = new_study("random")
    study.enqueue_trial(encode(Schedule.deepcache(ENC.n_calls, 2, 0), ENC))
    with pytest.raises(SearchIncompleteError) as info:
        run_until(study, FakeEvaluator(fail_if=lambda s: True), ENC, 4)
    assert info.value.failed == info.value.trials == 10 == len(study.trials)
    message = str(info.value)
    assert "10 failed trials in a row" in message and "holds 0 of 4 COMPLETE" in message
    assert "CandidateError: the generated images contain NaN" in message


def test_ctrl_c_fails_the_trial_and_queues_it_again():
    def interrupt(schedule):
        raise KeyboardInterrupt

    study = new_study("random")
    evaluator = FakeEvaluator()
    evaluator.evaluate = interrupt
    with pytest.raises(KeyboardInterrupt):
        run_until(study, evaluator, ENC, 3)
    first, retry = study.trials
    assert first.state == TrialState.FAIL and first.user_attrs[FAIL_ATTR] == "interrupted"
    assert retry.state == TrialState.WAITING and retry.user_attrs["retry_of"] == 0
    run_until(study, FakeEvaluator(), ENC, 2)
    assert study.trials[1].params == first.params


def test_deadline_starts_no_trial_once_the_time_is_spent(monkeypatch):
    """`run_until(deadline=...)` as `study.optimize(timeout=...)`: the clock starts with the first trial (not with
    `prepare`), a trial that starts in time finishes and is told, none starts after; the target still stops it."""
    from datosearch.search import runner

    now = [1000.0]
    monkeypatch.setattr(runner, "clock", lambda: now[0])

    def ten_seconds(record):  # every trial takes 10 s of the fake clock, evaluated or deduplicated
        now[0] += 10.0

    class SlowPrepare(FakeEvaluator):
        def prepare(self):  # e.g. the baseline latency: not part of the budget
            now[0] += 100.0

    study = new_study("random")
    deadline = runner.Deadline(35.0)
    records = run_until(study, SlowPrepare(), ENC, 1000, on_trial=ten_seconds, deadline=deadline)
    # trials start at 0, 10, 20 and 30 s; the fourth ends at 40 s, past the 35 s, and is told; none starts at 40 s
    assert len(records) == 4 and deadline.spent
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    ample = runner.Deadline(3600.0)  # the target comes first
    assert len(run_until(study, FakeEvaluator(), ENC, 6, on_trial=ten_seconds, deadline=ample)) == 2
    assert not ample.spent


def test_a_run_without_a_trial_target_still_gives_up_after_100_failures_in_a_row():
    """`--budget` alone sets no trial target (`MAX_TRIALS`): a configuration where every trial fails stops after
    100 failures in a row (exit 3 in the CLI), not after 100,000."""
    study = new_study("random")
    with pytest.raises(SearchIncompleteError) as info:
        run_until(study, FakeEvaluator(fail_if=lambda s: True), ENC, 100_000)
    assert "stopped after 100 failed trials in a row" in str(info.value) and len(study.trials) == 100
