"""Token pruning: every target (attn1, attn2, ff), per-call multipliers, and no silent skips."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from conftest import generate
from diffusers.hooks import HookRegistry

import datosearch
from datosearch.dato.pruning import PruneLog, PruningSkippedWarning, TokenPruneHook
from datosearch.dato.state import DaToContext
from datosearch.models.tiny import tiny_unet
from datosearch.space import PruneConfig, Schedule, ScheduleError

TOP = "down_blocks.0.attentions.0.transformer_blocks.0"
MID = "mid_block.attentions.0.transformer_blocks.0"


def _input_lengths(unet, module_suffix: str, fn) -> list[int]:
    """Sequence lengths entering `TOP.<module_suffix>` (its first Linear), in call order."""
    seen: list[int] = []
    handle = unet.get_submodule(f"{TOP}.{module_suffix}").register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].shape[1]))
    try:
        fn()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("target, probe", [("attn1", "attn1.to_q"), ("attn2", "attn2.to_q"), ("ff", "ff.net.0.proj")])
def test_each_target_sees_n_minus_int_nr_tokens(ddim_pipe, target, probe):
    full = generate(ddim_pipe, steps=2)
    handle = datosearch.apply(ddim_pipe, Schedule(["full"] * 2, PruneConfig(ratios={TOP: 0.5}, targets=(target,))))
    lengths = _input_lengths(ddim_pipe.unet, probe, lambda: generate(ddim_pipe, steps=2))
    other = "attn1.to_q" if target != "attn1" else "ff.net.0.proj"
    untouched = _input_lengths(ddim_pipe.unet, other, lambda: generate(ddim_pipe, steps=2))
    out = generate(ddim_pipe, steps=2)
    handle.remove()
    assert lengths == [256 - 128] * 2 and untouched == [256] * 2  # only the chosen target is pruned
    assert torch.isfinite(out).all() and not torch.equal(out, full)
    assert handle.pruning.attrs()["pruned_calls"] == 6 and handle.pruning.attrs()["pruned_token_fraction"] == 0.5


def test_call_scale_multiplies_the_ratio_per_call(ddim_pipe):
    sched = Schedule(["full"] * 4, PruneConfig(ratios={TOP: 0.4}, call_scale=[1.0, 0.0, 0.5, 2.5]))
    handle = datosearch.apply(ddim_pipe, sched)
    lengths = _input_lengths(ddim_pipe.unet, "attn1.to_q", lambda: generate(ddim_pipe, steps=4))
    handle.remove()
    # ratios 0.4, 0 (not pruned), 0.2, min(0.75, 1.0): 256 - int(256 r) tokens kept
    assert lengths == [256 - 102, 256, 256 - 51, 256 - 192]
    assert handle.pruning.attrs() == {"pruned_calls": 3, "pruned_token_fraction": (102 + 51 + 192) / (3 * 256),
                                      "pruning_skipped_calls": 0}


def test_apply_refuses_pruning_that_could_never_happen():
    unet = tiny_unet()  # sample size 16: the mid block's grid is 4x4
    with pytest.raises(ScheduleError, match=r"'mid_block.*' has a 4x4 token grid .* smaller than one 8x8 patch"):
        datosearch.apply(unet, Schedule(["full"] * 2, PruneConfig(ratios={MID: 0.5}, sx=8, sy=8)))
    with pytest.raises(ScheduleError, match=r"prune.targets.*attn3"):  # refused when the schedule is built
        datosearch.apply(unet, Schedule(["full"] * 2, PruneConfig(ratios={TOP: 0.5}, targets=("attn3",))))
    assert not hasattr(unet, "_datosearch_handle") and not hasattr(unet.get_submodule(TOP).attn1, "_diffusers_hook")
    datosearch.remove(datosearch.apply(unet, Schedule(["full"] * 2, PruneConfig(ratios={MID: 0.5}, sx=4, sy=4))))


def test_attention_mask_is_not_pruned_silently():
    unet = tiny_unet()
    handle = datosearch.apply(unet, Schedule(["full"] * 3, PruneConfig(ratios={TOP: 0.5}, targets=("attn2",))))
    x, ctx = torch.randn(2, 4, 16, 16), torch.randn(2, 7, unet.config.cross_attention_dim)
    with pytest.warns(PruningSkippedWarning, match=f"{TOP}.attn2 is not pruned \\(an attention mask was passed\\)") as rec:
        with torch.no_grad():
            for t in range(3):
                unet(x, 999 - 100 * t, encoder_hidden_states=ctx, encoder_attention_mask=torch.ones(2, 7))
    handle.remove()
    assert len([w for w in rec if issubclass(w.category, PruningSkippedWarning)]) == 1  # once per module
    attrs = handle.pruning.attrs()
    assert attrs["pruned_calls"] == 0 and attrs["pruning_skipped_calls"] == 3
    assert attrs["pruning_skipped"] == {f"{TOP}.attn2: an attention mask was passed": 3}


class _Doubler(torch.nn.Module):
    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return 2 * hidden_states


def _hooked(prune: PruneConfig, latent_hw: tuple[int, int]) -> tuple[torch.nn.Module, PruneLog]:
    ctx = DaToContext(Schedule(["full"], prune))
    ctx.state().latent_hw = latent_hw
    log = PruneLog()
    module = _Doubler()
    HookRegistry.check_if_exists_or_initialize(module).register_hook(TokenPruneHook(ctx, "b", "attn1", log), "p")
    return module, log


@pytest.mark.parametrize("shape, latent_hw, sxy, reason", [
    ((2, 8, 4, 4), (4, 4), 2, "its input is 4-D, not (batch, tokens, channels)"),
    ((2, 4, 8), (2, 2), 4, "its 2x2 token grid is smaller than one 4x4 patch"),
    ((2, 1, 8), (1, 1), 2, "ratio 0.5 of 1 tokens rounds to 0"),
])
def test_runtime_skips_warn_once_and_are_counted(shape, latent_hw, sxy, reason):
    module, log = _hooked(PruneConfig(ratios={"b": 0.5}, sx=sxy, sy=sxy), latent_hw)
    x = torch.randn(shape)
    with pytest.warns(PruningSkippedWarning, match=re.escape(f"b.attn1 is not pruned ({reason})")):
        assert torch.equal(module(x), 2 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningSkippedWarning)  # no second warning for the same module
        assert torch.equal(module(x), 2 * x)
    assert log.attrs()["pruning_skipped"] == {f"b.attn1: {reason}": 2} and log.pruned_calls == 0


def test_evaluator_records_the_pruning_actually_applied(ddim_pipe):
    from datosearch.search.evaluator import Calibration, Evaluator

    calib = Calibration(prompts=["a red cube"], seeds=[0], steps=2, guidance=7.5, height=128, width=128)
    evaluator = Evaluator(ddim_pipe, calib, ["fid"], reference=torch.zeros(1), fid=lambda images: 0.0,
                          measure_latency=lambda run: 1.0)
    attrs = evaluator.evaluate(Schedule(["full"] * 2, PruneConfig(ratios={TOP: 0.5}))).attrs
    assert attrs["pruned_calls"] == 2 and attrs["pruned_token_fraction"] == 0.5
    assert attrs["pruning_skipped_calls"] == 0 and "pruning_skipped" not in attrs
    assert evaluator.evaluate(Schedule.full(2)).attrs["pruned_calls"] == 0
