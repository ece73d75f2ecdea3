"""The embedded default model: classifier accuracy, pipeline contract, adherence, caching trade-off.

Nothing here trains or downloads; everything uses the weights shipped in `datosearch/models/weights/`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import PNDMScheduler

from datosearch import dato, models
from datosearch.models import digits as dg
from datosearch.models.attention import EmbeddedAttnProcessor
from datosearch.models.embedded import EmbeddedDigitsPipeline
from datosearch.space import Schedule


@pytest.fixture(scope="module")
def pipe() -> EmbeddedDigitsPipeline:
    torch.set_num_threads(2)
    return models.load("embedded")


@pytest.fixture(scope="module")
def heldout():
    return dg.heldout_digits()


def _prompts(per_digit: int) -> tuple[list[str], list[int]]:
    labels = [d for d in range(10) for _ in range(per_digit)]
    return [dg.digit_prompt(d) for d in labels], labels


def _generate(pipe, prompts, steps: int, seed: int = 0) -> torch.Tensor:
    return pipe(prompts, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                output_type="pt").images


def test_weights_are_small_safetensors():
    files = [p for p in dg.WEIGHTS_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert len(weights) == 3  # classifier, U-Net, text encoder
    assert sum(p.stat().st_size for p in files) < 8 * 2**20


def test_training_record_has_disjoint_split():
    record = json.loads(dg.TRAINING_RECORD.read_text())
    train, held = set(record["split"]["train_indices"]), set(record["split"]["heldout_indices"])
    assert not train & held and len(train) + len(held) == 1797
    assert record["diffusion"]["steps_done"] == record["settings"]["steps"]


def test_classifier_heldout_accuracy(heldout):
    images, labels = heldout
    assert len(images) >= 300
    accuracy = (dg.classify_digits(images) == labels).float().mean().item()
    assert accuracy >= 0.95


def test_feature_module_contract(heldout):
    from torchmetrics.image.fid import FrechetInceptionDistance

    feat = dg.digit_features()
    assert isinstance(feat, torch.nn.Module) and feat.num_features <= 256
    images = heldout[0][:8]
    out = feat(images)
    assert out.shape == (8, feat.num_features)
    assert torch.allclose(feat(images.repeat(1, 3, 1, 1)), out, atol=1e-5)  # RGB is averaged to gray
    assert feat(torch.rand(2, 3, 64, 48)).shape == (2, feat.num_features)  # any size is resized to 32x32
    assert feat((images * 255).round().to(torch.uint8)).shape == out.shape
    fid = FrechetInceptionDistance(feature=dg.digit_features())
    fid.update(heldout[0][:100], real=True)
    fid.update(heldout[0][100:200], real=False)
    same = float(fid.compute())
    noise = dg.fid_proxy(torch.rand(100, 1, 32, 32), heldout[0][:100])
    assert 0 <= same < noise


def test_prompt_helpers():
    assert dg.digit_prompt(7) == "a handwritten digit 7"
    images, labels = dg.heldout_digits()
    assert dg.prompt_adherence(images, labels) >= 0.95  # real digits "adhere" to their own labels
    assert dg.prompt_adherence(images, (labels + 1) % 10) <= 0.05
    with pytest.raises(ValueError):
        dg.prompt_adherence(torch.zeros(2, 1, 32, 32), [1])


def test_pipeline_is_sd_shaped(pipe):
    assert isinstance(pipe.scheduler, PNDMScheduler) and pipe.scheduler.config.skip_prk_steps
    pipe.scheduler.set_timesteps(50)
    assert len(pipe.scheduler.timesteps) == 51
    assert pipe.unet.config.sample_size == 32 and pipe.do_classifier_free_guidance
    assert set(pipe.components) == {"unet", "text_encoder", "tokenizer", "scheduler"}
    tokens = []
    top = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    hook = top.register_forward_pre_hook(lambda m, a: tokens.append(a[0].shape[1]))
    try:
        pipe("a handwritten digit 1", num_inference_steps=1, output_type="pt")
    finally:
        hook.remove()
    assert set(tokens) == {1024}  # 1024 tokens at the top level
    levels = [b for b in pipe.unet.down_blocks if getattr(b, "has_cross_attention", False)]
    assert len(levels) >= 2 and any(getattr(b, "has_cross_attention", False) for b in pipe.unet.up_blocks)
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {EmbeddedAttnProcessor}


def test_output_shape_range_and_determinism(pipe):
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, a, k: calls.append(a[0].shape[0]), with_kwargs=True)
    try:
        a = _generate(pipe, ["a handwritten digit 3", "a handwritten digit 8"], steps=5, seed=1)
    finally:
        hook.remove()
    assert calls == [4] * 6  # one batched [uncond, cond] call per PLMS step (5 steps -> 6 calls)
    b = _generate(pipe, ["a handwritten digit 3", "a handwritten digit 8"], steps=5, seed=1)
    c = _generate(pipe, ["a handwritten digit 3", "a handwritten digit 8"], steps=5, seed=2)
    assert a.shape == (2, 1, 32, 32) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.allclose(a, c)
    gen = torch.Generator().manual_seed(1)
    pil = pipe("a handwritten digit 3", num_inference_steps=2, generator=gen).images
    arr = pipe("a handwritten digit 3", num_inference_steps=2, generator=torch.Generator().manual_seed(1),
               output_type="np").images
    assert pil[0].size == (32, 32) and arr.shape == (1, 32, 32, 1) and isinstance(arr, np.ndarray)


def test_prompt_adherence_fast(pipe):
    prompts, labels = _prompts(5)
    images = _generate(pipe, prompts, steps=20)
    assert dg.prompt_adherence(images, labels) >= 0.85


@pytest.mark.slow
def test_prompt_adherence_full(pipe):
    """README / docs/embedded.md: the prompted digit 100 % of the time (200 samples, 50 PLMS steps)."""
    prompts, labels = _prompts(20)
    images = _generate(pipe, prompts, steps=50)
    assert dg.prompt_adherence(images, labels) == 1.0


def _tradeoff(pipe, schedules: dict, per_digit: int, steps: int, real) -> tuple[dict, dict]:
    """FID-proxy of each schedule's images vs held-out real digits and vs the images generated with no
    schedule applied at all (the plain pipeline, same prompts and seeds)."""
    prompts, _ = _prompts(per_digit)
    plain = _generate(pipe, prompts, steps)
    images = {}
    for name, schedule in schedules.items():
        handle = dato.apply(pipe, schedule)
        try:
            images[name] = _generate(pipe, prompts, steps)
        finally:
            handle.remove()
    if "full" in images:
        assert torch.equal(images["full"], plain)  # the accelerator with an all-full plan changes nothing
    vs_real = {k: dg.fid_proxy(v, real) for k, v in images.items()}
    vs_plain = {k: dg.fid_proxy(v, plain) for k, v in images.items()}
    return vs_real, vs_plain


def _caching_ladder(n: int) -> dict:
    """Full compute, DeepCache N=2, 5, 10 (branch 0) and all-reuse after call 5, in order of heavier caching."""
    schedules = {"full": Schedule.full(n)}
    schedules.update({f"N{k}": Schedule.deepcache(n, interval=k, branch=0) for k in (2, 5, 10)})
    schedules["reuse-after-5"] = Schedule(cache=["full"] * 5 + ["reuse"] * (n - 5))
    return schedules


def test_caching_monotone_ordering_fast(pipe, heldout):
    """README: heavier caching gives a monotonically worse FID-proxy (here 50 images, 20 steps; measured
    0, 23.7, 137, 234, 280 against the plain pipeline's images)."""
    _, vs_plain = _tradeoff(pipe, _caching_ladder(21), per_digit=5, steps=20, real=heldout[0])
    values = list(vs_plain.values())
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly worse at every rung
    assert vs_plain["full"] < 1e-3 and vs_plain["reuse-after-5"] > 10 * vs_plain["N2"]


@pytest.mark.slow
def test_caching_monotone_ordering_vs_full(pipe, heldout):
    _, vs_plain = _tradeoff(pipe, _caching_ladder(51), per_digit=5, steps=50, real=heldout[0])  # as in docs
    assert list(vs_plain.values()) == sorted(vs_plain.values())
    assert vs_plain["reuse-after-5"] > 10 * vs_plain["N2"]


@pytest.mark.slow
def test_caching_monotone_ordering_vs_real(pipe, heldout):
    vs_real, _ = _tradeoff(pipe, _caching_ladder(51), per_digit=20, steps=50, real=heldout[0])
    assert list(vs_real.values()) == sorted(vs_real.values())
