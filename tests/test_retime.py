"""Mapping a plan to another call count by normalized time, matched by noise level when the timesteps are
known (`space.retime`), and where a late run enters."""

from __future__ import annotations

import pytest
import torch

from datosearch.dato.state import entry_call
from datosearch.space import PruneConfig, Schedule
from datosearch.space.placement import full_positions, power_law, spread
from datosearch.space.retime import NoiseClock, from_call, full_count, to_calls
from datosearch.space.schedule import FULL, Forecast
from datosearch.space.trajectory import warp_timesteps


def _full(s: Schedule) -> list[int]:
    return [c for c, a in enumerate(s.cache) if a == FULL]


def test_same_call_count_is_the_schedule_itself():
    sched = Schedule.dato_coco(ratio=0).with_forecast(2)
    assert to_calls(sched, 51) is sched and from_call(sched, 0) is sched


@pytest.mark.parametrize("n, k", [(51, 5), (50, 17), (20, 7), (10, 1), (50, 50)])
@pytest.mark.parametrize("m", [5, 10, 20, 25, 30, 50, 51, 100])
def test_full_calls_stay_proportional(n, k, m):
    sched = Schedule(["full" if c in set(spread(n, [i / k for i in range(k)])) else 0 for c in range(n)])
    mapped = to_calls(sched, m)
    assert mapped.n_calls == m and mapped.cache[0] == FULL
    assert len(_full(mapped)) == full_count(k, n, m) == max(1, min(m, int(k * m / n + 0.5)))


def test_uniform_plans_map_to_uniform_plans():
    assert to_calls(Schedule.deepcache(20, 2, branch=1), 10).cache == Schedule.deepcache(10, 2, branch=1).cache
    assert to_calls(Schedule.deepcache(10, 2), 20).cache == Schedule.deepcache(20, 2).cache


def test_placement_follows_normalized_time():
    late = Schedule(["full" if c in set(power_law(50, 10, 0.6)) else 0 for c in range(50)])  # dense late
    for m in (10, 20, 25, 30, 51, 100):
        mapped = to_calls(late, m)
        times = [c / m for c in _full(mapped)]
        source = [c / 50 for c in _full(late)]
        assert abs(sum(times) / len(times) - sum(source) / len(source)) < 0.6 / len(times), m
    uniform = _full(to_calls(Schedule.deepcache(60, 3), 25))  # 20 full of 60 -> 8 of 25, evenly spaced
    assert len(uniform) == 8 and {b - a for a, b in zip(uniform, uniform[1:])} == {3, 4}


def test_non_full_calls_take_the_action_and_forecast_found_at_their_time():
    plan = ["full"] + [0] * 9 + ["full"] + ["reuse"] * 9  # first half shallow, second half reuse
    sched = Schedule(plan, forecast={c: Forecast(2 if c < 10 else 1, 0.5) for c in range(20) if plan[c] != FULL})
    mapped = to_calls(sched, 50)
    full = _full(mapped)
    assert full == [0, 10, 20, 30, 40]  # 2 of 20 -> 5 of 50, spread as the plan's (uniform)
    assert all(mapped.cache[c] == (0 if c < 25 else "reuse") for c in range(50) if c not in full)
    assert mapped.forecast == {c: Forecast(2 if c < 25 else 1, 0.5) for c in range(50) if c not in full}


def test_per_call_pruning_scale_maps_with_the_plan():
    prune = PruneConfig(ratios={"b": 0.4}, call_scale=[1.0] * 10 + [0.0] * 10)
    mapped = to_calls(Schedule(["full", 0] * 10, prune), 7)
    assert mapped.prune.call_scale == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # call j: the plan's call at (j + 0.5)/7
    assert mapped.prune.ratios == {"b": 0.4}

