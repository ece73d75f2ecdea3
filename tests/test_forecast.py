"""Forecasting skipped work: exact on polynomials, order drops, no state leaks, order 0 is reuse."""

from __future__ import annotations

import pytest
import torch
from conftest import generate
from torch import nn

import datosearch
from datosearch.dato.caching import consumed_module
from datosearch.dato.forecast import History
from datosearch.space import Schedule, ScheduleError, io
from datosearch.space.schedule import Forecast

BOUNDARY = [1.0, -0.5, 0.25]  # boundary tensor (cut module output) = Σ a_k c^k
HEAD = [0.5, 0.2, -0.1]  # the computed part adds Σ b_k c^k


def _poly(coeffs: list[float], c: float, degree: int) -> float:
    return sum(a * c ** k for k, a in enumerate(coeffs[: degree + 1]))


class _Layer(nn.Module):
    """A resnet stand-in: adds `fn(call index)` to its input (or replaces it)."""

    def __init__(self, fn, replace: bool = False) -> None:
        super().__init__()
        self.fn, self.replace = fn, replace

    def forward(self, x: torch.Tensor, c: float) -> torch.Tensor:
        return (0 * x if self.replace else x) + self.fn(c)


class _Block(nn.Module):
    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(layers)
        self.downsamplers = None

    def forward(self, x: torch.Tensor, c: float) -> torch.Tensor:
        for layer in self.resnets:
            x = layer(x, c)
        return x


