"""Held-out evaluation (studies/heldout.py) and hand placements (space/placement.py)."""

from __future__ import annotations

import math

import pytest
import torch

from datosearch import models
from datosearch.models.digits import heldout_digits
from datosearch.space.placement import deepcache_nonuniform, from_full_calls, power_law, quad_center
from datosearch.space.trajectory import Trajectory
from datosearch.space.schedule import REUSE, Schedule, ScheduleError
from datosearch.studies import heldout as ho
from datosearch.studies.build import default_prompts

N_IMAGES, STEPS = 4, 10  # PNDM: 11 U-Net calls


def _protocol(n: int) -> tuple[list[str], list[int]]:
    protocol = ho.HeldoutProtocol(n)
    return protocol.prompts, protocol.seeds


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    p = models.load("embedded")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def converged(pipe):
    prompts, seeds = _protocol(N_IMAGES)
    return ho.converged_reference(pipe, prompts, seeds, steps=STEPS, check=2)


@pytest.fixture(scope="module")
def rows(pipe, converged):
    original = pipe.scheduler
    schedules = [None, Schedule.full(STEPS + 1), Schedule.full(5, scheduler="unipc", steps=5),
                 from_full_calls(STEPS + 1, [0, 3, 6, 9], REUSE).with_forecast(2)]
    out = ho.score_heldout(pipe, schedules, N_IMAGES, steps=STEPS, converged=converged, repeats=3, latency_images=1)
    assert pipe.scheduler is original, "score_heldout must restore the pipeline's scheduler"
    return out


# ----------------------------------------------------------------------------- seeds and prompts
def test_heldout_seeds_are_disjoint_from_calibration_seeds():
    prompts, seeds = _protocol(200)
    _, calib_seeds = default_prompts(10_000)
    assert not set(seeds) & set(calib_seeds)
    assert seeds[0] == ho.HELDOUT_SEED0 and len(set(seeds)) == 200
    assert prompts[:10] == default_prompts(10)[0] and prompts[13] == prompts[3]


def test_heldout_calibration_uses_pipeline_defaults(pipe):
    calib = ho.HeldoutProtocol(3).calibration(pipe)
    assert calib.seeds == [777000, 777001, 777002]
    assert calib.steps == 50 and calib.guidance == pytest.approx(1.5) and calib.height == 32


# ----------------------------------------------------------------------------- placements
@pytest.mark.parametrize("k, expected", [
    (10, [0, 5, 9, 13, 17, 21, 26, 31, 37, 43]),
    (7, [0, 7, 13, 18, 25, 32, 40]),
    (17, [0, 3, 6, 8, 11, 13, 15, 17, 20, 22, 25, 28, 32, 35, 38, 42, 46]),
])
def test_quad_center_reproduces_deepcache_positions(k, expected):
    assert quad_center(50, k, center=15, power=1.4) == expected


def test_quad_center_without_a_power_raises():
    with pytest.raises(ScheduleError, match="distinct"):
        quad_center(50, 49, center=15, power=1.4)


def test_deepcache_nonuniform_full_call_counts():
    s5, s8 = deepcache_nonuniform(51, 50, 5), deepcache_nonuniform(51, 50, 8)
    assert s5.counts()["full"] == 10 and s8.counts()["full"] == 7
    assert [t for t, a in enumerate(s8.cache) if a == "full"] == [0, 7, 13, 18, 25, 32, 40]
    assert set(s5.cache) == {"full", 0}


def test_power_law_placement():
    assert power_law(51, 5, 0.6) == [0, 19, 29, 38, 45]
    s = from_full_calls(25, power_law(25, 7, 0.6), REUSE, scheduler="unipc", steps=25).with_forecast(2)
    assert s.counts() == {"full": 7, "shallow": 0, "reuse": 18, "forecast": 18}
    assert s.trajectory == Trajectory("UniPCMultistepScheduler", 25) and s.forecast[1].order == 2
    with pytest.raises(ScheduleError):
        power_law(5, 5, 0.6)  # i=1..4 collide on 5 calls


