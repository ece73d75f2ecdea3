"""One validation path for `prune`: a PruneConfig built in Python is checked like a JSON file (issue 15)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from datosearch.space import io
from datosearch.space.schedule import PruneConfig, Schedule, ScheduleError

BLOCK = "down_blocks.0.attentions.0.transformer_blocks.0"
BAD = [
    {"base_selection": "dynamix"}, {"base_selection": None}, {"fallback": "dynamics"}, {"targets": ["attn3"]},
    {"targets": []}, {"targets": ["attn1", "attn1"]}, {"targets": "attn1"}, {"targets": None}, {"sx": 0},
    {"sy": 65}, {"sx": 2.0}, {"sx": True}, {"noise_alpha": -0.1}, {"noise_alpha": 101}, {"noise_alpha": "0.1"},
    {"seed": -1}, {"seed": 1.5}, {"call_scale": [1, -1, 1]}, {"call_scale": [1, "x", 1]},
    {"ratios": {BLOCK: 0.8}}, {"ratios": {BLOCK: -0.1}}, {"ratios": {BLOCK: "0.3"}}, {"ratios": {BLOCK: True}},
    {"ratios": [0.3]},
]
GOOD = [{}, {"base_selection": "random", "fallback": "random"}, {"targets": ["attn2", "ff"]}, {"sx": 64, "sy": 1},
        {"noise_alpha": 0}, {"seed": 2**63 - 1}, {"call_scale": [0, 1.5, 1]}, {"ratios": {BLOCK: 0.75}}]


def _doc(prune: dict) -> dict:
    return {"schema": "datosearch/schedule@1", "cache": ["full", "reuse", "full"], "prune": prune}


def _json_accepts(prune: dict) -> bool:
    return jsonschema.Draft202012Validator(io.json_schema()).is_valid(_doc(prune))


@pytest.mark.parametrize("fields", BAD, ids=lambda f: f"{next(iter(f))}={next(iter(f.values()))!r}")
def test_python_refuses_what_json_loading_refuses(fields):
    assert not _json_accepts(fields) or fields == {"sx": 2.0}  # the Schema's "integer" takes 2.0; loading does not
    with pytest.raises(ScheduleError, match=r"field '?prune"):
        io.from_json_obj(_doc(fields))
    name = next(iter(fields))
    with pytest.raises(ScheduleError, match=rf"field 'prune\.{name}"):
        Schedule(["full", "reuse", "full"], PruneConfig(**fields))
    with pytest.raises(ScheduleError, match=rf"'prune\.{name}"):
        PruneConfig(**fields).validate(3)


@pytest.mark.parametrize("fields", GOOD)
def test_python_accepts_what_the_schema_accepts(fields):
    assert _json_accepts(fields)
    schedule = Schedule(["full", "reuse", "full"], PruneConfig(**fields))
    assert io.loads(json.dumps(schedule.to_dict())) == schedule


def test_dynamix_no_longer_scores_zero_silently():
    with pytest.raises(ScheduleError, match="'dynamix' is not one of 'dynamics', 'similarity', 'random'"):
        Schedule(["full"], PruneConfig(base_selection="dynamix"))
