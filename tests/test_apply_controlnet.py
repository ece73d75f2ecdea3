"""ControlNet (issue 14.4): supported. Its residuals are added by the U-Net to the skip connections and
the mid block output; on a shallow call the computed outer blocks get this call's residuals, while the
residuals of the skipped blocks are carried by the cached deep features (those of the last full call).
Reuse calls run no U-Net (the ControlNet itself still runs: the pipeline calls it)."""

from __future__ import annotations

import pytest
import torch
from apply_helpers import torch_one_thread  # noqa: F401 - a fixture

import datosearch
from datosearch.models.tiny import tiny_controlnet, tiny_sd_pipeline, tiny_unet, tiny_variant
from datosearch.space import Schedule

pytestmark = pytest.mark.usefixtures("torch_one_thread")
CONTROL = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def cn():
    return tiny_variant("controlnet")


def _cn(pipe, scale: float = 1.0) -> torch.Tensor:
    return pipe(["a cat"], image=CONTROL, num_inference_steps=10, controlnet_conditioning_scale=scale,
                generator=torch.Generator().manual_seed(0), output_type="latent").images


def _sd(pipe) -> torch.Tensor:
    return pipe(["a cat"], num_inference_steps=10, generator=torch.Generator().manual_seed(0),
                output_type="latent").images


def test_full_plan_is_bit_identical_to_full_compute_and_remove_restores(cn):
    full = _cn(cn)
    handle = datosearch.apply(cn, Schedule.full(10))
    assert torch.equal(_cn(cn), full)
    handle.remove()
    assert torch.equal(_cn(cn), full)


def test_zero_residuals_give_exactly_the_plain_pipeline_under_the_same_plan(cn):
    sd = tiny_sd_pipeline(scheduler="ddim")  # the same weights without a ControlNet
    plan = Schedule(["full", 0, 1, "reuse", 2, "full", 0, 0, "reuse", 3]).with_forecast(1)
    results = []
    for pipe, run in ((cn, lambda: _cn(cn, 0.0)), (sd, lambda: _sd(sd))):
        handle = datosearch.apply(pipe, plan)
        results.append(run())
        handle.remove()
    assert torch.equal(*results)


def test_the_controlnet_effect_survives_caching(cn):
    full, plain = _cn(cn), _cn(cn, 0.0)
    handle = datosearch.apply(cn, Schedule.deepcache(10, 3))
    cached = _cn(cn)
    handle.remove()
    effect = (full - plain).abs().mean()
    assert effect > 0.05 * plain.abs().mean()  # the ControlNet changes the result
    assert (cached - full).abs().mean() < 0.5 * effect  # closer to ControlNet's full compute than to no ControlNet


def test_shallow_calls_use_this_calls_outer_residuals_and_the_cached_deep_ones():
    unet = tiny_unet()
    x, ctx = torch.randn(1, 4, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        down, mid = tiny_controlnet(unet)(x, 900, encoder_hidden_states=ctx, controlnet_cond=CONTROL,
                                          return_dict=False)

        def residuals(deep_seed: int, outer_seed: int) -> dict:
            deep, outer = torch.Generator().manual_seed(deep_seed), torch.Generator().manual_seed(outer_seed)
            return {"down_block_additional_residuals": [torch.randn(r.shape, generator=outer if i == 0 else deep)
                                                        for i, r in enumerate(down)],
                    "mid_block_additional_residual": torch.randn(mid.shape, generator=deep)}

        outs = {}
        for name, deep_seed, outer_seed in (("a", 1, 7), ("deep changed", 2, 7), ("outer changed", 1, 8)):
            handle = datosearch.apply(unet, Schedule(["full", 0]))  # branch 0: only conv_in's skip is computed
            unet(x, 900, encoder_hidden_states=ctx, **residuals(0, 0))
            outs[name] = unet(x, 800, encoder_hidden_states=ctx, **residuals(deep_seed, outer_seed)).sample
            handle.remove()
    assert torch.equal(outs["a"], outs["deep changed"])  # the skipped blocks' residuals come with the cache
    assert not torch.equal(outs["a"], outs["outer changed"])  # the computed block's residual is this call's