class PolyUNet(nn.Module):
    """U-Net-shaped module (one down, mid, one up block of two layers) whose outputs are polynomials in
    the timestep argument, which the tests set to the call index. Branch 0 cuts `down_blocks.0`,
    `mid_block` and `up_blocks.0.resnets.0` (the boundary tensor); `up_blocks.0.resnets.1` runs."""

    def __init__(self, degree: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList([_Block(_Layer(lambda c: 3.0))])
        self.mid_block = _Layer(lambda c: 1.0)
        self.up_blocks = nn.ModuleList([_Block(_Layer(lambda c: _poly(BOUNDARY, c, degree), replace=True),
                                               _Layer(lambda c: _poly(HEAD, c, degree)))])

    def forward(self, sample: torch.Tensor, timestep: float, return_dict: bool = True):
        c = float(timestep)
        x = self.up_blocks[0](self.mid_block(self.down_blocks[0](sample, c), c), c)
        return (x,)


def _run(unet: nn.Module, n: int) -> list[torch.Tensor]:
    sample = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    return [unet(sample, c, return_dict=False)[0] for c in range(n)]


def _exact(c: int, degree: int) -> float:
    return _poly(BOUNDARY, c, degree) + _poly(HEAD, c, degree)


def _plan(n: int, full: list[int], action) -> list:
    return ["full" if t in full else action for t in range(n)]


def test_consumed_module_is_the_last_cut_module():
    assert consumed_module(PolyUNet(1), 0) == "up_blocks.0.resnets.0"


@pytest.mark.parametrize("action", [0, "reuse"])
@pytest.mark.parametrize("order", [1, 2])
def test_order_k_forecast_is_exact_on_degree_k_polynomials(action, order):
    full = [0, 3, 6] if order == 2 else [0, 4]
    n = 10
    unet = PolyUNet(order)
    handle = datosearch.apply(unet, Schedule(_plan(n, full, action)).with_forecast(order))
    out = _run(unet, n)
    handle.remove()
    for c in range(full[-1], n):  # once order + 1 full calls exist
        assert torch.allclose(out[c], torch.full_like(out[c], _exact(c, order)), atol=1e-9), c


@pytest.mark.parametrize("action", [0, "reuse"])
def test_lower_order_is_not_exact_on_a_higher_degree(action):
    unet = PolyUNet(2)
    handle = datosearch.apply(unet, Schedule(_plan(10, [0, 3, 6], action)).with_forecast(1))
    out = _run(unet, 10)
    handle.remove()
    assert abs(out[9].flatten()[0].item() - _exact(9, 2)) > 0.1


def test_order_drops_with_fewer_full_calls_than_order_plus_one():
    # full calls 0 and 4 only: order 2 must act as order 1 (exact for a line)
    unet = PolyUNet(1)
    handle = datosearch.apply(unet, Schedule(_plan(6, [0, 4], 0)).with_forecast(2))
    out = _run(unet, 6)
    handle.remove()
    assert torch.allclose(out[5], torch.full_like(out[5], _exact(5, 1)))
    # before the second full call, there is one value: the forecast is the plain cache (order 0)
    cached = PolyUNet(1)
    h = datosearch.apply(cached, Schedule(_plan(6, [0, 4], 0)))
    plain = _run(cached, 6)
    h.remove()
    assert all(torch.equal(out[c], plain[c]) for c in range(4))


def test_damping_scales_the_step():
    unet = PolyUNet(1)
    handle = datosearch.apply(unet, Schedule(_plan(6, [0, 4], "reuse")).with_forecast(1, damping=0.5))
    out = _run(unet, 6)
    handle.remove()
    slope = (_exact(4, 1) - _exact(0, 1)) / 4
    assert torch.allclose(out[5], torch.full_like(out[5], _exact(4, 1) + slope * 0.5))


def test_history_resets_between_generations():
    unet = PolyUNet(2)
    handle = datosearch.apply(unet, Schedule(_plan(8, [0, 3, 6], "reuse")).with_forecast(2))
    first, second = _run(unet, 8), _run(unet, 8)  # bare U-Net: a new generation after the last call
    handle.remove()
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_history_keeps_order_plus_one_values():
    h = History(3)
    for c in range(6):
        h.update(c, torch.tensor([float(c)]))
    assert [x for x, _ in h.points] == [3.0, 4.0, 5.0]
    assert torch.equal(h.predict(9, 0), torch.tensor([5.0]))


def test_order_zero_is_bit_identical_to_reuse(ddim_pipe):
    plan = ["full", 0, "reuse", 0, "full", "reuse", 0, "full", 0, "reuse"]
    zero = io.from_json_obj({"schema": "datosearch/schedule@2",
                             "cache": [a if isinstance(a, str) else {"branch": a, "order": 0} for a in plan]})
    assert zero.forecast == {} and zero.key() == Schedule(plan).key()
    handle = datosearch.apply(ddim_pipe, Schedule(plan))
    plain = generate(ddim_pipe)
    handle.remove()
    handle = datosearch.apply(ddim_pipe, zero)
    assert torch.equal(generate(ddim_pipe), plain)
    handle.remove()


def _patched(unet) -> list[str]:
    """Modules with an instance `forward` or a diffusers hook registry (other packages' patches count too)."""
    return [n for n, m in unet.named_modules() if "forward" in vars(m) or hasattr(m, "_diffusers_hook")]


def test_forecast_changes_output_and_remove_restores(ddim_pipe):
    patched = _patched(ddim_pipe.unet)  # the DeepCache package's disable() leaves bound forwards behind
    before = generate(ddim_pipe)
    plan = Schedule.deepcache(10, 3)
    handle = datosearch.apply(ddim_pipe, plan)
    reused = generate(ddim_pipe)
    handle.remove()
    handle = datosearch.apply(ddim_pipe, plan.with_forecast(2, 0.5))
    forecast = generate(ddim_pipe)
    assert torch.equal(generate(ddim_pipe), forecast)  # no state leaks between generations
    handle.remove()
    assert not torch.equal(forecast, reused)
    assert _patched(ddim_pipe.unet) == patched and torch.equal(generate(ddim_pipe), before)


def test_forecast_closer_to_full_compute_than_reuse_with_cfg_and_pruning(ddim_pipe):
    from datosearch.space import PruneConfig, highest_resolution_blocks

    full = generate(ddim_pipe, steps=20, guidance_scale=5.0)
    prune = PruneConfig(ratios={b: 0.3 for b in highest_resolution_blocks(ddim_pipe.unet)})
    errors = {}
    for order in (0, 1):
        sched = Schedule(_plan(20, [0, 4, 8, 12, 16], "reuse"), prune).with_forecast(order)
        handle = datosearch.apply(ddim_pipe, sched)
        errors[order] = (generate(ddim_pipe, steps=20, guidance_scale=5.0) - full).abs().mean().item()
        handle.remove()
    assert errors[1] < errors[0]


def test_schedule_round_trips_and_refuses_bad_forecasts():
    sched = Schedule(["full", 0, "reuse", "full", "reuse"], forecast={1: Forecast(2, 0.5), 2: Forecast(1)})
    data = sched.to_dict()
    assert data["schema"] == "datosearch/schedule@2"
    assert data["cache"][1] == {"branch": 0, "order": 2, "damping": 0.5}
    assert data["cache"][2] == {"reuse": True, "order": 1, "damping": 1.0}
    assert io.from_json_obj(data).key() == sched.key()
    assert Schedule.deepcache(9, 3).to_dict()["schema"] == "datosearch/schedule@1"
    assert sched.counts()["forecast"] == 2
    with pytest.raises(ScheduleError, match=r"cache\[0\]"):
        Schedule(["full", 0], forecast={0: Forecast(1)})
    with pytest.raises(ScheduleError, match=r"cache\[1\]\.order"):
        Schedule(["full", 0], forecast={1: Forecast(3)})
    with pytest.raises(ScheduleError, match=r"cache\[1\]\.damping"):
        Schedule(["full", 0], forecast={1: Forecast(1, 0.0)})
    with pytest.raises(ScheduleError, match=r"cache\[1\]"):  # forecasting needs schema@2
        io.from_json_obj({"schema": "datosearch/schedule@1", "cache": ["full", {"branch": 0, "order": 1}]})