# ----------------------------------------------------------------------------- scoring
def test_converged_reference_reports_its_check_and_caches(pipe, converged, tmp_path):
    assert converged.scheduler == "DPMSolverMultistepScheduler" and converged.images.shape == (N_IMAGES, 1, 32, 32)
    assert converged.check_images == 2 and converged.check_steps == 2 * STEPS
    assert 20 < converged.check_psnr_db < 100
    prompts, seeds = _protocol(2)
    first = ho.converged_reference(pipe, prompts, seeds, steps=4, check=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("reference-*.safetensors"))) == 1
    again = ho.converged_reference(pipe, prompts, seeds, steps=4, check=0, cache_dir=tmp_path)
    assert torch.equal(first.images, again.images) and again.check_psnr_db is None


def test_converged_reference_is_converged_and_leaves_the_pipeline_alone(pipe):
    """100 vs 200 DPM-Solver++ steps agree closely (linspace timesteps: the embedded config says "leading",
    under which 100 and 200 steps start at t=990 and t=995 and agree to only ~43 dB)."""
    own = pipe.scheduler
    prompts, seeds = _protocol(2)
    ref = ho.converged_reference(pipe, prompts, seeds, check=2)
    assert pipe.scheduler is own and own.config.timestep_spacing == "leading"
    assert ref.steps == 100 and ref.check_steps == 200 and ref.check_psnr_db > 55


def test_converged_reference_must_match_the_image_count(pipe, converged):
    with pytest.raises(ValueError, match="holds 4 images"):
        ho.score_heldout(pipe, [None], N_IMAGES + 1, steps=STEPS, converged=converged)


def test_the_converged_reference_states_its_own_realism(pipe, converged, monkeypatch):
    import dataclasses

    ref = dataclasses.replace(converged)
    assert ref.describe()["fid_real"] is None  # not scored yet
    seen = []
    monkeypatch.setattr(ho, "real_fid", lambda n, device: lambda images: seen.append(images) or 42.0)
    rows = ho.score_heldout(pipe, [None], N_IMAGES, steps=STEPS, converged=ref, repeats=1, latency_images=1)
    assert ref.describe()["fid_real"] == 42.0 and torch.equal(seen[0], converged.images)
    assert rows[0]["fid_real"] == 42.0


def test_full_compute_rows(rows):
    study, hooked = rows[0], rows[1]
    assert study["psnr_fullcompute"] == 100.0  # capped: identical images
    assert hooked["psnr_fullcompute"] >= 99.0  # a full schedule through the hooks is the same computation
    for r in rows[:2]:  # timed separately from the baseline in the same rounds: ≈ 1 within CPU noise
        assert 0.5 < r["speedup_vs_fullcompute"] < 2.0
    for r in rows[:2]:
        assert (r["unet_calls"], r["unet_computed"], r["full"]) == (STEPS + 1, STEPS + 1, STEPS + 1)
        assert r["scheduler"] == "PNDMScheduler" and r["steps"] == STEPS
        assert math.isfinite(r["psnr_converged"]) and r["psnr_converged"] < 100


def test_scheduler_swapping_schedule_runs_its_own_calls(rows):
    unipc = rows[2]
    assert unipc["scheduler"] == "UniPCMultistepScheduler" and unipc["steps"] == 5
    assert unipc["unet_calls"] == 5 and unipc["unet_computed"] == 5
    assert unipc["psnr_fullcompute"] < 60  # a different trajectory, not a copy of the full compute
    assert unipc["fid_real"] is None  # 4 images: too few for any FID-proxy feature dimension


def test_reuse_calls_are_counted_but_not_computed(rows):
    fc = rows[3]
    assert fc["unet_calls"] == STEPS + 1 and fc["unet_computed"] == 4
    assert (fc["full"], fc["reuse"], fc["forecast"]) == (4, 7, 7)
    assert fc["speedup_vs_fullcompute"] > 1.2


def test_real_fid_dimensions_and_zero_on_real_digits():
    assert ho.real_fid(N_IMAGES) is None
    fid = ho.real_fid(400)
    assert fid is not None and fid.num_features < len(heldout_digits()[0])
    assert fid(heldout_digits()[0]) < 1e-3
    assert fid(torch.rand(100, 1, 32, 32)) > 10


