"""The latency cost model: feature counts, exact recovery from a linear timer, determinism, errors."""

from __future__ import annotations

import json

import pytest

from datosearch.dato.caching import skipped_modules
from datosearch.models.tiny import tiny_unet
from datosearch.objectives.costmodel import (
    CostModel,
    CostModelError,
    PlanLayout,
    calibrate,
    fit,
    plan_features,
    time_interleaved,
)
from datosearch.space.layout import transformer_blocks
from datosearch.space.schedule import FULL, REUSE, PruneConfig, Schedule
from datosearch.space.trajectory import Trajectory

PNDM, UNIPC = "PNDMScheduler", "UniPCMultistepScheduler"
TOP = "down_blocks.0.attentions.0.transformer_blocks.0"

# Synthetic per-call costs (seconds), independent of plan_features.
CONST, STEP = {"": 0.5}, {PNDM: 0.01, UNIPC: 0.02}
FULL_S, SHALLOW_S, FORECAST_S = 0.2, {0: 0.03, 1: 0.07, 2: 0.11}, 0.004
PRUNE_OVERHEAD, PRUNE_SLOPE = {0: 0.002, 1: 0.003, 2: 0.001}, {0: -0.006, 1: -0.004, 2: -0.002}


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def n_calls_of(scheduler: str, steps: int) -> int:
    return steps + 1 if scheduler in ("pndm", PNDM) else steps


def synthetic_seconds(unet, schedule: Schedule) -> float:
    """An exactly linear latency, computed per call from skipped_modules (not from plan_features)."""
    levels = {b.path: b.level for b in transformer_blocks(unet)}
    sched = UNIPC if schedule.trajectory is not None and schedule.trajectory.scheduler == UNIPC else PNDM
    total = CONST[""]
    for t, action in enumerate(schedule.cache):
        total += STEP[sched] + (FORECAST_S if t in schedule.forecast else 0.0)
        if action == REUSE:
            continue
        total += FULL_S if action == FULL else SHALLOW_S[action]
        cut = [] if action == FULL else skipped_modules(unet, action)
        for block, level in levels.items():
            r = schedule.prune.ratio(block, t)
            if r > 0 and not any(block.startswith(c + ".") for c in cut):
                total += PRUNE_OVERHEAD[level] + PRUNE_SLOPE[level] * r
    return total


@pytest.fixture(scope="module")
def model(unet) -> CostModel:
    return calibrate(lambda s: synthetic_seconds(unet, s), unet, n_calls_of, ["pndm", "unipc"], [3, 8],
                     repeats=1, warmup=0, device="test-cpu")


def test_feature_counts_of_a_hand_checked_schedule(unet):
    # tiny U-Net: branch 0 cuts all of down_blocks.0 (TOP is not computed), branch 1 keeps its first layer.
    assert "down_blocks.0" in skipped_modules(unet, 0) and "down_blocks.0" not in skipped_modules(unet, 1)
    s = Schedule([FULL, 0, REUSE, 1, FULL], PruneConfig({TOP: 0.5}))
    s = Schedule(s.cache, s.prune, forecast=Schedule([FULL, 0, REUSE], s.prune).with_forecast(1).forecast)
    f = plan_features(s, unet, 5, "pndm")
    assert f == {"const": 1.0, f"calls:{PNDM}": 5.0, "full": 2.0, "shallow:0": 1.0, "shallow:1": 1.0,
                 "forecast": 2.0, "pruned:L0": 3.0, "prune:L0": 1.5}


def test_full_compute_and_call_scale_features(unet):
    n_blocks = len(transformer_blocks(unet))
    assert plan_features(None, unet, 4, UNIPC) == {"const": 1.0, f"calls:{UNIPC}": 4.0, "full": 4.0}
    ratios = {b.path: 0.5 for b in transformer_blocks(unet) if b.level == 1}
    s = Schedule([FULL] * 3, PruneConfig(ratios, call_scale=[0.0, 1.0, 1.5]))
    f = plan_features(s, unet, None, PNDM)
    assert f["pruned:L1"] == 2 * len(ratios) and f["prune:L1"] == pytest.approx(len(ratios) * (0.5 + 0.75))
    assert "pruned:L0" not in f and len(ratios) < n_blocks
    with pytest.raises(CostModelError, match="plans 3 calls, not 4"):
        plan_features(s, unet, 4, PNDM)


def test_recovers_known_coefficients_exactly(model, unet):
    c = model.coefficients
    expected = {"const": CONST[""], f"calls:{PNDM}": STEP[PNDM], f"calls:{UNIPC}": STEP[UNIPC], "full": FULL_S,
                "forecast": FORECAST_S, **{f"shallow:{b}": v for b, v in SHALLOW_S.items()},
                **{f"pruned:L{g}": v for g, v in PRUNE_OVERHEAD.items()},
                **{f"prune:L{g}": v for g, v in PRUNE_SLOPE.items()}}
    assert set(c) == set(expected)
    for k, v in expected.items():
        assert c[k] == pytest.approx(v, rel=1e-7, abs=1e-10), k
    assert model.stats["r2"] == pytest.approx(1.0) and model.stats["max_rel_err"] < 1e-9
    assert model.schedulers == [PNDM, UNIPC] and model.device == "test-cpu"
    # An unseen schedule mixing everything is predicted exactly.
    blocks = [b.path for b in transformer_blocks(unet)]
    s = Schedule([FULL, 2, REUSE, 0, 1, FULL, REUSE, 2], PruneConfig({b: 0.3 for b in blocks}),
                 {"scheduler": "unipc", "steps": 8})
    s = s.with_forecast(2)
    assert model.predict(s) == pytest.approx(synthetic_seconds(unet, s), rel=1e-9)


