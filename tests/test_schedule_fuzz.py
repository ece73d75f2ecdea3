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


PATHS = [p for p in _paths(VALID) if p]


def _loads_cleanly(text: str) -> None:
    try:
        result = io.loads(text)
    except ScheduleError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(result, Schedule) and result.cache[0] == "full"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PATHS), json_values, st.booleans())
def test_structural_mutations(path, value, delete):
    data = json.loads(TEXT)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _loads_cleanly(json.dumps(data))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(TEXT) - 1), st.integers(0, 40), st.text(max_size=5))
def test_textual_mutations(start, length, insert):
    _loads_cleanly(TEXT[:start] + insert + TEXT[start + length:])


def test_non_finite_numbers_are_refused():
    for token in ("NaN", "Infinity", "-Infinity"):
        try:
            io.loads(TEXT.replace('"noise_alpha": 0.1', f'"noise_alpha": {token}'))
        except ScheduleError as exc:
            assert f"non-finite number {token}" in str(exc)
        else:
            raise AssertionError(f"{token} accepted")
