"""LoRA adapters and torch.compile with an applied schedule (issue 14.5).

LoRA (diffusers' PEFT integration, adapter built in code) swaps the attention projections for PEFT
layers inside the modules DaTo hooks; the hooks sit on the blocks and the attention modules, so an
adapter added before or after `apply` runs under the schedule, and `remove()` leaves it bit-identical.

`torch.compile(pipe.unet)` after `apply` (or before it) works: dynamo traces through the hooks, with
graph breaks where the plan is read and a graph per kind of call, and the result is the eager one
(bit-identical with `backend="eager"`; within float rounding with inductor, slow test).
"""

from __future__ import annotations

import pytest
import torch
from apply_helpers import torch_one_thread  # noqa: F401 - a fixture

import datosearch
from datosearch.models.tiny import tiny_sd_pipeline, tiny_unet
from datosearch.space import PruneConfig, Schedule, highest_resolution_blocks

pytestmark = pytest.mark.usefixtures("torch_one_thread")
PLAN = ["full", 0, "reuse", 1, "full", 0]


def _schedule(unet) -> Schedule:
    return Schedule(PLAN, PruneConfig(ratios={b: 0.5 for b in highest_resolution_blocks(unet)})).with_forecast(1)


def _gen(pipe) -> torch.Tensor:
    return pipe(["a cat"], num_inference_steps=len(PLAN), guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                output_type="latent").images


def _lora(rank: int, targets: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=targets)


def test_lora_adapter_runs_under_the_schedule_and_remove_is_bit_identical():
    pytest.importorskip("peft", reason="LoRA needs peft (the test extra installs it)")
    pipe = tiny_sd_pipeline(scheduler="ddim")
    sched = _schedule(pipe.unet)
    handle = datosearch.apply(pipe, sched)
    no_lora = _gen(pipe)
    handle.remove()
    torch.manual_seed(0)
    pipe.unet.add_adapter(_lora(4, ["to_q", "to_k", "to_v", "to_out.0"]), adapter_name="style")
    with_lora = _gen(pipe)
    handle = datosearch.apply(pipe, sched)
    accelerated = _gen(pipe)
    pipe.unet.add_adapter(_lora(2, ["to_q"]), adapter_name="second")  # added while the schedule is applied
    pipe.unet.set_adapters(["style", "second"])
    both = _gen(pipe)
    pipe.unet.set_adapters(["style"])
    assert torch.equal(_gen(pipe), accelerated)
    handle.remove()
    assert torch.equal(_gen(pipe), with_lora)  # the LoRA U-Net is left exactly as it was
    assert not torch.equal(accelerated, no_lora) and not torch.equal(both, accelerated)  # the adapters act
    assert handle.pruning.attrs()["pruning_skipped_calls"] == 0  # PEFT's layers do not stop pruning
    pipe.unet.disable_adapters()
    assert torch.equal(_gen(pipe), _gen(tiny_sd_pipeline(scheduler="ddim")))  # the base weights untouched


def _bare(unet, n: int = len(PLAN)) -> list[torch.Tensor]:
    x, ctx = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.ones(1, 3, 32)
    with torch.no_grad():
        return [unet(x, 900 - 100 * t, encoder_hidden_states=ctx).sample for t in range(n)]


def test_a_compiled_unet_is_hooked_inside_and_a_compiled_pipeline_unet_is_found():
    pipe = tiny_sd_pipeline(scheduler="ddim")
    unet = pipe.unet
    pipe.unet = torch.compile(unet)  # compiling is lazy: nothing is traced here
    try:
        for target in (pipe, pipe.unet):
            handle = datosearch.apply(target, _schedule(unet))
            assert handle.unet is unet and (handle.pipe is pipe) == (target is pipe)
            assert datosearch.remove(target) and not hasattr(unet, "_diffusers_hook")
    finally:
        pipe.unet = unet


@pytest.mark.slow  # dynamo's tracing takes 15-30 s on two shared cores
@pytest.mark.parametrize("order", ["compile after apply", "compile before apply"])
def test_torch_compile_traces_through_the_hooks(order):
    unet = tiny_unet(sample_size=8)
    plain = _bare(unet)
    handle = datosearch.apply(unet, Schedule(PLAN).with_forecast(1))
    eager = _bare(unet)
    if order == "compile before apply":
        handle.remove()
    compiled = torch.compile(unet, backend="eager")  # dynamo's tracing, without inductor's build time
    if order == "compile before apply":
        assert all(torch.equal(a, b) for a, b in zip(_bare(compiled), plain))
        handle = datosearch.apply(compiled, Schedule(PLAN).with_forecast(1))
    assert all(torch.equal(a, b) for a, b in zip(_bare(compiled), eager))
    assert datosearch.remove(compiled)
    assert all(torch.equal(a, b) for a, b in zip(_bare(compiled), plain))


@pytest.mark.slow  # inductor builds its kernels: minutes on two shared cores
def test_torch_compile_with_inductor_matches_eager():
    pipe = tiny_sd_pipeline(scheduler="ddim", sample_size=8)
    sched = _schedule(pipe.unet)
    full = _gen(pipe)
    handle = datosearch.apply(pipe, sched)
    eager = _gen(pipe)
    unet = pipe.unet
    pipe.unet = torch.compile(unet)
    try:
        compiled = _gen(pipe)
        assert torch.allclose(compiled, eager, atol=1e-4, rtol=1e-4)
        assert (eager - full).abs().max() > 100 * (compiled - eager).abs().max()  # the schedule, not noise
        handle.remove()
        assert torch.allclose(_gen(pipe), full, atol=1e-4, rtol=1e-4)
    finally:
        pipe.unet = unet
