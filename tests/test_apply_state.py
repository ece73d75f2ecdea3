"""No state leaks between generations (issue 14.6): after a generation, finished or interrupted by an
exception, no cached tensor is held, and the next generation is bit-identical to a fresh one."""

from __future__ import annotations

import pytest
import torch
from apply_helpers import torch_one_thread  # noqa: F401 - a fixture
from conftest import generate

import datosearch
from datosearch.models.tiny import tiny_sd_pipeline
from datosearch.space import PruneConfig, Schedule, highest_resolution_blocks

pytestmark = pytest.mark.usefixtures("torch_one_thread")
STEPS = 8


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline(scheduler="ddim")


def _schedule(pipe) -> Schedule:
    """Every kind of state: shallow and reuse caches, forecast histories, dynamics-based pruning."""
    prune = PruneConfig(ratios={b: 0.5 for b in highest_resolution_blocks(pipe.unet)}, noise_alpha=0.5)
    return Schedule(["full", 0, "reuse", "full", 1, "reuse", "full", 0], prune).with_forecast(2)


def _fresh(pipe, **kw) -> torch.Tensor:
    handle = datosearch.apply(pipe, _schedule(pipe))
    try:
        return generate(pipe, steps=STEPS, **kw)
    finally:
        handle.remove()


class Interrupt(Exception):
    pass


def _stop_at(step: int):
    def callback(pipe, i, t, kwargs):
        if i == step:
            raise Interrupt
        return kwargs
    return callback


def test_generations_in_a_row_leave_no_cache_and_match_fresh_ones(pipe):
    fresh = _fresh(pipe, seed=1)
    handle = datosearch.apply(pipe, _schedule(pipe))
    try:
        generate(pipe, steps=STEPS, seed=0, prompts=("something else",))
        assert not handle.context.holds_cache()
        second = generate(pipe, steps=STEPS, seed=1)
        assert not handle.context.holds_cache()
    finally:
        handle.remove()
    assert torch.equal(second, fresh)


@pytest.mark.parametrize("where", ["callback", "unet", "keyboard"])
def test_an_interrupted_generation_leaves_no_cache(pipe, where):
    fresh = _fresh(pipe)
    handle = datosearch.apply(pipe, _schedule(pipe))
    calls = []

    def failing_block(module, args):
        calls.append(1)
        if len(calls) == 5:
            raise Interrupt

    hook = pipe.unet.up_blocks[-1].register_forward_pre_hook(failing_block) if where == "unet" else None
    try:
        if where == "keyboard":
            with pytest.raises(KeyboardInterrupt):
                generate(pipe, steps=STEPS, callback_on_step_end=lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        else:
            with pytest.raises(Interrupt):
                generate(pipe, steps=STEPS, callback_on_step_end=_stop_at(4) if where == "callback" else None)
        assert not handle.context.holds_cache()
        if hook is not None:
            hook.remove()
        assert torch.equal(generate(pipe, steps=STEPS), fresh)
    finally:
        handle.remove()
        if hook is not None:
            hook.remove()


def test_a_bare_unet_drops_its_cache_after_the_last_call_and_on_an_exception():
    from datosearch.models.tiny import tiny_unet

    unet = tiny_unet()
    x, ctx = torch.randn(1, 4, 16, 16), torch.randn(1, 7, 32)
    handle = datosearch.apply(unet, Schedule(["full", 0, "reuse"]).with_forecast(1))
    with torch.no_grad():
        for t in (900, 800):
            unet(x, t, encoder_hidden_states=ctx)
        assert handle.context.holds_cache()
        unet(x, 700, encoder_hidden_states=ctx)
        assert not handle.context.holds_cache()  # the plan's last call: the generation is over
        unet(x, 900, encoder_hidden_states=ctx)
        with pytest.raises(RuntimeError):
            unet(x[:, :2], 800, encoder_hidden_states=ctx)  # a wrong input raises inside the U-Net
        assert not handle.context.holds_cache() and handle.context.state().call == 0
    handle.remove()


def test_a_loop_making_more_unet_calls_than_timesteps_is_refused(pipe):
    def extra_call(p, i, t, kwargs):  # a pipeline that calls the U-Net twice per step
        p.unet(kwargs["latents"], t, encoder_hidden_states=kwargs["prompt_embeds"])
        return kwargs

    handle = datosearch.apply(pipe, Schedule.full(STEPS))
    try:
        with pytest.raises(datosearch.ScheduleError, match="more U-Net calls than the 8 its scheduler's timesteps"):
            generate(pipe, steps=STEPS, prompts=("a cat",), guidance_scale=1.0, callback_on_step_end=extra_call,
                     callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
        assert not handle.context.holds_cache()
    finally:
        handle.remove()