def test_a_late_entry_starts_with_a_full_call():
    sched = Schedule(["full", 0, "reuse", 0, "full", 0, "reuse", 1], PruneConfig(call_scale=[1.0] * 8),
                     forecast={2: Forecast(1), 3: Forecast(2), 6: Forecast(1)})
    tail = from_call(sched, 3)
    assert tail.cache == ["full", "full", 0, "reuse", 1]
    assert tail.forecast == {3: Forecast(1)} and len(tail.prune.call_scale) == 5


def test_entry_call_is_found_by_timestep_value():
    ddim = [901.0, 801.0, 701.0, 601.0, 501.0]
    assert entry_call(ddim, torch.tensor(601)) == 3 and entry_call(ddim, 901) == 0
    assert entry_call(ddim, torch.tensor([701.0, 701.0])) == 2  # a batch of timesteps
    assert entry_call([901.0, 801.0, 801.0, 701.0], 801) == 1  # PLMS repeats one: the first
    assert entry_call(ddim, 650.0) == 0  # not on the trajectory: from the start


def test_full_positions_are_spread_warped_times():
    assert full_positions(50, 10, 1.0, 0.0) == spread(50, [i / 10 for i in range(10)]) == list(range(0, 50, 5))
    assert spread(4, [0.0, 0.9, 0.95, 0.99]) == [0, 1, 2, 3]  # pushed, then pulled back from the end


# ----------------------------------------------------------------------------- matched by noise level
def _linear(n: int) -> tuple[float, ...]:
    return tuple(1000 * (1 - c / n) for c in range(n))


def test_a_clock_on_the_plans_own_timesteps_maps_nothing_and_a_linear_one_as_normalized_time():
    sched = Schedule(["full", 0, 0, "full", "reuse", "full", 0, "reuse", "full", 0] * 2)
    assert to_calls(sched, 20, NoiseClock(_linear(20), _linear(20))) is sched
    for m in (7, 10, 33, 51):
        assert to_calls(sched, m, NoiseClock(_linear(20), _linear(m))).cache == to_calls(sched, m).cache, m


def test_calls_take_the_action_found_at_their_noise_level_on_a_run_spaced_otherwise():
    """A plan on timesteps bent toward low noise (shallow calls, then reuse from call 5, timestep ~160):
    mapped by noise level onto a linearly spaced run, reuse starts where the run reaches that timestep;
    by normalized time it would start halfway, at a much noisier step."""
    plan_t = tuple(float(t) for t in warp_timesteps(10, 0.9, 2.5, 1000))
    sched = Schedule(["full", 0, 0, 0, 0, "reuse", "reuse", "reuse", "reuse", "reuse"])
    run_t = _linear(40)
    by_noise = to_calls(sched, 40, NoiseClock(plan_t, run_t))
    assert len(_full(by_noise)) == len(_full(to_calls(sched, 40))) == 4
    for j, action in enumerate(by_noise.cache):
        middle = 1000 * (1 - (j + 0.5) / 40)  # the run's timestep halfway through call j
        if action != FULL and abs(middle - plan_t[5]) > 25:
            assert action == ("reuse" if middle < plan_t[5] else 0), (j, middle, plan_t[5])
    first_reuse = lambda s: s.cache.index("reuse")  # noqa: E731
    assert first_reuse(by_noise) >= 32 and first_reuse(to_calls(sched, 40)) <= 21


def test_strict_refuses_other_timesteps_at_the_same_call_count():
    from datosearch.dato.state import DaToContext
    from datosearch.space.schedule import ScheduleError

    sched = Schedule.deepcache(10, 2)
    ctx = DaToContext(sched, strict=True, plan_timesteps=_linear(10))
    assert ctx.plan_for(10, timesteps=_linear(10)) is sched
    with pytest.raises(ScheduleError, match="places them at other timesteps"):
        ctx.plan_for(10, "DPMSolverMultistepScheduler", timesteps=warp_timesteps(10, 0.9, 2.0, 1000))
    lenient = DaToContext(sched, plan_timesteps=_linear(10))
    assert lenient.plan_for(10, timesteps=warp_timesteps(10, 0.9, 2.0, 1000)).n_calls == 10
