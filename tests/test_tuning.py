"""Tuned-timestep anchors (issue 30, studies.tuning): tuned, best-config and AYS anchors of UniPC / DPM-Solver++."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import datosearch
from datosearch.objectives import paired_metrics
from datosearch.search.evaluator import generate
from datosearch.space.trajectory import WARP_POWER, WARP_START, Trajectory, swapped, timesteps_to_sigmas, warp_timesteps
from datosearch.studies import tuning
from datosearch.studies.build import calibration
from datosearch.studies.resolve import resolve
from search_helpers import embedded_study, reference_images

SOLVERS = ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler")


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 50), st.floats(*WARP_START), st.floats(*WARP_POWER))
def test_warp_timesteps_are_strictly_decreasing_ints_in_range(steps, start, power):
    ts = warp_timesteps(steps, start, power)
    assert len(ts) == steps and all(isinstance(t, int) for t in ts)
    assert all(1 <= t <= 999 for t in ts) and all(a > b for a, b in zip(ts, ts[1:]))


def _psnr(pipe, config, reference, traj):
    with swapped(pipe, traj):
        return paired_metrics(generate(pipe, calibration(config), trajectory=traj), reference)["psnr"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    pipe, config, reference = embedded_study()
    cache = tmp_path_factory.mktemp("tuning")
    anchors = tuning.tuned_anchors(pipe, config, reference, cache, steps=(4,), solvers=SOLVERS)
    return pipe, config, reference, cache, anchors


def test_tuned_timesteps_are_decreasing_in_range_and_no_worse_than_default(embedded):
    pipe, config, reference, _, anchors = embedded
    tuned = {a.trajectory.scheduler: a for a in anchors if a.meta["name"].endswith("-tuned")}
    assert "DPMSolverMultistepScheduler" in tuned
    if tuning.explicit_kind("UniPCMultistepScheduler", pipe.scheduler.config) is None:
        assert "UniPCMultistepScheduler" not in tuned  # diffusers 0.42: UniPC takes sigmas only with flow sigmas
    for solver, schedule in tuned.items():
        traj = schedule.trajectory
        ts = traj.timesteps or tuning.strictly_decreasing(
            np.interp(np.log(traj.sigmas), np.log(timesteps_to_sigmas(range(1000), pipe.scheduler.config)),
                      np.arange(1000)), 999)
        assert len(ts) == 4 and all(1 <= t <= 999 for t in ts) and all(a > b for a, b in zip(ts, ts[1:]))
        assert _psnr(pipe, config, reference, traj) >= _psnr(pipe, config, reference, Trajectory(solver, 4))
    labels = {a.meta["name"]: a.meta["label"] for a in anchors}
    assert labels["dpmpp2m-4-tuned"] == "DPM-Solver++ 4, tuned"
    assert all(not name.endswith("-ays") for name in labels)  # linear betas: AYS's SD tables do not transfer
    for name, label in labels.items():
        assert name.split("-")[0] in ("unipc", "dpmpp2m") and label.split(",")[0] in ("UniPC 4", "DPM-Solver++ 4")


def test_explicit_own_timesteps_reproduce_the_default(embedded):
    """The descent starts from the default's own timesteps; passed explicitly they give the same images."""
    pipe, config, reference, _, _ = embedded
    cfg = pipe.scheduler.config
    own = tuning.own_timesteps("DPMSolverMultistepScheduler", 4, cfg)
    explicit = tuning.explicit("DPMSolverMultistepScheduler", "timesteps", own, cfg)
    assert _psnr(pipe, config, reference, explicit) == _psnr(pipe, config, reference,
                                                              Trajectory("DPMSolverMultistepScheduler", 4))


def test_cache_returns_the_same_anchors_without_generating(embedded, monkeypatch):
    pipe, config, reference, cache, anchors = embedded
    calls = []
    monkeypatch.setattr(tuning, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    lines = []
    again = tuning.tuned_anchors(pipe, config, reference, cache, steps=(4,), solvers=SOLVERS, log=lines.append)
    assert calls == [] and [a.to_dict() for a in again] == [a.to_dict() for a in anchors]
    assert "from" in lines[0]
    path = next(cache.glob("tuning-*.json"))
    assert '"cost"' in path.read_text()
    other = tuning.cache_path(cache, config, (5,), SOLVERS, 3, {s: None for s in SOLVERS})
    assert other != path  # keyed by the step counts (and solvers, images, calibration set)


def test_each_anchor_applies_strictly(embedded):
    pipe, config, _, _, anchors = embedded
    assert anchors
    for schedule in anchors:
        handle = datosearch.apply(pipe, schedule, strict=True)
        try:
            images = pipe(config.prompts[:1], generator=torch.Generator().manual_seed(0), output_type="pt",
                          **handle.call_kwargs).images
        finally:
            handle.remove()
        assert torch.isfinite(images).all() and handle.call_kwargs["num_inference_steps"] == 4


def test_ays_anchors_for_sd_noise_schedule(tmp_path, monkeypatch):
    from datosearch.models.tiny import tiny_sd_pipeline

    monkeypatch.setattr(tuning, "GRID", ((0.9, 1.5),))  # the tuned search is not what this test is about
    monkeypatch.setattr(tuning, "PASSES", ())
    monkeypatch.setattr(tuning, "OPTIONS", ({}, {"timestep_spacing": "trailing"}))
    pipe = tiny_sd_pipeline()
    assert tuning.uses_sd_noise(pipe.scheduler.config)
    config, pipe = resolve({"model": "tiny", "images": 1, "device": "cpu", "steps": 10}, pipe=pipe)
    lines = []
    anchors = tuning.tuned_anchors(pipe, config, reference_images(pipe, config), tmp_path, steps=(3,),
                                   solvers=("dpmpp2m",), log=lines.append)
    ays = [a for a in anchors if a.meta["name"] == "dpmpp2m-3-ays"]
    assert len(ays) == 1 and ays[0].meta["label"] == "DPM-Solver++ 3, AYS"
    assert ays[0].trajectory.timesteps == tuning.ays_timesteps(3, pipe.scheduler.config)
    assert any("U-Net calls" in line for line in lines)
    for schedule in anchors:
        handle = datosearch.apply(pipe, schedule, strict=True)
        try:
            pipe(["a cube"], generator=torch.Generator().manual_seed(0), output_type="latent", **handle.call_kwargs)
        finally:
            handle.remove()


def test_ays_interpolates_in_log_sigma():
    from diffusers.schedulers import AysSchedules

    from datosearch.models.tiny import tiny_sd_pipeline

    cfg = tiny_sd_pipeline().scheduler.config
    assert tuning.ays_timesteps(10, cfg) == tuple(AysSchedules["StableDiffusionTimesteps"])
    published = np.log(AysSchedules["StableDiffusionSigmas"][:-1])
    for steps in (5, 7):
        ts = tuning.ays_timesteps(steps, cfg)
        assert len(ts) == steps and ts[0] == 999 and all(a > b for a, b in zip(ts, ts[1:])) and ts[-1] >= 1
        # first and last noise levels are the table's; the ones between lie on its log-sigma curve
        want = np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, 10), published[::-1])[::-1]
        got = np.log(timesteps_to_sigmas(ts, cfg))
        assert np.allclose(got, want, atol=0.03)
    assert not tuning.uses_sd_noise({"beta_schedule": "linear", "num_train_timesteps": 1000,
                                     "beta_start": 0.0001, "beta_end": 0.02})
