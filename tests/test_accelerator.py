"""The DaTo accelerator on tiny pipelines: exactness, DeepCache parity, pruning counts, removal."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from conftest import generate
from DeepCache import DeepCacheSDHelper
from diffusers import EulerDiscreteScheduler

import datosearch
from datosearch.models.tiny import tiny_unet
from datosearch.space import PruneConfig, Schedule, ScheduleError, highest_resolution_blocks

TOP = "down_blocks.0.attentions.0.transformer_blocks.0"


def test_all_full_ratio_zero_is_bit_identical_and_remove_restores(ddim_pipe):
    before = generate(ddim_pipe)
    sched = Schedule.full(10)
    sched.prune.ratios = {TOP: 0.0}
    handle = datosearch.apply(ddim_pipe, sched)
    assert torch.equal(generate(ddim_pipe), before)
    handle.remove()
    assert torch.equal(generate(ddim_pipe), before)


def test_remove_after_pruning_and_caching_restores_modules(ddim_pipe):
    before = generate(ddim_pipe)
    handle = datosearch.apply(ddim_pipe, Schedule(
        ["full", 0, "reuse"] * 3 + ["full"], PruneConfig(ratios={TOP: 0.5})))
    assert not torch.equal(generate(ddim_pipe), before)
    assert datosearch.remove(ddim_pipe) and not datosearch.remove(ddim_pipe)
    assert handle.pipe is ddim_pipe
    leftovers = [n for n, m in ddim_pipe.unet.named_modules() if "forward" in vars(m) or hasattr(m, "_diffusers_hook")]
    assert leftovers == []
    assert "set_timesteps" not in vars(ddim_pipe.scheduler)
    assert torch.equal(generate(ddim_pipe), before)


@pytest.mark.parametrize("branch", [0, 2, 3])
def test_uniform_plan_matches_deepcache_package(ddim_pipe, branch):
    helper = DeepCacheSDHelper(pipe=ddim_pipe)
    helper.set_params(cache_interval=3, cache_branch_id=branch)
    helper.enable()
    try:
        reference = generate(ddim_pipe)
    finally:
        helper.disable()
    with_full = generate(ddim_pipe)
    handle = datosearch.apply(ddim_pipe, Schedule.deepcache(10, interval=3, branch=branch))
    ours = generate(ddim_pipe)
    handle.remove()
    assert torch.equal(ours, reference)  # README: max abs diff 0
    assert (ours - with_full).abs().max().item() > 1e-3  # caching really happened


def _count_resnet_calls(unet, fn) -> list[int]:
    """Resnets really evaluated (their conv1 runs) per U-Net body evaluation (its conv_in runs)."""
    per_call: list[int] = []
    hooks = [unet.conv_in.register_forward_pre_hook(lambda *_: per_call.append(0))]
    for name, m in unet.named_modules():
        if type(m).__name__ == "ResnetBlock2D":
            hooks.append(m.conv1.register_forward_pre_hook(lambda *_: per_call.__setitem__(-1, per_call[-1] + 1)))
    try:
        fn()
    finally:
        for h in hooks:
            h.remove()
    return per_call


def test_block_evaluations_per_call_type_match_the_plan(ddim_pipe):
    # tiny U-Net: 6 down + 2 mid + 9 up resnets. Branch 0 runs only the last up resnet;
    # branch 1 also runs down_blocks.0.resnets.0 and up_blocks.2.resnets.1.
    plan = ["full", 0, 1, "reuse", "full", "reuse", 1, 0, "full", "reuse"]
    handle = datosearch.apply(ddim_pipe, Schedule(plan))
    seen = _count_resnet_calls(ddim_pipe.unet, lambda: generate(ddim_pipe))
    handle.remove()
    expected = {"full": 17, 0: 1, 1: 3}
    assert seen == [expected[a] for a in plan if a != "reuse"]  # reuse calls never enter the U-Net body


def _attention_lengths(unet, fn) -> dict[str, Counter]:
    """Sequence lengths seen by each block's self-attention (its to_q input) while `fn` runs."""
    seen: dict[str, Counter] = {}
    hooks = []
    for name, m in unet.named_modules():
        if name.endswith(".attn1.to_q"):
            block = seen.setdefault(name[: -len(".attn1.to_q")], Counter())
            hooks.append(m.register_forward_pre_hook(lambda mod, args, c=block: c.update([args[0].shape[1]])))
    try:
        fn()
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_pruning_keeps_exactly_n_minus_int_nr_tokens(ddim_pipe):
    ratios = {"down_blocks.0.attentions.0.transformer_blocks.0": 0.5,
              "up_blocks.2.attentions.1.transformer_blocks.0": 0.3,
              "down_blocks.1.attentions.0.transformer_blocks.0": 0.75}
    unet = ddim_pipe.unet
    unpruned = _attention_lengths(unet, lambda: generate(ddim_pipe, steps=4))
    handle = datosearch.apply(ddim_pipe, Schedule(["full"] * 4, PruneConfig(ratios=ratios)))
    pruned = _attention_lengths(unet, lambda: generate(ddim_pipe, steps=4))
    handle.remove()
    assert unpruned[TOP] == Counter({256: 4})
    for block, counts in unpruned.items():
        (n,) = counts
        assert pruned[block] == Counter({n - int(n * ratios.get(block, 0.0)): 4}), block


