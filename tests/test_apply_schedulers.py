"""A schedule made for one scheduler and step count runs on others, mapped by normalized time (issue 14.1).

The plan is DaTo's published one (51 calls: PLMS at 50 steps, 5 full, forecasting); the calls that
really ran are counted by torch hooks and must be the mapped plan, call by call.
"""

from __future__ import annotations

import logging

import pytest
import torch
from apply_helpers import kind, recorded_calls, torch_one_thread  # noqa: F401 - a fixture
from conftest import generate

import datosearch
from datosearch import cli
from datosearch.space.trajectory import make_scheduler
from datosearch.models.tiny import tiny_sd_pipeline
from datosearch.space import Schedule, ScheduleError
from datosearch.space.retime import full_count, to_calls

SCHEDULERS = ["ddim", "pndm-plms", "euler", "euler-ancestral", "dpmpp-2m"]
STEPS = [10, 20, 25, 30, 50]
SOURCE = Schedule.dato_coco(ratio=0).with_forecast(2, 0.5)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline(sample_size=8)


def _mapping_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "mapped by normalized time" in r.getMessage()]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_plan_maps_to_every_step_count_and_the_full_calls_run_are_the_mapped_ones(pipe, name, caplog):
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(name, original.config)
    handle = datosearch.apply(pipe, SOURCE)
    try:
        for steps in STEPS:
            caplog.clear()
            with caplog.at_level(logging.WARNING, "datosearch"), recorded_calls(pipe.unet) as calls:
                out = generate(pipe, steps=steps, prompts=("a cat",), guidance_scale=1.0)
            m = len(pipe.scheduler.timesteps)
            assert calls == [kind(a) for a in to_calls(SOURCE, m).cache], (name, steps)
            assert calls.count("full") == full_count(5, 51, m)
            assert len(_mapping_lines(caplog)) == (m != 51)  # one line, once per call count
            assert torch.isfinite(out).all()
    finally:
        handle.remove()
        pipe.scheduler = original


def test_the_mapping_is_logged_once_per_call_count(pipe, caplog):
    handle = datosearch.apply(pipe, SOURCE)
    with caplog.at_level(logging.WARNING, "datosearch"):
        for _ in range(2):
            generate(pipe, steps=4, prompts=("a cat",), guidance_scale=1.0)
    handle.remove()
    (line,) = _mapping_lines(caplog)
    assert line == ("the schedule plans 51 U-Net calls (5 full); PNDMScheduler at 4 steps makes 5: mapped by "
                    "normalized time to 1 full calls of 5 (strict=True or --strict refuses instead)")


def test_strict_refuses_another_call_count_and_accepts_its_own(pipe):
    handle = datosearch.apply(pipe, SOURCE, strict=True)
    try:
        with pytest.raises(ScheduleError, match="plans 51 U-Net calls but PNDMScheduler will make 21"):
            generate(pipe, steps=20, prompts=("a cat",), guidance_scale=1.0)
        assert not handle.context.holds_cache()
        with recorded_calls(pipe.unet) as calls:
            generate(pipe, steps=50, prompts=("a cat",), guidance_scale=1.0)
        assert calls == [kind(a) for a in SOURCE.cache]
    finally:
        handle.remove()


def test_a_scheduler_swapped_in_after_apply_is_followed(pipe):
    handle = datosearch.apply(pipe, Schedule.deepcache(50, 5))
    original = pipe.scheduler
    pipe.scheduler = make_scheduler("ddim", original.config)
    try:
        with recorded_calls(pipe.unet) as calls:
            generate(pipe, steps=20, prompts=("a cat",), guidance_scale=1.0)
    finally:
        handle.remove()
        pipe.scheduler = original
    assert calls == [kind(a) for a in Schedule.deepcache(20, 5).cache]


def test_cli_maps_other_steps_and_strict_refuses_them(tmp_path, capsys, caplog):
    from datosearch.space import io

    io.save(Schedule.deepcache(5, 2, model="tiny", steps=4, guidance=1.0), tmp_path / "s.json")  # PNDM: 5 calls
    argv = ["apply", "--schedule", str(tmp_path / "s.json"), "--prompt", "x", "--steps", "6"]
    assert cli.main([*argv, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("datosearch: error: the schedule plans 5 U-Net calls but PNDMScheduler will make 7")
    assert err.count("\n") == 1 and not (tmp_path / "strict").exists()
    with caplog.at_level(logging.WARNING, "datosearch"):
        assert cli.main([*argv, "--out", str(tmp_path / "mapped")]) == 0
    assert [line.endswith("mapped by normalized time to 4 full calls of 7 (strict=True or --strict refuses instead)")
            for line in _mapping_lines(caplog)] == [True]
    assert len(list((tmp_path / "mapped").glob("*.png"))) == 1
