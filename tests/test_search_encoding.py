"""Encodings: genes ↔ schedules, anchors round-trip, constraints through `Trial.set_constraint`."""

from dataclasses import replace

import optuna
import pytest
from hypothesis import given, settings, strategies as st

from datosearch.models.tiny import tiny_unet
from datosearch.search.anchors import anchor_schedules
from datosearch.space.encoding import (EncodingConfig, constraint_values, decode, distributions, encode,
                                       longest_nonfull_run, suggest)
from datosearch.space.layout import transformer_blocks
from datosearch.space.schedule import FULL, REUSE, Schedule

UNET = tiny_unet()
BLOCKS = [b.path for b in transformer_blocks(UNET)]


def config(**kw) -> EncodingConfig:
    return EncodingConfig(**{"n_calls": 11, "blocks": BLOCKS, "branches": [0, 1, 2], **kw})


@pytest.mark.parametrize("kind", ["calls", "intervals"])
def test_anchors_round_trip(kind):
    cfg = config(kind=kind)
    expressed = []
    for anchor in anchor_schedules(UNET, cfg.n_calls):
        params = encode(anchor, cfg)
        if params is not None:
            expressed.append(anchor.meta["name"])
            assert decode(params, cfg).key() == anchor.key()
            assert set(params) == set(distributions(cfg))
    # the intervals genome cannot mix reuse and shallow calls, nor segments longer than max_interval (6)
    missing = {"calls": set(), "intervals": {"deepcache-N7-b0", "deepcache-N8-b0", "deepcache-N9-b0", "deepcache-N10-b0",
                                          "dato-coco-r0.4-resampled"}}
    assert {a.meta["name"] for a in anchor_schedules(UNET, cfg.n_calls)} - set(expressed) == missing[kind]


def test_dato_coco_51_calls_is_an_anchor():
    names = [s.meta["name"] for s in anchor_schedules(UNET, 51)]
    assert names == ["full"] + [f"deepcache-N{n}-b0" for n in range(2, 11)] + [
        "deepcache-nonuniform-N5-b0", "deepcache-nonuniform-N8-b0", "dato-coco-r0.4", "ratio-0.3", "ratio-0.5"]
    coco = anchor_schedules(UNET, 51)[names.index("dato-coco-r0.4")]
    assert encode(coco, config(n_calls=51)) is not None


def test_intervals_decode_lays_segments():
    cfg = config(kind="intervals", n_calls=7)
    params = {name: dist.choices[0] for name, dist in distributions(cfg).items()}
    params.update(seg0=3, act0="reuse", seg1=6, act1="b1")
    assert decode(params, cfg).cache == [FULL, REUSE, REUSE, FULL, 1, 1, 1]


def test_unexpressible_schedules_are_refused():
    cfg = config(branches=[0], allow_reuse=False)
    assert encode(Schedule([FULL, REUSE] + [FULL] * 9), cfg) is None
    assert encode(Schedule.full(10), cfg) is None  # wrong number of calls
    assert encode(Schedule.constant_ratio(11, BLOCKS[:1], 0.33), cfg) is None  # not a ratio step


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_genome_decodes_to_a_valid_schedule(data):
    kind = data.draw(st.sampled_from(["calls", "intervals"]))
    cfg = config(kind=kind, call_scale=data.draw(st.booleans()))
    params = {name: data.draw(st.sampled_from(dist.choices)) for name, dist in distributions(cfg).items()}
    schedule = decode(params, cfg)
    schedule.validate_for(UNET)
    assert schedule.n_calls == cfg.n_calls and schedule.cache[0] == FULL
    again = encode(schedule, cfg)
    if again is not None:
        assert decode(again, cfg).key() == schedule.key()


def test_constraints_are_reported_to_optuna():
    cfg = config(max_nonfull_run=2, min_full=3)
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.enqueue_trial(encode(Schedule.deepcache(11, 5, 0), cfg))
    trial = study.ask()
    schedule = suggest(trial, cfg)
    study.tell(trial, [0.0, 0.0])
    frozen = study.trials[0]
    assert longest_nonfull_run(schedule.cache) == 4
    assert frozen.constraints == {"min_full": 0.0, "max_nonfull_run": 2.0}
    assert study.best_trials == []  # infeasible trials are never Pareto-optimal


def test_constraint_values_feasible_full():
    assert all(v <= 0 for v in constraint_values(Schedule.full(11), config(max_nonfull_run=0, min_full=11)).values())


def test_encoding_config_is_json_round_trippable():
    cfg = config(kind="intervals", call_scale=True)
    assert EncodingConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="kind"):
        replace(cfg, kind="segments")
