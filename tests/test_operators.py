"""Every trial says what made its genes, and the report's per-operator table counts what that was worth
(issue 31: does evolution earn its keep?)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

from datosearch.search import enqueue_anchors, make_sampler, run_until
from datosearch.search.attrs import DEDUP_ATTR, OPERATOR_ATTR, PARENTS_ATTR
from datosearch.search.operators import ORIGINS, operator_table, operators_of
from datosearch.search.runner import enqueue_initial
from datosearch.space.schedule import Schedule
from datosearch.studies.report_tables import operators_html
from search_helpers import FakeEvaluator
from test_structured import structured

OPS = {"local", "crossover", "full", "warp", "center", "phase", "ratio", "traj", "last", "tstart"}


def _study(seed: int = 0) -> tuple[optuna.Study, int]:
    cfg = structured()
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler("nsga2", 6, seed, cfg))
    enqueue_anchors(study, [Schedule.full(51, name="full")], cfg)
    n_initial = 1 + enqueue_initial(study, cfg)
    run_until(study, FakeEvaluator(), cfg, n_initial + 18)
    return study, n_initial


def test_every_trial_says_what_made_it_and_bred_ones_name_their_parents():
    study, n_initial = _study()
    made = [t.user_attrs[OPERATOR_ATTR] for t in study.trials]
    assert made[0] == "anchor" and set(made[1:n_initial]) == {"seeded"}
    bred = study.trials[n_initial:]
    assert len(bred) == 18
    for trial in bred:
        ops = operators_of(trial)
        assert ops and set(ops) <= OPS and ops != ["crossover"], trial.user_attrs[OPERATOR_ATTR]  # always mutated
        parents = trial.user_attrs[PARENTS_ATTR]
        assert 1 <= len(parents) <= 2 and all(p < trial.number for p in parents)
        assert (len(parents) == 2) <= ("crossover" in ops)  # two parents only through crossover


MUTATE = """
import json, sys
sys.path[:0] = ["tests", "bench"]
from datosearch.search.variation import StructuredVariation
from datosearch.space.encoding import make_encoding
from test_structured import structured
enc = make_encoding(structured())
variation, child = StructuredVariation(enc, seed=3), enc.initial()[0]
out = []
for _ in range(30):
    child = variation.mutate(child)
    out.append(child)
print(json.dumps(out, sort_keys=True))
"""


def test_the_same_seed_mutates_alike_in_every_process():
    """Mutations are applied in a fixed order: a set's order changes with the process's string hashing."""
    root = Path(__file__).resolve().parents[1]
    runs = [subprocess.run([sys.executable, "-c", MUTATE], cwd=root, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert runs[0] and runs[0] == runs[1]


def test_operator_table_counts_trials_wins_and_the_front():
    study, n_initial = _study()
    rows = {r["operator"]: r for r in operator_table(study)}
    assert rows["anchor"]["trials"] == 1 and rows["seeded"]["trials"] == n_initial - 1
    assert rows["seeded"]["beat_parent"] is None and "crossover" in rows
    assert sum(r["trials"] for op, r in rows.items() if op in ORIGINS) + \
        sum(1 for t in study.trials[n_initial:]) == len(study.trials)
    front = {t.number for t in study.best_trials}
    assert sum(rows[o]["on_front"] for o in ORIGINS if o in rows) + \
        sum(1 for t in study.trials[n_initial:] if t.number in front) == len(front)
    def beats_a_parent(t: optuna.trial.FrozenTrial) -> bool:
        return DEDUP_ATTR not in t.user_attrs and any(
            all(c <= p for c, p in zip(t.values, par.values)) and t.values != par.values
            for par in (study.trials[q] for q in t.user_attrs[PARENTS_ATTR]))

    assert {"crossover", "local"} <= set(rows)
    for op in (o for o in rows if o not in ORIGINS):
        expected = sum(beats_a_parent(t) for t in study.trials[n_initial:] if op in operators_of(t))
        assert rows[op]["beat_parent"] == expected, op
    page = operators_html(study)
    assert "Where the trials came from" in page and "<td>seeded</td>" in page


def test_a_study_stored_before_operators_counts_as_unrecorded():
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0]))
    assert operator_table(study) == [{"operator": "unrecorded", "trials": 1, "complete": 1, "beat_parent": None,
                                      "on_front": 1}]
