"""Fuzzing schedule JSON: any mutation of a valid file loads or raises ScheduleError, nothing else."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from datosearch.space import Schedule, ScheduleError, io
from datosearch.space.schedule import SD15_TOP_BLOCKS

VALID = Schedule.dato_coco(ratio=0.4).with_meta(model="tiny").to_dict()
VALID["prune"]["call_scale"] = [1.0] * 51
TEXT = json.dumps(VALID)
VALID_V2 = Schedule.dato_coco(ratio=0.4).with_forecast(2, 0.5).to_dict()  # schedule@2: forecasting actions
TEXTS = [TEXT, json.dumps(VALID_V2)]

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


PATHS = [(i, p) for i, doc in enumerate([VALID, VALID_V2]) for p in _paths(doc) if p]


def _loads_cleanly(text: str) -> None:
    try:
        result = io.loads(text)
    except ScheduleError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(result, Schedule) and result.cache[0] == "full"


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
