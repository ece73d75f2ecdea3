"""Refined forecasting members (studies.refine): the search's best cached plan per count of full calls, chosen on
calibration images, computed once per study and enqueued as first-generation members."""

from __future__ import annotations

import pytest

from datosearch.objectives import paired_metrics
from datosearch.search.evaluator import generate
from datosearch.space.encoding import make_encoding
from datosearch.space.placement import full_positions
from datosearch.space.schedule import FULL, REUSE
from datosearch.space.trajectory import swapped
from datosearch.studies import refine
from datosearch.studies.build import calibration
from datosearch.studies.launch import refined_calls
from search_helpers import embedded_study


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    pipe, config, reference = embedded_study()
    cache = tmp_path_factory.mktemp("refine")
    members = refine.refined_members(pipe, config, reference, cache, calls=(3, 4), trials=6)
    return pipe, config, reference, cache, members


def test_members_have_k_full_calls_forecast_reuse_and_searched_timesteps(embedded):
    pipe, config, reference, _, members = embedded
    assert [m.counts()["full"] for m in members] == [3, 4]
    for k, member in zip((3, 4), members):
        traj = member.trajectory
        assert traj.scheduler == "DPMSolverMultistepScheduler" and k < traj.steps <= 2 * k
        assert member.n_calls == traj.calls(pipe.scheduler.config) and member.cache[0] == FULL
        assert all(a == REUSE and c in member.forecast for c, a in enumerate(member.cache) if a != FULL)
        full = [c for c, a in enumerate(member.cache) if a == FULL]  # the start's alternation: the search moved only timesteps
        assert full == full_positions(traj.steps, k, refine.PLACED["power"], refine.PLACED["center"], True) and \
            full[-2:] == [traj.steps - 2, traj.steps - 1]
        assert list(traj.timesteps) == sorted(traj.timesteps, reverse=True) and member.meta["name"] == f"refined-{k}"


def test_the_member_is_the_best_of_its_search_on_the_calibration_images(embedded, monkeypatch):
    pipe, config, reference, cache, members = embedded
    seen: list[float] = []
    real = refine.paired_metrics

    def record(images, ref):
        out = real(images, ref)
        seen.append(out["psnr"])
        return out

    monkeypatch.setattr(refine, "paired_metrics", record)
    again = refine.refined_members(pipe, config, reference, None, calls=(3,), trials=6)  # no cache: searched
    combinations = len(refine.switch_combinations(refine.SOLVER))  # the start tried with every config switch
    assert combinations == 4 and len(seen) == 6  # then GP for the rest of the 6 evaluations
    assert again[0].to_dict() == members[0].to_dict()  # seeded: the same search
    from datosearch import dato
    handle = dato.apply(pipe, again[0])
    try:
        with swapped(pipe, again[0].trajectory):
            images = generate(pipe, calibration(config), trajectory=again[0].trajectory)
    finally:
        handle.remove()
    assert paired_metrics(images, reference)["psnr"] == pytest.approx(max(seen), abs=1e-6)


def test_a_second_call_reads_the_cache(embedded, monkeypatch):
    pipe, config, reference, cache, members = embedded
    monkeypatch.setattr(refine, "search", lambda *a, **k: pytest.fail("searched again"))
    again = refine.refined_members(pipe, config, reference, cache, calls=(3, 4), trials=6)
    assert [m.to_dict() for m in again] == [m.to_dict() for m in members]


def test_another_sampler_seed_searches_again(embedded, monkeypatch):
    """GP is seeded with the study's sampler seed: a study of another seed in the same directory searches anew."""
    pipe, config, reference, cache, members = embedded
    searched: list[int] = []
    monkeypatch.setattr(refine, "search", lambda ev, ref, k, *a, **kw: searched.append(k) or (members[0], 0.0))
    other = type(config)(**{**vars(config), "sampler_seed": (config.sampler_seed or 0) + 1})
    refine.refined_members(pipe, other, reference, cache, calls=(3, 4), trials=6)
    assert searched == [3, 4]


def test_only_studies_searching_the_trajectory_with_reuse_get_them(embedded):
    _, config, _, _, _ = embedded
    assert refined_calls(config) == [5, 7, 10]  # the default study: PLMS 50, 51 calls
    own = dict(config.encoding, trajectories=config.encoding["trajectories"][:1])
    assert refined_calls(type(config)(**{**vars(config), "encoding": own})) == []
    assert refined_calls(type(config)(**{**vars(config), "encoding": dict(config.encoding, n_calls=12)})) == [5]


@pytest.mark.parametrize("extra, final", [(1, "zero"), (5, "sigma_min"), (7, "zero")])
def test_a_member_is_enqueued_by_genes_that_express_it_exactly(embedded, extra, final):
    """Evolution varies the refined plan itself, not its nearest listed neighbour (issue 31), config switches too."""
    _, config, _, _, _ = embedded
    enc = make_encoding(config.encoding)
    params = {"extra": extra, "tstart": 0.913, "tpow": 1.618, "power": 0.77, "center": 0.13, "last": True,
              "order": 2, "damping": 0.75, "final_sigmas_type": final}
    member = refine.cached_plan(params, 7, 1000, phases=config.encoding["phases"])
    assert member.trajectory.config.get("final_sigmas_type", "zero") == final
    genes = enc.encode(member)
    assert genes is not None and genes["traj"] == f"DPMSolverMultistepScheduler:{7 + extra}"
    assert (genes["tstart"], genes["tpow"], genes["warp"]) == (0.913, 1.618, 0.77)
    assert (genes["dpm.final_sigmas_type"], genes["dpm.solver_type"]) == (final, "midpoint")
    decoded = enc.decode(genes)
    assert (decoded.cache, decoded.forecast, decoded.trajectory) == (member.cache, member.forecast, member.trajectory)
