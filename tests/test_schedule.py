"""The schedule format: anchors, JSON round-trip, validation errors that name the field."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datosearch.models.tiny import tiny_unet
from datosearch.space import MAX_RATIO, PruneConfig, Schedule, ScheduleError, io
from datosearch.space.layout import highest_resolution_blocks, n_branches, transformer_blocks
from datosearch.space.trajectory import Trajectory

TOP = "down_blocks.0.attentions.0.transformer_blocks.0"


def test_dato_coco_plan_matches_the_paper():
    s = Schedule.dato_coco(ratio=0.4)
    assert s.n_calls == 51
    assert [t for t, a in enumerate(s.cache) if a == "full"] == [0, 14, 24, 36, 46]
    assert s.counts() == {"full": 5, "shallow": 21, "reuse": 25, "forecast": 0}
    assert set(s.prune.ratios.values()) == {0.4} and len(s.prune.ratios) == 5


def test_anchor_constructors():
    dc = Schedule.deepcache(10, interval=3, branch=2)
    assert dc.cache == ["full", 2, 2, "full", 2, 2, "full", 2, 2, "full"]
    cr = Schedule.constant_ratio(5, [TOP], 0.5)
    assert cr.cache == ["full"] * 5 and cr.prune.ratios == {TOP: 0.5}
    assert Schedule.full(4).counts() == {"full": 4, "shallow": 0, "reuse": 0, "forecast": 0}


def test_layout_of_tiny_unet():
    unet = tiny_unet()
    assert highest_resolution_blocks(unet) == [
        "down_blocks.0.attentions.0.transformer_blocks.0", "down_blocks.0.attentions.1.transformer_blocks.0",
        "up_blocks.2.attentions.0.transformer_blocks.0", "up_blocks.2.attentions.1.transformer_blocks.0",
        "up_blocks.2.attentions.2.transformer_blocks.0"]
    assert n_branches(unet) == 9
    assert len(transformer_blocks(unet)) == 11


def test_round_trip(tmp_path):
    s = Schedule.dato_coco(ratio=0.4).with_meta(model="tiny", steps=50)
    s.prune.call_scale = [1.0] * 51
    path = tmp_path / "s.json"
    io.save(s, path)
    back = io.load(path)
    assert back == s and back.key() == s.key()
    assert json.loads(path.read_text())["schema"] == "datosearch/schedule@1"
    assert back.with_meta(trial=3).key() == s.key()  # metadata does not change identity


def _valid() -> dict:
    return Schedule(["full", 0, "reuse"], PruneConfig(ratios={TOP: 0.5})).to_dict()


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(schema="datosearch/schedule@4"), "unknown schema"),
    (lambda d: d.update(schema="datosearch/schedule@3", trajectory={"scheduler": "UniPCMultistepScheduler", "steps": 0}),
     "trajectory.steps"),
    (lambda d: d.update(trajectory={"scheduler": "DDIMScheduler", "steps": 3}), "schema"),  # a trajectory needs @3
    (lambda d: d.update(schema="datosearch/schedule@3", trajectory={"scheduler": "NoSuchScheduler", "steps": 3}),
     "trajectory"),
    (lambda d: d.update(schema="datosearch/schedule@3", trajectory={"scheduler": "DDIMScheduler", "steps": 2,
                                                                   "timesteps": [500, 600]}), "trajectory"),
    (lambda d: d["cache"].__setitem__(1, {"branch": 0, "order": 1}), "cache[1]"),  # forecasts need @2
    (lambda d: d.pop("schema"), "unknown schema"),
    (lambda d: d["cache"].__setitem__(0, "reuse"), "cache[0]"),
    (lambda d: d["cache"].__setitem__(1, "half"), "cache[1]"),
    (lambda d: d["cache"].__setitem__(1, {"branch": -2}), "cache[1].branch"),
    (lambda d: d.update(cache=[]), "cache"),
    (lambda d: d["prune"]["ratios"].__setitem__(TOP, 0.8), f"prune.ratios.{TOP}"),
    (lambda d: d["prune"]["ratios"].__setitem__(TOP, -0.1), f"prune.ratios.{TOP}"),
    (lambda d: d["prune"].update(call_scale=[1.0, 1.0]), "prune.call_scale"),
    (lambda d: d["prune"].update(base_selection="magic"), "prune.base_selection"),
    (lambda d: d["prune"].update(targets=["attn3"]), "prune.targets[0]"),
    (lambda d: d.update(extra=1), "(top level)"),
])
def test_invalid_schedules_name_the_field(mutate, field):
    data = copy.deepcopy(_valid())
    mutate(data)
    with pytest.raises(ScheduleError) as err:
        io.from_json_obj(data)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_ratio_bound_depends_on_patch_size():
    with pytest.raises(ScheduleError, match="prune.ratios"):
        Schedule(["full"], PruneConfig(ratios={TOP: 0.6}, sx=2, sy=1))  # at most 1 - 1/2 prunable


def test_unknown_block_and_branch_for_a_unet():
    unet = tiny_unet()
    with pytest.raises(ScheduleError, match="unknown transformer block 'mid.attn'"):
        Schedule(["full"], PruneConfig(ratios={"mid.attn": 0.2})).validate_for(unet)
    with pytest.raises(ScheduleError, match=r"cache\[1\]': branch 9 does not exist"):
        Schedule(["full", 9]).validate_for(unet)
    Schedule.dato_coco(unet, 0.4).validate_for(unet)


def test_broken_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"schema": "datosearch/schedule@1", "cache": ["full",')
    with pytest.raises(ScheduleError, match="not valid JSON"):
        io.load(path)
    with pytest.raises(ScheduleError, match="cannot read"):
        io.load(tmp_path / "missing.json")


def test_legacy_trajectory_in_meta_loads_typed_with_the_same_key():
    """An @1 / @2 file named its trajectory in meta.scheduler / meta.steps: it loads into
    `Schedule.trajectory` with the same meaning, and keeps the key stored studies hold for it."""
    legacy = {"schema": "datosearch/schedule@1", "cache": ["full", {"branch": 0}, "full"],
              "meta": {"scheduler": "UniPCMultistepScheduler", "steps": 2, "name": "x"}}
    s = io.from_json_obj(legacy)
    assert s.trajectory == Trajectory("UniPCMultistepScheduler", 2) and s.meta == {"name": "x"}
    body = {"schema": "datosearch/schedule@1", "cache": ["full", {"branch": 0}, "full"],
            "prune": s.to_dict()["prune"], "trajectory": {"scheduler": "UniPCMultistepScheduler", "steps": 2}}
    old_key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]  # the key before @3
    assert s.key() == old_key
    written = s.to_dict()
    assert written["schema"] == "datosearch/schedule@3" and "scheduler" not in written["meta"]
    assert io.from_json_obj(written) == s and Schedule(["full"] * 3).key() != Schedule(
        ["full"] * 3, trajectory=Trajectory("DDIMScheduler", 3)).key()


def test_schema_file_ships_with_package():
    schema = io.json_schema()
    assert schema["properties"]["schema"]["enum"] == ["datosearch/schedule@1", "datosearch/schedule@2",
                                                      "datosearch/schedule@3"]
    assert schema["properties"]["trajectory"]["required"] == ["scheduler", "steps"]
    assert schema["properties"]["prune"]["properties"]["ratios"]["additionalProperties"]["maximum"] == MAX_RATIO


actions = st.one_of(st.just("full"), st.just("reuse"), st.integers(0, 8))


@st.composite
def schedules(draw):
    n = draw(st.integers(1, 60))
    cache = ["full"] + draw(st.lists(actions, min_size=n - 1, max_size=n - 1))
    blocks = draw(st.lists(st.sampled_from([b.path for b in transformer_blocks(tiny_unet())]), unique=True))
    ratios = {b: draw(st.floats(0, MAX_RATIO)) for b in blocks}
    scale = draw(st.one_of(st.none(), st.lists(st.floats(0, 3), min_size=n, max_size=n)))
    prune = PruneConfig(ratios=ratios, call_scale=scale, noise_alpha=draw(st.floats(0, 2)),
                        base_selection=draw(st.sampled_from(["dynamics", "similarity", "random"])),
                        seed=draw(st.integers(0, 2**31)))
    trajectory = draw(st.one_of(st.none(), st.builds(
        Trajectory, st.sampled_from(["DDIMScheduler", "UniPCMultistepScheduler", "dpm"]), st.integers(1, 60),
        st.sampled_from([{}, {"timestep_spacing": "trailing"}]))))
    return Schedule(cache, prune, {"n": n}, trajectory=trajectory)


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_random_valid_schedules_round_trip(s):
    back = io.loads(json.dumps(s.to_dict()))
    assert back == s and back.key() == s.key()
    assert all(0 <= back.prune.ratio(b, t) <= MAX_RATIO for b in back.prune.ratios for t in range(back.n_calls))
