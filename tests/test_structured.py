"""The structured encoding: placement warp, anchors, operators (valid children), NSGA-II end to end."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from hypothesis import given, settings, strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from datosearch.space.trajectory import Trajectory, warp_timesteps
from datosearch.models.tiny import tiny_unet
from datosearch.search import anchor_schedules, enqueue_anchors, make_sampler, run_until
from datosearch.search.anchors import fewer_steps_anchor
from datosearch.search.runner import ANCHOR_ATTR, KEY_ATTR, PLAN_ATTR, enqueue_initial
from datosearch.search.variation import StructuredVariation
from datosearch.space.encoding import EncodingConfig, make_encoding
from datosearch.space.layout import transformer_blocks
from datosearch.space.schedule import FULL, REUSE, Schedule
from datosearch.space.placement import full_positions
from search_helpers import FakeEvaluator

UNET = tiny_unet()
BLOCKS = [b.path for b in transformer_blocks(UNET)]
TRAJ = [{"scheduler": "PNDMScheduler", "steps": 50, "calls": 51},
        {"scheduler": "UniPCMultistepScheduler", "steps": 25, "calls": 25},
        {"scheduler": "UniPCMultistepScheduler", "steps": 10, "calls": 10}]


def structured(**kw) -> EncodingConfig:
    return EncodingConfig(**{"n_calls": 51, "blocks": BLOCKS, "branches": [0, 1], "kind": "structured", **kw})


def _within(value, dist) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        return dist.low <= value <= dist.high
    return False


@pytest.mark.parametrize("n, k", [(51, 10), (51, 17), (25, 7), (10, 10), (51, 1)])
@pytest.mark.parametrize("power, center", [(1.0, 0.0), (0.5, 0.0), (2.0, 0.0), (1.4, 0.3), (3.0, 1.0)])
def test_placement_has_exactly_k_distinct_calls_starting_at_zero(n, k, power, center):
    pos = full_positions(n, k, power, center)
    assert len(set(pos)) == len(pos) == k and pos[0] == 0 and pos == sorted(pos) and pos[-1] < n


@pytest.mark.parametrize("n, k", [(8, 5), (51, 10), (13, 7), (5, 5), (51, 1), (10, 2)])
@pytest.mark.parametrize("power, center", [(1.0, 0.0), (0.5, 0.0), (2.0, 0.0), (1.4, 0.3), (3.0, 1.0)])
def test_placement_ending_on_the_last_call(n, k, power, center):
    pos = full_positions(n, k, power, center, last=True)
    assert len(set(pos)) == len(pos) == k and pos[0] == 0 and pos == sorted(pos)
    assert pos[-1] == (n - 1 if k > 1 else 0)


def test_last_gene_spreads_the_full_calls_to_the_end_and_stored_studies_lack_it():
    cfg = structured(trajectories=TRAJ, last_gene=True)
    enc = make_encoding(cfg)
    assert enc.distributions()["last"].choices == (False, True)
    params = {"traj": "UniPCMultistepScheduler:10", "full": 5, "warp": 1.0, "center": 0.0, "last": True,
              **{f"{g}{p}": v for p in range(3) for g, v in (("act", REUSE), ("ord", 2), ("damp", 1.0))},
              **{f"r:{b}": 0.0 for b in BLOCKS}}
    fulls = lambda s: [t for t, a in enumerate(s.cache) if a == FULL]  # noqa: E731
    assert fulls(enc.decode(params)) == [0, 2, 5, 8, 9]
    assert fulls(enc.decode({**params, "last": False})) == [0, 2, 4, 6, 8]
    schedule = enc.decode(params)
    assert enc.encode(schedule)["last"] is True and enc.decode(enc.encode(schedule)).key() == schedule.key()
    stored = {k: v for k, v in cfg.to_dict().items() if k != "last_gene"}  # a study stored before the gene
    old = make_encoding(EncodingConfig(**EncodingConfig.normalised(stored)))
    assert "last" not in old.distributions()
    assert fulls(old.decode({k: v for k, v in params.items() if k != "last"})) == [0, 2, 4, 6, 8]


def test_warp_expresses_uniform_late_early_and_center_dense():
    uniform = full_positions(51, 10, 1.0, 0.0)
    assert uniform == [0, 5, 10, 15, 20, 26, 31, 36, 41, 46]
    gaps = lambda p: [b - a for a, b in zip(p, p[1:])]  # noqa: E731
    late, early = gaps(full_positions(51, 10, 0.5, 0.0)), gaps(full_positions(51, 10, 2.0, 0.0))
    assert late[0] > late[-1] and early[0] < early[-1]
    center = gaps(full_positions(51, 10, 2.0, 0.4))  # dense around 40 % of the trajectory
    mid = full_positions(51, 10, 2.0, 0.4).index(min(full_positions(51, 10, 2.0, 0.4), key=lambda t: abs(t - 20)))
    assert center[mid] < center[0] and center[mid] < center[-1]


def test_decode_places_phases_forecasts_and_trajectory():
    enc = make_encoding(structured(trajectories=TRAJ))
    params = {"traj": "UniPCMultistepScheduler:25", "full": 5, "warp": 1.0, "center": 0.0,
              "act0": "b0", "ord0": 0, "damp0": 1.0, "act1": REUSE, "ord1": 2, "damp1": 0.5,
              "act2": "b1", "ord2": 1, "damp2": 1.0, **{f"r:{b}": 0.0 for b in BLOCKS}}
    s = enc.decode(params)
    assert s.n_calls == 25 and s.trajectory == Trajectory("UniPCMultistepScheduler", 25) and s.meta == {}
    assert [t for t, a in enumerate(s.cache) if a == FULL] == [0, 5, 10, 15, 20]
    assert s.cache[1] == 0 and 1 not in s.forecast  # early phase: shallow, no forecast
    assert s.cache[12] == REUSE and (s.forecast[12].order, s.forecast[12].damping) == (2, 0.5)
    assert s.cache[24] == 1 and s.forecast[24].order == 1


def test_anchors_encode_exactly_or_nearest_and_are_evaluated_exactly():
    cfg = structured(trajectories=TRAJ)
    enc = make_encoding(cfg)
    anchors = anchor_schedules(UNET, 51, [TRAJ[2], {"scheduler": "PNDMScheduler", "steps": 7, "calls": 8}])
    exact = [a.meta["name"] for a in anchors if enc.encode(a) is not None]
    assert {"full", "deepcache-N3-b0", "unipc-10"} <= set(exact)  # 17 full calls of 51 lie on the uniform warp
    for a in anchors:
        params = enc.encode(a)
        if params is not None:
            assert enc.decode(params).key() == a.key()
        genes = params or enc.nearest(a)
        assert genes is not None and set(genes) == set(enc.distributions())
        assert all(_within(v, enc.distributions()[k]) for k, v in genes.items())
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler("nsga2", 4, 0, cfg))
    assert enqueue_anchors(study, anchors, enc) == []
    evaluator = FakeEvaluator()
    run_until(study, evaluator, enc, len(anchors))
    assert evaluator.calls == [a.key() for a in anchors]  # each anchor evaluated as it is, not as its genes
    planned = [t for t in study.trials if PLAN_ATTR in t.user_attrs]
    assert planned and all(t.user_attrs[KEY_ATTR] == Schedule.from_dict(t.user_attrs[PLAN_ATTR]).key() for t in planned)


def test_initial_population_spreads_over_the_speed_range():
    enc = make_encoding(structured(trajectories=TRAJ))
    members = [enc.decode(p) for p in enc.initial()]
    fulls = sorted({m.counts()["full"] for m in members})
    assert fulls[0] <= 3 and fulls[-1] >= 20 and len(fulls) >= 8
    assert any(m.forecast for m in members) and any(not m.forecast for m in members)
    assert {m.trajectory.steps if m.trajectory else None for m in members} == {None, 25, 10}
    # forecasting members: every non-full call a forecast reuse, at about CALLS_PER_FULL calls per full call
    forecasting = [m for m in members if m.trajectory]
    assert sorted(m.counts()["full"] for m in forecasting) == [4, 5, 7, 10, 14, 20]
    for m in forecasting:
        assert m.counts()["reuse"] == m.counts()["forecast"] == m.n_calls - m.counts()["full"]


def test_initial_forecasting_members_end_on_a_full_call_with_the_last_gene():
    trajs = [TRAJ[0]] + [{"scheduler": s, "steps": n, "calls": n} for s in ("UniPCMultistepScheduler",
                         "DPMSolverMultistepScheduler") for n in (6, 8, 10, 12, 15, 20, 25, 30)]
    enc = make_encoding(structured(trajectories=trajs, last_gene=True))
    genomes = enc.initial()
    assert all("last" in g for g in genomes)
    forecasting = [enc.decode(g) for g in genomes if g["traj"] != "PNDMScheduler:50"]
    assert sorted({m.counts()["full"] for m in forecasting}) == [4, 5, 7, 10, 14, 20]
    assert all(m.cache[-1] == FULL and m.counts()["forecast"] == m.n_calls - m.counts()["full"] for m in forecasting)
    assert {(f.order, f.damping) for m in forecasting for f in m.forecast.values()} == {(2, 1.0)}
    by_full = {m.counts()["full"]: m.n_calls for m in forecasting}
    assert by_full[5] == 8 and by_full[7] == 12  # about 1.7 solver steps per full call
    assert [t for t, a in enumerate(next(m for m in forecasting if m.n_calls == 8).cache) if a == FULL] == \
        [0, 2, 4, 6, 7]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_child_of_the_operators_is_a_valid_schedule(data):
    cfg = structured(trajectories=TRAJ, last_gene=data.draw(st.booleans()))
    enc = make_encoding(cfg)
    dists = enc.distributions()

    def genome():
        out = {}
        for name, d in dists.items():
            if isinstance(d, CategoricalDistribution):
                out[name] = data.draw(st.sampled_from(d.choices))
            elif isinstance(d, IntDistribution):
                out[name] = data.draw(st.integers(d.low, d.high))
            else:
                out[name] = data.draw(st.floats(d.low, d.high))
        return out

    variation = StructuredVariation(enc, data.draw(st.integers(0, 2**31 - 1)))
    child = variation.mutate(variation.crossover(genome(), genome()))
    if child.get("last") and child["full"] > 1:
        assert enc.decode(child).cache[-1] == FULL
    assert set(child) == set(dists) and all(_within(v, dists[k]) for k, v in child.items())
    schedule = enc.decode(child)
    schedule.validate_for(UNET)
    assert schedule.cache[0] == FULL and schedule.counts()["full"] == min(child["full"], schedule.n_calls)


def test_nsga2_children_come_from_the_structured_variation_and_repeat_no_schedule():
    cfg = structured()
    sampler = make_sampler("nsga2", 6, 0, cfg)
    strategy = sampler._child_generation_strategy
    assert isinstance(strategy, StructuredVariation)
    made: list[dict] = []
    original = strategy.__call__
    strategy.__class__ = type("Recording", (StructuredVariation,), {
        "__call__": lambda self, *a: made.append(original(*a)) or made[-1]})
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    n_initial = enqueue_initial(study, cfg)
    run_until(study, FakeEvaluator(), cfg, n_initial + 12)
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in study.trials]
    assert generations[:12] == [0] * 6 + [1] * 6  # enqueued members count in NSGA-II's generations
    children = study.trials[n_initial:]
    assert len(children) == 12 and all(t.params in made for t in children)
    keys = [t.user_attrs[KEY_ATTR] for t in study.trials]
    assert len(set(keys)) >= len(keys) - 2  # children rarely repeat an evaluated schedule


def test_trajectory_mutation_moves_to_a_neighbour():
    trajs = [{"scheduler": "PNDMScheduler", "steps": 50, "calls": 51}] + [
        {"scheduler": s, "steps": n, "calls": n} for s in ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler")
        for n in (10, 15, 20, 25)]
    variation = StructuredVariation(make_encoding(structured(trajectories=trajs)), 0)
    seen = {variation._neighbour_trajectory("UniPCMultistepScheduler:15") for _ in range(60)}
    assert seen == {"UniPCMultistepScheduler:10", "UniPCMultistepScheduler:20", "DPMSolverMultistepScheduler:15",
                    "PNDMScheduler:50"}


# ----------------------------------------------------------------------------- timestep genes (issue 30)
TIMESTEP_TRAJ = [{"scheduler": "PNDMScheduler", "steps": 24, "calls": 25},
                 {"scheduler": "DPMSolverMultistepScheduler", "steps": 7, "calls": 7},
                 {"scheduler": "DPMSolverMultistepScheduler", "steps": 25, "calls": 25},
                 {"scheduler": "UniPCMultistepScheduler", "steps": 10, "calls": 10}]


def _timestep_encoding():
    return make_encoding(structured(n_calls=25, trajectories=TIMESTEP_TRAJ, timestep_genes=True))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_timestep_genes_decode_to_valid_timesteps_for_every_value(data):
    enc = _timestep_encoding()
    dists = enc.distributions()
    assert isinstance(dists["tstart"], FloatDistribution) and isinstance(dists["tpow"], FloatDistribution)
    params = {**enc.initial()[0], "traj": data.draw(st.sampled_from(dists["traj"].choices))}
    for gene in ("tstart", "tpow"):
        d = dists[gene]
        params[gene] = data.draw(st.one_of(st.just(d.low), st.just(d.high), st.floats(d.low, d.high)))
    s = enc.decode(params)
    steps = int(params["traj"].split(":")[1])
    if params["traj"].startswith("DPMSolver"):
        t = s.trajectory.timesteps
        assert len(t) == steps and all(a > b for a, b in zip(t, t[1:])) and 1 <= t[-1] and t[0] <= 999
    else:
        assert s.trajectory is None or s.trajectory.timesteps is None  # PNDM, UniPC take no timesteps=


def test_timestep_genes_round_trip_and_stored_studies_lack_them():
    enc = _timestep_encoding()
    member = next(p for p in enc.initial() if p.get("traj", "").startswith("DPMSolver"))
    s = enc.decode(member)
    assert s.trajectory.timesteps == warp_timesteps(s.trajectory.steps, 0.9, 1.7)
    assert enc.decode(enc.encode(s)) == s  # the warp genes are found again (exact encoding)
    tuned = replace(s, trajectory=replace(s.trajectory, timesteps=(900, 690, 508, 350, 214, 108, 34)))
    nearest = enc.nearest(tuned)
    assert nearest is not None and enc.encode(tuned) is None  # not on the warp family: nearest genes only
    stored = {k: v for k, v in structured(n_calls=25, trajectories=TIMESTEP_TRAJ).to_dict().items() if k != "timestep_genes"}
    old = make_encoding(EncodingConfig.normalised(stored))
    assert "tstart" not in old.distributions()  # a study stored before the genes decodes as before
    assert old.decode({k: v for k, v in member.items() if k not in ("tstart", "tpow")}).trajectory.timesteps is None


def test_variation_moves_the_timestep_genes():
    enc = _timestep_encoding()
    var = StructuredVariation(enc, seed=0)
    member = next(p for p in enc.initial() if p.get("traj", "").startswith("DPMSolver"))
    moved = [var.mutate(member) for _ in range(200)]
    assert any(m["tstart"] != member["tstart"] for m in moved)
    assert all(0.7 <= m["tstart"] <= 1.0 and 1.0 <= m["tpow"] <= 3.0 for m in moved)


def test_crossover_takes_the_timesteps_from_either_parent_as_one_pair():
    enc = _timestep_encoding()
    var = StructuredVariation(enc, seed=0)
    dpm = [p for p in enc.initial() if p.get("traj", "").startswith("DPMSolver")]
    slow = {**max(dpm, key=lambda p: p["full"]), "tstart": 0.9, "tpow": 1.7}
    tuned = {**min(dpm, key=lambda p: p["full"]), "tstart": 0.95, "tpow": 1.5}
    assert slow["traj"] != tuned["traj"]
    children = [var.crossover(slow, tuned) for _ in range(200)]
    pairs = {(c["traj"], c["full"], c["tstart"], c["tpow"]) for c in children}
    assert (slow["traj"], slow["full"], 0.95, 1.5) in pairs  # a slow plan on the tuned warp
    assert (tuned["traj"], tuned["full"], 0.9, 1.7) in pairs
    assert all((c["tstart"], c["tpow"]) in {(0.9, 1.7), (0.95, 1.5)} for c in children)  # the pair stays whole
    assert all(c["full"] == (slow if c["traj"] == slow["traj"] else tuned)["full"] for c in children)  # block whole


# ----------------------------------------------------------------------------- config-switch genes (issue 30)
def _switch_encoding(**kw):
    return make_encoding(structured(n_calls=25, trajectories=TIMESTEP_TRAJ, timestep_genes=True, option_genes=True, **kw))


@pytest.mark.parametrize("final, solver_type", [("zero", "midpoint"), ("sigma_min", "midpoint"), ("zero", "heun"),
                                                ("sigma_min", "heun")])
def test_switch_genes_write_the_config_and_round_trip(final, solver_type):
    enc = _switch_encoding()
    dists = enc.distributions()
    assert dists["dpm.final_sigmas_type"].choices == ("zero", "sigma_min")
    assert "unipc.solver_type" not in dists  # bh1 gave NaN images on the embedded model (SWITCHES)
    assert dists["unipc.disable_corrector"].choices == ("[]", "[0]")  # a list, as Optuna's categorical holds it
    member = next(p for p in enc.initial() if p.get("traj", "").startswith("DPMSolver"))
    assert (member["dpm.final_sigmas_type"], member["dpm.solver_type"]) == ("zero", "midpoint")  # diffusers' defaults
    params = {**member, "dpm.final_sigmas_type": final, "dpm.solver_type": solver_type}
    s = enc.decode(params)
    want = {k: v for k, v in (("final_sigmas_type", final), ("solver_type", solver_type))
            if v not in ("zero", "midpoint")}
    assert dict(s.trajectory.config) == want  # only what differs from the default is written
    s.trajectory.calls({"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                        "beta_end": 0.012})  # diffusers builds and places it
    assert enc.decode(enc.encode(s)) == s and enc.encode(s)["dpm.final_sigmas_type"] == final
    assert enc.nearest(s)["dpm.solver_type"] == solver_type


def test_switch_genes_ignored_off_their_solver_and_absent_from_stored_studies():
    enc = _switch_encoding()
    unipc = next(p for p in enc.initial() if p.get("traj", "").startswith("UniPC"))
    flipped = {**unipc, "dpm.final_sigmas_type": "sigma_min"}
    assert enc.decode(flipped) == enc.decode(unipc)  # a DPM-Solver++ switch does nothing on UniPC
    no_corrector = enc.decode({**unipc, "unipc.disable_corrector": "[0]"})
    assert dict(no_corrector.trajectory.config) == {"disable_corrector": [0]}  # the config value, not its text
    assert enc.encode(no_corrector)["unipc.disable_corrector"] == "[0]"
    assert no_corrector.trajectory.build({"num_train_timesteps": 1000}).config.disable_corrector == [0]
    own = {**enc.initial()[0], "dpm.final_sigmas_type": "sigma_min"}
    assert enc.decode(own).trajectory is None  # the study's own trajectory keeps the pipeline's scheduler
    stored = {k: v for k, v in structured(n_calls=25, trajectories=TIMESTEP_TRAJ, timestep_genes=True).to_dict().items()
              if k != "option_genes"}
    old = make_encoding(EncodingConfig.normalised(stored))
    assert not {"dpm.final_sigmas_type", "dpm.solver_type"} & set(old.distributions())  # decodes as before
    member = next(p for p in old.initial() if p.get("traj", "").startswith("DPMSolver"))
    assert dict(old.decode(member).trajectory.config) == {}


def test_variation_flips_only_the_switches_of_the_childs_solver():
    enc = _switch_encoding()
    var = StructuredVariation(enc, seed=0)
    dpm = next(p for p in enc.initial() if p.get("traj", "").startswith("DPMSolver"))
    unipc = next(p for p in enc.initial() if p.get("traj", "").startswith("UniPC"))
    assert sorted(var._switches(dpm)) == ["dpm.final_sigmas_type", "dpm.solver_type"]
    assert sorted(var._switches(unipc)) == ["unipc.disable_corrector", "unipc.final_sigmas_type"]
    moved = [var.mutate(dpm) for _ in range(300)]
    assert any(m["dpm.final_sigmas_type"] == "sigma_min" for m in moved)
    assert any(m["dpm.solver_type"] == "heun" for m in moved)
    assert all(m["dpm.final_sigmas_type"] in ("zero", "sigma_min") for m in moved)
    child = var.crossover(dpm, {**dpm, "dpm.final_sigmas_type": "sigma_min"})
    assert child["dpm.final_sigmas_type"] in ("zero", "sigma_min")  # travels with the placement block
