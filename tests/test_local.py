"""Local refinement (`search.local`, issue 31): a child keeps its parent's discrete genes and TPE, fitted on
the study's trials of that niche, moves its continuous ones toward the niche's best."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import optuna
from optuna.trial import TrialState, create_trial

from datosearch.search import local, make_sampler, run_until
from datosearch.search.attrs import KEY_ATTR, OPERATOR_ATTR, PARENTS_ATTR, PLAN_ATTR
from datosearch.search.pareto import pareto_trials
from datosearch.search.runner import enqueue_initial
from datosearch.search.variation import StructuredVariation
from datosearch.space.encoding import make_encoding
from search_helpers import FakeEvaluator
from test_structured import TIMESTEP_TRAJ, structured

FREE = local.PLACEMENT_GENES + local.TIMESTEP_GENES
BEST = {"tstart": 0.8, "tpow": 2.2, "warp": 0.7, "center": 0.2}


def _encoding():
    return make_encoding(structured(n_calls=25, trajectories=TIMESTEP_TRAJ, timestep_genes=True, last_gene=True))


def _parent(enc) -> dict:
    return {**enc.initial()[0], "traj": "DPMSolverMultistepScheduler:25"}


def _niche_trials(enc, parent: dict, n: int = 40, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    """`n` scored trials of `parent`'s niche, PSNR peaking at `BEST`, plus trials that must be ignored."""
    dists, rng = enc.plan_distributions(), np.random.RandomState(seed)
    out = []
    for i in range(n):
        genes = {k: float(rng.uniform(dists[k].low, dists[k].high)) for k in FREE}
        psnr = 40.0 - sum(((genes[k] - BEST[k]) / (dists[k].high - dists[k].low)) ** 2 for k in FREE) * 30
        out.append(create_trial(params={**parent, **genes}, distributions=enc.distributions(), values=[0.0, 0.0],
                                user_attrs={local.SCORE: psnr}))
    other = {**parent, **BEST, "full": parent["full"] - 1}  # another niche: ignored
    planned = {**parent, **BEST}  # genes that are not its plan: ignored
    out.append(create_trial(params=other, distributions=enc.distributions(), values=[0.0, 0.0],
                            user_attrs={local.SCORE: 99.0}))
    out.append(create_trial(params=planned, distributions=enc.distributions(), values=[0.0, 0.0],
                            user_attrs={local.SCORE: 99.0, PLAN_ATTR: {}}))
    for number, t in enumerate(out):
        t.number = number
    return out


def test_history_is_the_niche_s_scored_trials_whose_genes_are_their_plan():
    enc = _encoding()
    parent = _parent(enc)
    trials = _niche_trials(enc, parent)
    kept = local.niche(trials[0].params, FREE)
    assert set(kept) == set(parent) - set(FREE)
    assert [t.number for t in local.history(trials, kept, FREE)] == list(range(40))


def test_proposals_keep_the_discrete_genes_and_move_toward_the_niche_s_best():
    enc = _encoding()
    parent_genes = _parent(enc)
    trials = _niche_trials(enc, parent_genes)
    parent = trials[0]
    dists = enc.plan_distributions()
    proposals = local.propose(parent, trials, dists, FREE, seed=1, asks=24)
    assert proposals == local.propose(parent, trials, dists, FREE, seed=1, asks=24)  # seeded
    for p in proposals:
        assert {k: v for k, v in p.items() if k not in FREE} == {k: v for k, v in parent.params.items() if k not in FREE}
        assert all(dists[k].low <= p[k] <= dists[k].high for k in FREE)
    span = {k: dists[k].high - dists[k].low for k in FREE}

    def distance(genes: dict) -> float:
        return sum(((genes[k] - BEST[k]) / span[k]) ** 2 for k in FREE) ** 0.5

    observed = statistics.median(distance(t.params) for t in trials[:40])
    assert statistics.median(distance(p) for p in proposals) < 0.6 * observed