@pytest.mark.parametrize("method", ["dynamics", "similarity", "random"])
def test_base_selection_methods_are_seeded_and_deterministic(ddim_pipe, method):
    full = generate(ddim_pipe)
    sched = Schedule(["full"] * 10, PruneConfig(ratios={b: 0.5 for b in highest_resolution_blocks(ddim_pipe.unet)},
                                               base_selection=method, seed=7))
    handle = datosearch.apply(ddim_pipe, sched)
    a, b = generate(ddim_pipe), generate(ddim_pipe)
    handle.remove()
    assert torch.equal(a, b)
    assert torch.isfinite(a).all() and 0 < (a - full).abs().mean() < full.abs().mean()


def _base_tokens(pipe, method: str, steps: int) -> list[torch.Tensor]:
    """The base-token indices chosen at TOP at every U-Net call (noise off, so only the score decides)."""
    from datosearch.dato import selection

    captured = []
    original = selection.patch_argmax
    selection.patch_argmax = lambda score, sx, sy: captured.append(original(score, sx, sy)) or captured[-1]
    try:
        handle = datosearch.apply(pipe, Schedule(["full"] * steps, PruneConfig(
            ratios={TOP: 0.5}, base_selection=method, fallback="similarity", noise_alpha=0.0)))
        generate(pipe, steps=steps)
        handle.remove()
    finally:
        selection.patch_argmax = original
    return captured


def test_dynamics_selection_differs_from_its_similarity_fallback(ddim_pipe):
    """Calls 0 and 1 have fewer than two noise predictions, so dynamics falls back to similarity and
    picks the same tokens; from call 2 on it scores |eps_k - eps_prev| and must pick others."""
    dynamics, similarity = _base_tokens(ddim_pipe, "dynamics", 5), _base_tokens(ddim_pipe, "similarity", 5)
    assert len(dynamics) == len(similarity) == 5
    assert torch.equal(dynamics[0], similarity[0]) and torch.equal(dynamics[1], similarity[1])
    assert all(not torch.equal(d, s) for d, s in zip(dynamics[2:], similarity[2:]))


def test_cfg_halves_share_base_tokens(ddim_pipe):
    from datosearch.dato import selection

    captured = []
    original = selection.patch_argmax
    selection.patch_argmax = lambda score, sx, sy: captured.append(original(score, sx, sy)) or captured[-1]
    try:
        handle = datosearch.apply(ddim_pipe, Schedule(["full"] * 4, PruneConfig(ratios={TOP: 0.5})))
        generate(ddim_pipe, steps=4, guidance_scale=7.5)
        handle.remove()
    finally:
        selection.patch_argmax = original
    assert len(captured) == 4
    for base in captured:
        half = base.shape[0] // 2
        assert torch.equal(base[:half], base[half:])