def test_converged_fid_is_zero_on_the_converged_images_themselves():
    digits = heldout_digits()[0][:200]
    ref = ho.ConvergedReference(digits, "DPMSolverMultistepScheduler", 100)
    assert ho.converged_fid(ho.ConvergedReference(digits[:N_IMAGES], "DPMSolverMultistepScheduler", 100)) is None
    fid = ho.converged_fid(ref)
    assert fid is not None and fid.num_features < len(digits)
    assert fid(digits) < 1e-3 and fid(torch.rand(200, 1, 32, 32)) > 10


# ----------------------------------------------------------------------------- dominance
def _row(name: str, speed: float, psnr: float, fid: float | None = None) -> dict:
    return {"name": name, "speedup_vs_fullcompute": speed, "psnr_converged": psnr, "fid_real": fid}


def test_dominates_thresholds():
    anchor = _row("N5", 4.0, 30.0, 100.0)
    assert ho.dominates(_row("a", 3.8, 31.0, 100.0), anchor)  # 0.95x speed, +1 dB
    assert not ho.dominates(_row("b", 3.7, 40.0, 10.0), anchor)  # too slow whatever the quality
    assert not ho.dominates(_row("c", 8.0, 30.9, 81.0), anchor)  # +0.9 dB, FID only 19 % lower
    assert ho.dominates(_row("d", 8.0, 30.0, 80.0), anchor)  # FID 20 % lower at the same PSNR
    assert not ho.dominates(_row("d2", 8.0, 29.9, 60.0), anchor)  # FID 40 % lower, but further from converged
    assert not ho.dominates(_row("e", 8.0, 30.5, None), anchor)  # no FID: PSNR decides
    assert ho.dominates(_row("g", 4.0, 31.0, 110.0), anchor)  # +1 dB, FID 10 % above: still a win
    assert not ho.dominates(_row("h", 4.0, 35.0, 111.0), anchor)  # +5 dB but FID 11 % above: a shift


EPS = 1e-6  # relative: each threshold is probed this close on either side


@pytest.mark.parametrize("field,at,worse", [
    ("speedup_vs_fullcompute", 0.95 * 4.0, -1),  # not slower than 0.95x the anchor's speedup
    ("psnr_converged", 30.0 + 1.0, -1),  # PSNR route: +1 dB ...
    ("fid_real", 1.10 * 100.0, +1),  # ... with a FID-proxy at most 10 % above the anchor's
], ids=["speed-tolerance", "psnr-margin", "fid-slack"])
def test_dominance_holds_exactly_up_to_each_threshold(field, at, worse):
    """The documented thresholds (0.95x speed, +1 dB, FID +10 %) hold to within EPS: a threshold moved by
    more than that (0.10 -> 0.105, say) fails here, where probes at 10 % and 11 % would not notice."""
    anchor = _row("N5", 4.0, 30.0, 100.0)
    win = {"speedup_vs_fullcompute": 4.0, "psnr_converged": 31.0, "fid_real": 100.0}
    assert ho.dominates({"name": "at", **win, field: at * (1 - worse * EPS)}, anchor)
    assert not ho.dominates({"name": "past", **win, field: at * (1 + worse * EPS)}, anchor)


def test_fid_route_holds_exactly_at_its_threshold():
    """The FID-proxy route: at least 20 % lower at no loss of PSNR, probed EPS either side of both."""
    anchor = _row("N5", 4.0, 30.0, 100.0)
    assert ho.dominates(_row("at", 4.0, 30.0, 80.0 * (1 - EPS)), anchor)
    assert not ho.dominates(_row("fid", 4.0, 30.0, 80.0 * (1 + EPS)), anchor)
    assert not ho.dominates(_row("psnr", 4.0, 30.0 * (1 - EPS), 60.0), anchor)
    assert ho.beaten_anchors(_row("f", 5.0, 32.0), [anchor, _row("N2", 2.0, 40.0), _row("N8", 5.2, 20.0)]) == \
        ["N5", "N8"]


