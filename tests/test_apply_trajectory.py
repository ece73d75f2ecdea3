"""A schedule carries its whole base trajectory and `datosearch.apply` runs it (issue 29).

The README's Python example, run as written on a schedule of the default study's kind (UniPC 8 steps,
5 full calls, order-2 forecast reuse, on the embedded model), makes the same U-Net calls as
`datosearch apply` and as the held-out check on the same seeds, with bit-identical images;
`remove()` gives the pipeline its own scheduler object back.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

import datosearch
from datosearch import cli, models
from datosearch.search.evaluator import Evaluator
from datosearch.space import io
from datosearch.space.schedule import FULL, REUSE, Forecast, Schedule
from datosearch.space.trajectory import Trajectory, warp_timesteps
from datosearch.studies import apply as cli_apply
from datosearch.studies.heldout import count_calls
from datosearch.studies.protocol import HeldoutProtocol

N_IMAGES = 4
UNIPC_8 = Trajectory("UniPCMultistepScheduler", 8)


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield models.load("embedded")
    torch.set_num_threads(threads)


def default_study_schedule(trajectory: Trajectory = UNIPC_8) -> Schedule:
    """What the default study exports at 5 full calls: UniPC 8 steps, full at 0 2 4 6 7, forecast reuse between
    (on another 8-step `trajectory` if given)."""
    full = {0, 2, 4, 6, 7}
    cache = [FULL if t in full else REUSE for t in range(8)]
    forecast = {t: Forecast(2) for t in range(8) if t not in full}
    return Schedule(cache, meta={"model": "embedded", "guidance": 1.5, "name": "unipc-8-f5"}, forecast=forecast,
                    trajectory=trajectory)


# DPM-Solver++ 2M at 8 timesteps bent toward low noise, as the timestep genes place them (issue 30)
WARPED_8 = Trajectory("DPMSolverMultistepScheduler", 8, timesteps=warp_timesteps(8, 0.9, 1.7, 1000))


@pytest.mark.parametrize("trajectory", [UNIPC_8, WARPED_8], ids=["unipc-8", "dpmpp-8-explicit-timesteps"])
def test_readme_example_equals_cli_apply_and_the_heldout_check(trajectory, pipe, tmp_path, monkeypatch):
    path = tmp_path / "schedule.json"
    io.save(default_study_schedule(trajectory), path)
    protocol = HeldoutProtocol(N_IMAGES)
    original, config = pipe.scheduler, dict(pipe.scheduler.config)

    # README, as written (seeds of the held-out protocol: one generator per image)
    handle = datosearch.apply(pipe, str(path))
    assert type(pipe.scheduler).__name__ == trajectory.scheduler
    assert handle.call_kwargs == trajectory.call_kwargs() and handle.call_kwargs["num_inference_steps"] == 8
    assert ("timesteps" in handle.call_kwargs) == (trajectory is WARPED_8)
    gens = [torch.Generator().manual_seed(s) for s in protocol.seeds]
    with count_calls(pipe.unet) as readme_calls:
        readme = pipe(protocol.prompts, generator=gens, output_type="pt", **handle.call_kwargs).images
    handle.remove()
    assert pipe.scheduler is original and dict(pipe.scheduler.config) == config
    assert readme_calls == {"unet": 8, "computed": 5}  # one batch of N_IMAGES: 8 U-Net calls, 5 of them computed

    # the CLI on the same seeds (its pipeline is this one, to count its calls)
    monkeypatch.setattr(cli_apply, "load_pipeline", lambda *a, **k: (pipe, "embedded"))
    argv = ["apply", "--schedule", str(path), "--seed", str(protocol.seeds[0]), "--out", str(tmp_path / "img"),
            "--device", "cpu"] + [a for p in protocol.prompts for a in ("--prompt", p)]
    with count_calls(pipe.unet) as cli_calls:
        assert cli.main(argv) == 0
    assert cli_calls == readme_calls and pipe.scheduler is original
    pngs = [np.asarray(Image.open(tmp_path / "img" / f"image_{i:03d}.png")) for i in range(N_IMAGES)]
    readme_png = (readme.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    assert all(np.array_equal(a, b[..., 0] if a.ndim == 2 else b) for a, b in zip(pngs, readme_png))

    # the held-out check's images of the same seeds (Evaluator.images, as score_heldout runs them)
    ev = Evaluator(pipe, protocol.calibration(pipe), [], reference=readme, fid=lambda _: 0.0,
                   measure_latency=lambda _: 0.0)
    with count_calls(pipe.unet) as heldout_calls:
        heldout = ev.images(io.load(path))
    assert heldout_calls == readme_calls and torch.equal(heldout, readme) and pipe.scheduler is original


def test_pipeline_trajectory_keeps_the_users_scheduler_and_logs_the_mapping(pipe, caplog):
    original = pipe.scheduler
    handle = datosearch.apply(pipe, default_study_schedule(), trajectory="pipeline")
    assert pipe.scheduler is original
    with caplog.at_level(logging.WARNING, "datosearch"), count_calls(pipe.unet) as calls:
        pipe(["a handwritten digit 1"], num_inference_steps=20, generator=torch.Generator().manual_seed(0),
             output_type="pt")
    handle.remove()
    (line,) = [r.getMessage() for r in caplog.records if "mapped by" in r.getMessage()]
    assert line.startswith("the schedule was searched for UniPC 8 steps (8 U-Net calls, 5 full); "
                           "PNDMScheduler at 20 steps makes 21: mapped by noise level to 13 full calls of 21")
    assert calls == {"unet": 21, "computed": 13}


def test_a_scheduler_set_after_apply_is_the_users_to_keep(pipe):
    original = pipe.scheduler
    handle = datosearch.apply(pipe, default_study_schedule())
    mine = type(original).from_config(original.config)
    pipe.scheduler = mine
    handle.remove()
    assert pipe.scheduler is mine
    pipe.scheduler = original


def test_explicit_timesteps_run_through_the_pipeline_call(pipe):
    timesteps = [850, 582, 357, 180, 56]
    schedule = Schedule([FULL] * 5, trajectory=Trajectory("DPMSolverMultistepScheduler", 5, timesteps=timesteps))
    handle = datosearch.apply(pipe, schedule, strict=True)
    assert handle.call_kwargs == {"num_inference_steps": 5, "timesteps": timesteps}
    pipe(["a handwritten digit 2"], generator=torch.Generator().manual_seed(0), output_type="pt", **handle.call_kwargs)
    assert pipe.scheduler.timesteps.tolist() == timesteps
    handle.remove()


@pytest.mark.parametrize("batch", [1, 8])
def test_a_heldout_seed_gives_the_same_image_at_any_batch_size(pipe, batch):
    """One generator per image: batch sizes 1, 8 and 40 give the same images (up to float rounding of
    batched kernels, 1e-5; another seed differs by ~1)."""
    protocol, trajectory = HeldoutProtocol(40), Trajectory("PNDMScheduler", 4)
    whole = protocol.generate(pipe, trajectory, batch_size=40)
    split = protocol.generate(pipe, trajectory, batch_size=batch)
    assert (whole - split).abs().max() < 1e-5
    other = HeldoutProtocol(40, seed0=1).generate(pipe, trajectory, batch_size=40)
    assert (whole - other).abs().amax(dim=(1, 2, 3)).min() > 0.1
