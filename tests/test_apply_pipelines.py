"""Schedules on other Stable Diffusion pipelines (issue 14.2, 14.3): img2img and inpainting at strength < 1
enter the trajectory late and run the plan from the call their first timestep lies at, starting with a
full call and empty caches; SDXL runs end to end. Calls are counted by torch hooks."""

from __future__ import annotations

import pytest
import torch
from apply_helpers import kind, recorded_calls, torch_one_thread  # noqa: F401 - a fixture
from diffusers import StableDiffusionInpaintPipeline

import datosearch
from datosearch.space.trajectory import make_scheduler
from datosearch.models.tiny import tiny_sdxl_pipeline, tiny_variant
from datosearch.space import PruneConfig, Schedule, highest_resolution_blocks
from datosearch.space.retime import from_call, to_calls

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SOURCE = Schedule(["full", 0, "reuse", 1] * 5).with_forecast(1)  # 20 calls (DDIM, 20 steps), 5 full
IMAGE = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
MASK = torch.zeros(1, 1, 32, 32)
MASK[..., 8:24, 8:24] = 1


@pytest.fixture(scope="module")
def pipes():
    return {"img2img": tiny_variant("img2img"), "inpaint": tiny_variant("inpaint")}


def _run(pipe, steps: int, strength: float, **kw) -> torch.Tensor:
    extra = {"mask_image": MASK} if isinstance(pipe, StableDiffusionInpaintPipeline) else {}
    return pipe(["a cat"], image=IMAGE, strength=strength, num_inference_steps=steps, guidance_scale=1.0,
                generator=torch.Generator().manual_seed(0), output_type="latent", **extra, **kw).images


@pytest.mark.parametrize("variant", ["img2img", "inpaint"])
@pytest.mark.parametrize("scheduler, steps, strength", [
    ("ddim", 20, 0.6), ("ddim", 25, 0.5), ("pndm-plms", 20, 0.6), ("euler", 30, 0.35), ("dpmpp-2m", 20, 1.0)])
def test_late_entry_runs_the_plan_from_its_timestep_with_a_full_first_call(pipes, variant, scheduler, steps, strength):
    pipe = pipes[variant]
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(scheduler, original.config)
    handle = datosearch.apply(pipe, SOURCE)
    empty_at_entry = []
    probe = pipe.unet.register_forward_pre_hook(lambda *_: empty_at_entry.append(not handle.context.holds_cache()))
    try:
        _run(pipe, steps, 1.0)  # a whole trajectory first: its caches must not reach the next run
        empty_at_entry.clear()
        with recorded_calls(pipe.unet) as calls:
            out = _run(pipe, steps, strength)
        trajectory = [float(t) for t in pipe.scheduler.timesteps]
    finally:
        probe.remove()
        handle.remove()
        pipe.scheduler = original
    start = len(trajectory) - len(calls)  # the run is the trajectory's tail
    assert start == steps - int(steps * strength)  # diffusers' img2img: t_start (PLMS too: one call per entry)
    assert calls == [kind(a) for a in from_call(to_calls(SOURCE, len(trajectory)), start).cache]
    assert calls[0] == "full" and empty_at_entry[0]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", ["img2img", "inpaint"])
def test_full_plan_is_bit_identical_and_remove_restores(pipes, variant):
    pipe = pipes[variant]
    before = _run(pipe, 10, 0.6)
    handle = datosearch.apply(pipe, Schedule.full(10))
    assert torch.equal(_run(pipe, 10, 0.6), before)
    handle.remove()
    assert torch.equal(_run(pipe, 10, 0.6), before)


def test_another_pipeline_sharing_the_unet_is_refused_until_applied_to(pipes):
    pipe = pipes["img2img"]
    sharing = type(pipe)(**pipe.components)  # diffusers' "reuse the components" pattern
    handle = datosearch.apply(pipe, SOURCE)
    try:
        with pytest.raises(datosearch.ScheduleError, match="outside the denoising loop of the "
                                                           "StableDiffusionImg2ImgPipeline"):
            _run(sharing, 20, 0.6)
        assert not handle.context.holds_cache()
        datosearch.apply(sharing, SOURCE)  # replaces the schedule on the shared U-Net
        assert torch.equal(_run(sharing, 20, 0.6), _run(sharing, 20, 0.6))
    finally:
        datosearch.remove(pipe)


def test_a_late_entry_after_a_full_generation_starts_from_empty_caches(pipes):
    pipe = pipes["img2img"]
    handle = datosearch.apply(pipe, SOURCE)
    try:
        fresh = _run(pipe, 20, 0.6)
        _run(pipe, 20, 1.0)  # a whole trajectory first
        assert torch.equal(_run(pipe, 20, 0.6), fresh)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl_pipeline()


def _sdxl(pipe, steps: int = 10, **kw) -> torch.Tensor:
    return pipe(["a cat"], num_inference_steps=steps, guidance_scale=5.0, generator=torch.Generator().manual_seed(0),
                output_type="latent", **kw).images


def test_sdxl_end_to_end(sdxl):
    full = _sdxl(sdxl)
    top = highest_resolution_blocks(sdxl.unet)
    assert len(top) == 10 and all(b.split(".")[:2] in (["down_blocks", "1"], ["up_blocks", "0"]) for b in top)
    handle = datosearch.apply(sdxl, Schedule.full(10))
    assert torch.equal(_sdxl(sdxl), full)  # extra time embeddings and both text encoders pass through
    handle.remove()
    sched = Schedule(["full", 0, "reuse", 2, 0] * 4, PruneConfig(ratios={b: 0.5 for b in top})).with_forecast(2)
    handle = datosearch.apply(sdxl, sched)  # 20 calls, run at 10 steps: mapped
    with recorded_calls(sdxl.unet) as calls:
        out = _sdxl(sdxl)
    pruned = handle.pruning.attrs()
    handle.remove()
    assert calls == [kind(a) for a in to_calls(sched, 10).cache]
    assert pruned["pruned_calls"] > 0 and pruned["pruning_skipped_calls"] == 0
    assert torch.isfinite(out).all() and not torch.equal(out, full)
    assert (out - full).abs().mean() < full.abs().mean()
    assert torch.equal(_sdxl(sdxl), full)


def test_blocks_and_branches_the_unet_lacks_are_refused_naming_them(sdxl, tmp_path, capsys):
    from datosearch import cli
    from datosearch.space import io
    from datosearch.space.schedule import SD15_TOP_BLOCKS

    sd15 = Schedule.constant_ratio(10, SD15_TOP_BLOCKS, 0.4)  # SDXL has no attention at its top level
    with pytest.raises(datosearch.ScheduleError, match="unknown transformer block 'down_blocks.0.attentions.0"):
        datosearch.apply(sdxl, sd15)
    with pytest.raises(datosearch.ScheduleError, match=r"cache\[1\]': branch 6 does not exist in this U-Net"):
        datosearch.apply(sdxl, Schedule(["full", 6]))  # two levels: branches 0..5
    assert not hasattr(sdxl.unet, "_diffusers_hook")
    io.save(Schedule(["full", 9]).with_meta(model="tiny", steps=1), tmp_path / "s.json")  # tiny: branches 0..8
    assert cli.main(["apply", "--schedule", str(tmp_path / "s.json"), "--prompt", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("datosearch: error: ") and "branch 9 does not exist" in err and err.count("\n") == 1