def test_local_children_refine_front_members_in_bursts_and_never_an_exact_plan():
    cfg = structured(n_calls=25, trajectories=TIMESTEP_TRAJ, timestep_genes=True, last_gene=True)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler("nsga2", 6, 0, cfg))
    n_initial = enqueue_initial(study, cfg)
    run_until(study, FakeEvaluator(), cfg, n_initial + 40)
    bred = study.trials[n_initial:]
    local_children = [t for t in bred if t.user_attrs[OPERATOR_ATTR] == "local"]
    assert 4 <= len(local_children) < len(bred)
    for child in local_children:
        (number,) = child.user_attrs[PARENTS_ATTR]
        parent = study.trials[number]
        assert PLAN_ATTR not in parent.user_attrs
        assert local.niche(child.params, FREE) == local.niche(parent.params, FREE)
        assert child.params != parent.params
        earlier = [t for t in study.trials[:child.number] if t.state == TrialState.COMPLETE]
        on_front_then = {t.number for t in pareto_trials(earlier, study.directions)}
        burst_start = parent.number in on_front_then or study.trials[child.number - 1].user_attrs.get(PARENTS_ATTR) == [number]
        assert burst_start, (child.number, number)
    parents = [t.user_attrs[PARENTS_ATTR][0] for t in local_children]
    assert max(parents.count(p) for p in parents) >= 2  # a burst refines one member several times
    for child in local_children:  # timestep genes that move nothing are not refined
        if not child.params["traj"].startswith("DPM"):
            parent = study.trials[child.user_attrs[PARENTS_ATTR][0]]
            assert (child.params["tstart"], child.params["tpow"]) == (parent.params["tstart"], parent.params["tpow"])


def test_variation_falls_back_to_breeding_when_the_parent_carries_an_exact_plan():
    enc = _encoding()
    parent = create_trial(params=_parent(enc), distributions=enc.distributions(), values=[1.0, 1.0],
                          user_attrs={PLAN_ATTR: {}}, state=TrialState.COMPLETE)
    parent.number = 0
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trial(parent)
    variation = StructuredVariation(enc, seed=0)
    for _ in range(10):
        variation(study, enc.distributions(), [study.trials[0]])
        assert variation.made["operator"] != "local"


def test_the_region_shrinks_with_every_niche_trial_that_missed_since_the_best():
    enc = _encoding()
    dists = enc.plan_distributions()
    parent_genes = _parent(enc)
    best = {**parent_genes, **BEST}
    worse = [{**best, "tstart": BEST["tstart"] + 0.01 * (i + 1)} for i in range(12)]

    def trials(order: list[dict]) -> list[optuna.trial.FrozenTrial]:
        out = []
        for number, genes in enumerate(order):
            t = create_trial(params=genes, distributions=enc.distributions(), values=[0.0, 0.0],
                             user_attrs={local.SCORE: 40.0 if genes is best else 30.0})
            t.number = number
            out.append(t)
        return out

    def widest(order: list[dict]) -> float:
        history = trials(order)
        proposals = local.propose(history[0], history, dists, FREE, seed=0, asks=30)
        return max(abs(p[k] - BEST[k]) / (dists[k].high - dists[k].low) for p in proposals for k in ("tstart", "tpow", "center"))

    fresh, missed = widest(worse + [best]), widest([best] + worse)
    assert fresh <= local.RADIUS + 1e-9 and missed <= local.RADIUS / 8 + 1e-9 and missed < fresh / 2