def test_close_calls_are_quality_wins_near_the_speed_tolerance():
    anchor = _row("N5", 4.0, 30.0, 100.0)
    rows = [anchor,
            _row("near", 3.7, 32.0, 100.0),  # 0.925x its speed: within 8 % of the 0.95 tolerance, and +2 dB
            _row("clear", 4.5, 32.0, 100.0),  # 1.125x: a clear win whatever the noise
            _row("worse", 3.8, 30.5, 100.0),  # near on speed but no quality win: nothing to refine
            _row("slow", 3.0, 35.0, 100.0)]  # 0.75x: a clear loss
    assert ho.close_calls(rows, [(k, 0) for k in range(1, 5)]) == [0, 1]
    assert ho.close_calls(rows, [(0, 0)]) == []


def test_close_calls_get_more_timing_rounds(pipe, converged, monkeypatch):
    seen = []

    def close(rows, compare):
        seen.append((len(rows), list(compare)))
        return [1]

    monkeypatch.setattr(ho, "close_calls", close)
    schedules = [None, Schedule.full(5, scheduler="unipc", steps=5), Schedule.full(7, scheduler="unipc", steps=7)]
    rows = ho.score_heldout(pipe, schedules, N_IMAGES, steps=STEPS, converged=converged, repeats=2, latency_images=1,
                            compare=[(1, 0), (2, 0)], refine_factor=2)
    assert seen == [(3, [(1, 0), (2, 0)])]
    assert [r["timing_rounds"] for r in rows] == [2, 6, 2]
    lo, hi = rows[1]["speedup_range"]
    assert lo <= rows[1]["speedup_vs_fullcompute"] <= hi and rows[1]["unet_calls"] == 5


def test_a_front_member_that_is_also_an_anchor_is_scored_once(pipe, converged, monkeypatch):
    """verify.score_against_anchors generates and times each distinct schedule once; both rows carry its numbers."""
    from types import SimpleNamespace

    from datosearch.studies import verify

    calls: list[list[str]] = []
    options: list[dict] = []

    def fake_score(pipe, schedules, n_images, *, names, **kw):
        calls.append(list(names))
        options.append(kw)
        return [_row(n, 2.0 + k, 30.0 + k, 50.0) for k, n in enumerate(names)]

    monkeypatch.setattr(ho, "converged_reference", lambda *a, **kw: converged)
    monkeypatch.setattr(ho, "score_heldout", fake_score)
    unipc5 = Schedule.full(5, scheduler="unipc", steps=5)
    forecast = from_full_calls(STEPS + 1, [0, 3, 6, 9], REUSE).with_forecast(2)
    config = SimpleNamespace(guidance=1.5, model="embedded", steps=STEPS, scheduler="PNDMScheduler")
    out = verify.score_against_anchors([("unipc-5", unipc5), ("trial-3", forecast)],
                                       [("full", Schedule.full(STEPS + 1)), ("unipc-5", unipc5.with_forecast(0))],
                                       pipe, config, N_IMAGES)
    assert calls == [["unipc-5", "trial-3", "full"]]
    assert [r["name"] for r in out["front"]] == ["unipc-5", "trial-3"]
    assert [r["name"] for r in out["anchors"]] == ["full", "unipc-5"]
    assert out["anchors"][1]["psnr_converged"] == out["front"][0]["psnr_converged"] == 30.0
    assert out["front"][1]["beats"] == ["unipc-5"]  # +1 dB at 1.5x its speed; full (scored last) is better
    # every front x anchor pair is compared (indices into the unique schedules), close calls refined by default
    assert options[0]["compare"] == [(0, 2), (0, 0), (1, 2), (1, 0)]
    assert options[0]["refine_factor"] == ho.REFINE_FACTOR
    verify.score_against_anchors([("trial-3", forecast)], [("full", Schedule.full(STEPS + 1))], pipe, config,
                                 N_IMAGES, refine_factor=0)
    assert options[1]["refine_factor"] == 0