def test_full_plan_predicts_the_calibrated_full_time(model, unet):
    full = next(p for p in model.stats["points"] if p["name"] == f"full-{PNDM}-8")
    assert model.predict(Schedule.full(9)) == pytest.approx(full["measured_s"], rel=1e-9)
    assert model.predict(None, n_calls=9) == model.predict(Schedule.full(9, scheduler="pndm"))


def test_predictions_are_deterministic_and_round_trip_json(model, unet):
    s = Schedule.deepcache(9, 3, 1).with_forecast(1)
    data = json.loads(json.dumps(model.to_dict()))
    again = CostModel.from_dict(data)
    assert again.to_dict() == model.to_dict()
    assert again.predict(s) == model.predict(s)  # bit-identical after the JSON round trip
    assert model.predict(s) == pytest.approx(synthetic_seconds(unet, s), rel=1e-9)  # and the right value
    recalibrated = calibrate(lambda x: synthetic_seconds(unet, x), unet, n_calls_of, ["pndm", "unipc"], [3, 8],
                             repeats=1, warmup=0, device="test-cpu")
    assert recalibrated.coefficients == model.coefficients  # the same timings give the same fit, bit for bit
    assert recalibrated.predict(s) == model.predict(s)


def test_negative_costs_are_clamped_and_the_rest_refitted():
    rows = [{"const": 1, "full": n, "forecast": f} for n, f in [(1, 0), (2, 0), (3, 1), (4, 2), (5, 0)]]
    times = [1 + 0.1 * r["full"] - 0.01 * r["forecast"] for r in rows]  # a "negative" forecast cost
    c = fit(rows, times, relative=False)
    assert c["forecast"] == 0.0 and c["full"] > 0
    slope = fit([{"const": 1, "prune:L0": r} for r in (0, 1, 2)], [1.0, 0.9, 0.8], relative=False)
    assert slope["prune:L0"] == pytest.approx(-0.1)  # savings may be negative


def test_unidentifiable_or_empty_designs_raise(model, unet):
    with pytest.raises(CostModelError, match="without timed schedules"):
        fit([], [])
    rows = [{"const": 1, "full": n, "shallow:0": n} for n in (1, 2, 3)]
    with pytest.raises(CostModelError, match="not separable: full, shallow:0"):
        fit(rows, [1.0, 2.0, 3.0])
    nearly = [{"const": 1, "full": n, "shallow:0": n * (1 + 1e-12 * (n == 3))} for n in (1, 2, 3)]
    with pytest.raises(CostModelError, match="does not identify"):
        fit(nearly, [1.0, 2.0, 3.0])
    with pytest.raises(CostModelError, match="two distinct step counts"):
        calibrate(lambda s: 1.0, unet, n_calls_of, ["pndm"], [5, 5])
    with pytest.raises(CostModelError, match="not calibrated for DDIMScheduler"):
        model.predict(Schedule([FULL] * 4, trajectory=Trajectory("ddim", 3)))


def test_time_interleaved_is_round_robin_with_medians():
    calls: list[str] = []
    values = iter([9.0, 9.0, 1.0, 5.0, 3.0, 4.0, 2.0, 6.0])

    def timer(s: Schedule) -> float:
        calls.append(s.meta["tag"])
        return next(values)

    a, b = Schedule.full(2, tag="a"), Schedule.full(2, tag="b")
    assert time_interleaved(timer, [a, b], repeats=3, warmup=1, shuffle=False) == [2.0, 5.0]
    assert calls == ["a", "b"] * 4
    calls.clear()
    many = [Schedule.full(2, tag=str(i)) for i in range(6)]

    def record(s: Schedule) -> float:
        calls.append(s.meta["tag"])
        return float(len(calls))

    time_interleaved(record, many, repeats=4, warmup=1)
    rounds = [calls[i:i + 6] for i in range(0, 30, 6)]
    assert rounds[0] == [str(i) for i in range(6)]  # warm-up in order
    assert all(sorted(r) == sorted(rounds[0]) for r in rounds) and len({tuple(r) for r in rounds[1:]}) > 1


def test_layout_groups_by_block(unet):
    layout = PlanLayout.of(unet, group_by="block")
    assert set(layout.groups.values()) == {b.path for b in transformer_blocks(unet)}
    assert TOP not in layout.computed[0] and TOP in layout.computed[1]
    with pytest.raises(CostModelError, match="group_by"):
        PlanLayout.of(unet, group_by="resolution")


def test_process_clock_ignores_time_spent_waiting():
    import time

    from datosearch.objectives import ObjectiveError, measure_latency

    wall = measure_latency(lambda: time.sleep(0.05), warmup=0, repeats=1).median_s
    cpu = measure_latency(lambda: time.sleep(0.05), warmup=0, repeats=1, clock="process").median_s
    assert wall >= 0.05 > 0.02 > cpu
    with pytest.raises(ObjectiveError, match="unknown clock"):
        measure_latency(lambda: None, clock="thread")


def test_scaled_model_keeps_speedups(model):
    s = Schedule.deepcache(9, 3, 2)
    double = model.scaled(2.0)
    assert double.predict(s) == pytest.approx(2 * model.predict(s))
    assert double.predict(None, n_calls=9) / double.predict(s) == pytest.approx(
        model.predict(None, n_calls=9) / model.predict(s))
    assert double.stats["scale"] == 2.0 and model.stats.get("scale", 1.0) == 1.0