def test_a_burst_starts_at_a_member_of_the_least_refined_niche(monkeypatch):
    import datosearch.search.variation as variation_module

    monkeypatch.setattr(variation_module, "LOCAL_PROB", 1.0)
    enc = _encoding()
    parent = _parent(enc)
    a, b = {**parent, "warp": 0.5}, {**parent, "warp": 1.5, "full": parent["full"] + 1}
    study = optuna.create_study(directions=["minimize", "minimize"])
    # trial 0 (niche A) on the front; trials 1-3 its local children; trial 3 also on the front, refined by no one
    # yet but of niche A; trial 4 (niche B) on the front, its niche never refined
    for params, values, attrs in ((a, [3.0, 1.0], {}),
                                  *(({**a, "center": c}, v, {OPERATOR_ATTR: "local", PARENTS_ATTR: [0]})
                                    for c, v in ((0.1, [4.0, 4.0]), (0.2, [4.0, 4.0]), (0.3, [1.0, 3.0]))),
                                  (b, [2.0, 2.0], {})):
        study.add_trial(create_trial(params=params, distributions=enc.distributions(), values=values,
                                     user_attrs={local.SCORE: 30.0 - values[0], **attrs}))
    assert {t.number for t in pareto_trials(study.trials, study.directions)} == {0, 3, 4}
    for seed in range(4):  # a uniform draw over the front would pick trial 4 in a third of these
        variation = StructuredVariation(enc, seed=seed)
        variation(study, enc.distributions(), study.trials[:2])
        assert variation.made == {"operator": "local", "parents": [4]}


def test_a_burst_first_tries_the_timestep_pair_of_the_nearest_counts_best():
    enc = _encoding()
    parent_genes = {**_parent(enc), "full": 14, "tstart": 0.9, "tpow": 1.7}
    scored = [({"full": 10, "tstart": 0.97, "tpow": 1.68}, 51.0, {}), ({"full": 10, "tstart": 0.95, "tpow": 1.5}, 49.0, {}),
              ({"full": 5, "tstart": 0.8, "tpow": 1.4}, 60.0, {}),  # best overall, but far from 14 full calls
              ({"full": 13, "tstart": 0.75, "tpow": 2.5}, 70.0, {PLAN_ATTR: {}}),  # genes that are not its plan
              ({"full": 14, "tstart": 0.9, "tpow": 1.7}, 47.0, {})]  # the parent's own pair
    trials = []
    for number, (genes, psnr, attrs) in enumerate(scored):
        t = create_trial(params={**parent_genes, **genes}, distributions=enc.distributions(), values=[0.0, 0.0],
                         user_attrs={local.SCORE: psnr, **attrs})
        t.number = number
        trials.append(t)
    parent = trials[-1]
    assert local.transferred(parent, trials) == {"tstart": 0.97, "tpow": 1.68}
    assert local.transferred(parent, [parent]) is None
    # the parent's count tried another pair and the parent's scored best: its count says keep its pair
    rival = create_trial(params={**parent_genes, "tstart": 0.97, "tpow": 1.68}, distributions=enc.distributions(),
                         values=[0.0, 0.0], user_attrs={local.SCORE: 46.0})
    assert local.transferred(parent, trials + [rival]) is None
    rival.user_attrs[local.SCORE] = 48.0  # ...unless another pair scored better there: that one
    assert local.transferred(parent, trials + [rival]) == {"tstart": 0.97, "tpow": 1.68}
    variation = StructuredVariation(enc, seed=0)
    child = variation._local(parent, trials, seen=set())
    assert (child["tstart"], child["tpow"], child["full"]) == (0.97, 1.68, 14)  # the parent's plan on that pair
    again = variation._local(parent, trials, seen={enc.decode(child).key()})
    assert (again["tstart"], again["tpow"]) != (0.97, 1.68)  # tried already: TPE's proposals go on


