"""Fuzzing schedule JSON: any mutation of a valid file raises ScheduleError (one line), or loads a schedule
that satisfies every invariant of the schema: the input itself is valid under the shipped JSON Schema, and
the loaded schedule's JSON form holds the rules the schema states in prose (call 0 full, ratios in
[0, 0.75], one call scale per call, forecasts of order 1..2 with damping in (0, 1] on non-full calls, a base
trajectory exactly in schedule@3)."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from datosearch.space import Schedule, ScheduleError, io
from datosearch.space.schedule import SD15_TOP_BLOCKS

VALID = Schedule.dato_coco(ratio=0.4).with_meta(model="tiny").to_dict()
VALID["prune"]["call_scale"] = [1.0] * 51
TEXT = json.dumps(VALID)
VALID_V2 = Schedule.dato_coco(ratio=0.4).with_forecast(2, 0.5).to_dict()  # schedule@2: forecasting actions
VALID_V3 = Schedule.dato_coco(ratio=0.4).with_forecast(2, 0.5).with_meta(scheduler="ddim", steps=51).to_dict()
TEXTS = [TEXT, json.dumps(VALID_V2), json.dumps(VALID_V3)]  # schedule@3: the base trajectory too
SCHEMA = jsonschema.Draft202012Validator(io.json_schema())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["full", "reuse", "dynamics", "attn1", SD15_TOP_BLOCKS[0]]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        yield from _paths(v, prefix + (k,))


PATHS = [(i, p) for i, doc in enumerate([VALID, VALID_V2, VALID_V3]) for p in _paths(doc) if p]


def _number(x: Any, lo: float, hi: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and lo <= x <= hi


def _integer(x: Any, lo: int, hi: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _action_ok(action: Any) -> bool:
    """'full', 'reuse', {"branch": b >= 0} or {"reuse": true}, with an optional forecast (order 1..2 at most,
    damping in (0, 1]); nothing else."""
    if action in ("full", "reuse"):
        return True
    if not isinstance(action, dict) or set(action) - {"branch", "reuse", "order", "damping"}:
        return False
    kind_ok = (_integer(action["branch"], 0, 2**63) and "reuse" not in action if "branch" in action
               else action.get("reuse") is True)
    return kind_ok and _integer(action.get("order", 0), 0, 2) and _number(action.get("damping", 1.0), 1e-300, 1.0)


def _satisfies_invariants(doc: dict) -> None:
    """The rules of the schedule format, written out here independently of the loader."""
    cache, prune = doc["cache"], doc["prune"]
    assert doc["schema"] in ("datosearch/schedule@1", "datosearch/schedule@2", "datosearch/schedule@3")
    assert isinstance(cache, list) and cache and cache[0] == "full", cache[:1]
    assert all(_action_ok(a) for a in cache), cache
    assert doc["schema"] != "datosearch/schedule@1" or all(not isinstance(a, dict) or set(a) == {"branch"}
                                                            for a in cache)
    assert ("trajectory" in doc) == (doc["schema"] == "datosearch/schedule@3")
    trajectory = doc.get("trajectory", {"scheduler": "-", "steps": 1})
    assert isinstance(trajectory["scheduler"], str) and trajectory["scheduler"] and _integer(trajectory["steps"], 1,
                                                                                             2**63), trajectory
    assert not {"timesteps", "sigmas"} <= set(trajectory), trajectory
    assert all(_integer(t, 0, 2**63) for t in trajectory.get("timesteps", [0]))
    assert all(_number(x, 0, math.inf) for x in trajectory.get("sigmas", [0]))
    assert all(isinstance(k, str) and _number(r, 0, 0.75) for k, r in prune["ratios"].items()), prune["ratios"]
    scale = prune["call_scale"]
    assert scale is None or (len(scale) == len(cache) and all(_number(c, 0, math.inf) for c in scale)), scale
    assert _number(prune["noise_alpha"], 0, 100) and _integer(prune["sx"], 1, 64) and _integer(prune["sy"], 1, 64)
    assert prune["base_selection"] in ("dynamics", "similarity", "random") and prune["fallback"] in ("similarity",
                                                                                                    "random")
    targets = prune["targets"]
    assert targets and len(set(targets)) == len(targets) and set(targets) <= {"attn1", "attn2", "ff"}, targets
    assert _integer(prune["seed"], 0, 2**63 - 1) and isinstance(doc["meta"], dict)


def _loads_cleanly(text: str) -> None:
    try:
        result = io.loads(text)
    except ScheduleError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(result, Schedule)
        accepted = json.loads(text)
        SCHEMA.validate(accepted)  # what was accepted is valid under the shipped schema
        _satisfies_invariants(result.to_dict())
        assert io.loads(json.dumps(result.to_dict())).to_dict() == result.to_dict()  # and reads back the same


def test_the_invariants_refuse_what_the_schema_refuses():
    """The checker above is not vacuous: it passes the valid files and fails each kind of broken one."""
    for text in TEXTS:
        _satisfies_invariants(json.loads(text))
    broken = [("cache", ["reuse", "full"]), ("cache", ["full", {"branch": -1}]), ("cache", ["full", 2.5]),
              ("prune.ratios", {SD15_TOP_BLOCKS[0]: 0.9}), ("prune.call_scale", [1.0]), ("prune.sx", 0),
              ("prune.base_selection", "tome"), ("prune.targets", ["attn1", "attn1"]), ("prune.noise_alpha", -1),
              ("schema", "datosearch/schedule@3")]  # @3 without a trajectory
    for field, value in broken:
        doc = json.loads(TEXT)
        *parents, last = field.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
        try:
            _satisfies_invariants(doc)
        except AssertionError:
            continue
        raise AssertionError(f"{field} = {value!r} passed the invariants")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PATHS), json_values, st.booleans())
def test_structural_mutations(where, value, delete):
    doc, path = where
    data = json.loads(TEXTS[doc])
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _loads_cleanly(json.dumps(data))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TEXTS), st.floats(0, 1, exclude_max=True), st.integers(0, 40), st.text(max_size=5))
def test_textual_mutations(text, at, length, insert):
    start = int(at * len(text))
    _loads_cleanly(text[:start] + insert + text[start + length:])


def test_non_finite_numbers_are_refused():
    for token in ("NaN", "Infinity", "-Infinity"):
        try:
            io.loads(TEXT.replace('"noise_alpha": 0.1', f'"noise_alpha": {token}'))
        except ScheduleError as exc:
            assert f"non-finite number {token}" in str(exc)
        else:
            raise AssertionError(f"{token} accepted")