def test_dato_coco_runs_end_to_end_with_pndm_50_steps(pndm_pipe):
    sched = Schedule.dato_coco(pndm_pipe.unet, ratio=0.4)
    handle = datosearch.apply(pndm_pipe, sched)
    calls = _count_resnet_calls(pndm_pipe.unet, lambda: generate(pndm_pipe, steps=50))
    out = generate(pndm_pipe, steps=50)
    handle.remove()
    assert len(calls) == 51 - sched.counts()["reuse"]
    assert torch.isfinite(out).all()


def test_strict_plan_length_must_match_the_scheduler(pndm_pipe):
    handle = datosearch.apply(pndm_pipe, Schedule.full(50), strict=True)
    try:
        with pytest.raises(ScheduleError, match="plans 50 U-Net calls but PNDMScheduler will make 51"):
            generate(pndm_pipe, steps=50)
    finally:
        handle.remove()


def test_euler_scheduler_and_json_file_api(tmp_path):
    from datosearch.models.tiny import tiny_sd_pipeline
    from datosearch.space import io

    pipe = tiny_sd_pipeline()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    full = generate(pipe, steps=6)
    path = tmp_path / "s.json"
    io.save(Schedule(["full", 0, "reuse", "full", 0, 0], PruneConfig(ratios={TOP: 0.4})), path)
    handle = datosearch.apply(pipe, str(path))
    out = generate(pipe, steps=6)
    handle.remove()
    assert torch.isfinite(out).all() and not torch.equal(out, full)
    assert torch.equal(generate(pipe, steps=6), full)


def _bare_unet_loop(unet, n_calls, **extra) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16)
    ctx = torch.randn(2, 7, unet.config.cross_attention_dim)
    outs = []
    with torch.no_grad():
        for t in range(n_calls):
            outs.append(unet(x, 999 - 100 * t, encoder_hidden_states=ctx, **extra).sample)
            x = x - 0.1 * outs[-1]
    return torch.stack(outs)


@pytest.mark.parametrize("shape", ["sd2", "sdxl"])
def test_other_unet_shapes(shape):
    if shape == "sd2":
        unet = tiny_unet(use_linear_projection=True, attention_head_dim=(2, 4, 4))
        extra = {}
    else:
        unet = tiny_unet(
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
            attention_head_dim=(4, 8), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 32)
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6)}}
    top = highest_resolution_blocks(unet)
    assert top and all(unet.get_submodule(b) is not None for b in top)
    before = _bare_unet_loop(unet, 6, **extra)
    sched = Schedule(["full", 0, "reuse", "full", 1, 3], PruneConfig(ratios={b: 0.5 for b in top}))
    handle = datosearch.apply(unet, sched)
    out = _bare_unet_loop(unet, 6, **extra)
    handle.remove()
    assert torch.isfinite(out).all() and not torch.equal(out, before)
    assert torch.equal(out[2], out[1])  # reuse returns the last computed prediction
    assert torch.equal(_bare_unet_loop(unet, 6, **extra), before)


def test_random_selection_behaves_like_tomesd_at_the_same_ratio(ddim_pipe):
    """What is compared: the deviation from full compute of the final latents. tomesd merges (averages)
    tokens into randomly chosen destinations; we prune and copy from a random base token. The kept
    tokens differ, so the outputs differ, but the size of the deviation must be of the same order."""
    import tomesd

    full = generate(ddim_pipe)
    tomesd.apply_patch(ddim_pipe, ratio=0.5, max_downsample=1)
    try:
        theirs = generate(ddim_pipe)
    finally:
        tomesd.remove_patch(ddim_pipe)
    top = highest_resolution_blocks(ddim_pipe.unet)
    sched = Schedule(["full"] * 10, PruneConfig(ratios={b: 0.5 for b in top}, base_selection="random"))
    handle = datosearch.apply(ddim_pipe, sched)
    ours = generate(ddim_pipe)
    handle.remove()
    dev_theirs, dev_ours = (theirs - full).abs().mean().item(), (ours - full).abs().mean().item()
    assert dev_theirs > 0 and dev_ours > 0
    assert 1 / 3 < dev_ours / dev_theirs < 3, (dev_ours, dev_theirs)