def test_bursts_leave_the_refined_members_niches_alone(monkeypatch):
    import datosearch.search.variation as variation_module

    monkeypatch.setattr(variation_module, "LOCAL_PROB", 1.0)
    enc = _encoding()
    parent = _parent(enc)
    refined, other = {**parent, "warp": 1.0, "center": 0.0}, {**parent, "full": parent["full"] + 1}
    study = optuna.create_study(directions=["minimize", "minimize"])
    # trial 0: a refined member; trial 1 of its niche, both on the front; trial 2 of another niche, on the front
    for params, values, attrs in ((refined, [1.0, 3.0], {OPERATOR_ATTR: "refined"}), ({**refined, "center": 0.4}, [2.0, 2.0], {}),
                                  (other, [3.0, 1.0], {})):
        study.add_trial(create_trial(params=params, distributions=enc.distributions(), values=values,
                                     user_attrs={local.SCORE: 30.0 - values[0], **attrs}))
    assert len(pareto_trials(study.trials, study.directions)) == 3
    for seed in range(4):
        variation = StructuredVariation(enc, seed=seed)
        variation(study, enc.distributions(), study.trials)
        assert variation.made == {"operator": "local", "parents": [2]}
    alone = optuna.create_study(directions=["minimize", "minimize"])  # the front holds refined niches only: bred
    for t in study.trials[:2]:
        alone.add_trial(t)
    for seed in range(4):
        variation = StructuredVariation(enc, seed=seed)
        variation(alone, enc.distributions(), alone.trials)
        assert variation.made["operator"] != "local"


def test_enqueued_members_on_timestep_trajectories_each_try_the_model_s_pair_once():
    enc = _encoding()
    genes = {**_parent(enc), "tstart": 0.9, "tpow": 1.7}
    study = optuna.create_study(directions=["minimize", "minimize"])
    # trial 0: a refined member (its pair searched, never swept); 1: a seeded member at another count, default pair;
    # 2: a seeded member on the study's own trajectory (its timesteps stay the pipeline's)
    for params, operator, psnr in (({**genes, "full": 10, "tstart": 0.96, "tpow": 1.6}, "refined", 51.0),
                                   ({**genes, "full": 14}, "seeded", 47.0),
                                   ({**genes, "traj": enc.initial()[0]["traj"], "full": 14}, "seeded", 46.0)):
        study.add_trial(create_trial(params=params, distributions=enc.distributions(), values=[60.0 - psnr, 1.0],
                                     user_attrs={local.SCORE: psnr, OPERATOR_ATTR: operator,
                                                 KEY_ATTR: enc.decode(params).key()}))
    assert [enc.warped(t.params) for t in study.trials] == [True, True, False]
    variation = StructuredVariation(enc, seed=0)
    child = variation(study, enc.distributions(), study.trials)
    assert variation.made == {"operator": "transfer", "parents": [1]}
    assert child == {**study.trials[1].params, "tstart": 0.96, "tpow": 1.6}
    study.add_trial(create_trial(params=child, distributions=enc.distributions(), values=[15.0, 1.0],
                                 user_attrs={local.SCORE: 45.0, OPERATOR_ATTR: "transfer", KEY_ATTR: enc.decode(child).key()}))
    for seed in range(4):  # tried once: the children go on as before
        variation = StructuredVariation(enc, seed=seed)
        variation(study, enc.distributions(), study.trials)
        assert variation.made["operator"] != "transfer"


def test_enqueued_trials_breed_nothing(monkeypatch):
    """NSGA-II asks its child generation for every trial once its first generation is full, enqueued ones included
    (Optuna keeps their genes): the variation makes nothing for them, so no burst of local children is spent there."""
    cfg = structured(n_calls=25, trajectories=TIMESTEP_TRAJ, timestep_genes=True, last_gene=True)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler("nsga2", 4, 0, cfg))
    n_initial = enqueue_initial(study, cfg)
    assert n_initial > 4  # enqueued trials past the first generation
    asked: list[bool] = []
    real = StructuredVariation.__call__

    def record(self, *args):
        asked.append(self.idle)
        return real(self, *args)

    monkeypatch.setattr(StructuredVariation, "__call__", record)
    monkeypatch.setattr(StructuredVariation, "_local_parent", lambda self, *a: pytest.fail("a burst for an enqueued trial"))
    run_until(study, FakeEvaluator(), cfg, n_initial)
    variation = study.sampler._child_generation_strategy
    assert asked and all(asked) and variation.children == 0 and variation._focus is None
