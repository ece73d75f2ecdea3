"""The ask/tell loop: anchors first, dedup by schedule key, failures become FAIL trials, hypervolume."""

import os
import socket

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

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


@pytest.mark.parametrize("sampler", ["nsga3", "tpe", "gp"])
def test_other_samplers_run(sampler):
    study = new_study(sampler)
    run_until(study, FakeEvaluator(), ENC, 5 if sampler != "gp" else 3)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_hypervolume_2d_and_3d():
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume([(1, 3), (2, 2), (2, 2), (5, 0)], (4, 4)) == pytest.approx(5.0)
    assert hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    assert hypervolume([(0, 1, 1), (1, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(4.0)


def test_study_hypervolume_grows_with_the_front():
    study = new_study("random")
    enqueue_anchors(study, anchor_schedules(UNET, ENC.n_calls), ENC)
    run_until(study, FakeEvaluator(), ENC, 5)
    ref = reference_point(study.trials, study.directions)
    before = study_hypervolume(study, ref)
    run_until(study, FakeEvaluator(), ENC, 15)
    assert study_hypervolume(study, ref) >= before > 0


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
