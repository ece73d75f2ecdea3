"""A study and an export written before schedules carried a typed trajectory (issue 29).

`tests/data/legacy/` was made by datosearch at commit 71f7f4d (schedule@1 / @2, the trajectory in
`meta.scheduler` / `meta.steps`): `datosearch run --study legacy --storage sqlite:///legacy.db --model tiny
--images 5 --steps 6 --population 4 --trials 36 --no-outputs`, then `datosearch export --heldout 0`.
It resumes, keeps its cached reference and schedule keys, exports, and its schedule files apply
with the same meaning.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

import datosearch
from datosearch import cli, models
from datosearch.objectives import device_name
from datosearch.search.attrs import CONFIG_ATTR, KEY_ATTR
from datosearch.space import io
from datosearch.space.trajectory import Trajectory
from datosearch.studies.front import trial_schedule
from datosearch.studies.heldout import count_calls
from search_helpers import one_thread

DATA = Path(__file__).parent / "data" / "legacy"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("legacy")
    shutil.copy(DATA / "legacy.db", root / "legacy.db")
    shutil.copytree(DATA / "legacy.files", root / "legacy.files")
    # the stored device names the host that made the fixture; a resume on another host is refused (as it should
    # be), so the copy names this one: the test is about the stored schema, not the device
    study = optuna.load_study(study_name="legacy", storage=f"sqlite:///{root / 'legacy.db'}")
    stored = dict(study.user_attrs[CONFIG_ATTR])
    with one_thread():
        stored["device"] = device_name("cpu")
    study.set_user_attr(CONFIG_ATTR, stored)
    return root


def test_stored_schedules_load_typed_with_their_stored_keys(legacy):
    study = optuna.load_study(study_name="legacy", storage=f"sqlite:///{legacy / 'legacy.db'}")
    done = [t for t in study.trials if KEY_ATTR in t.user_attrs]
    trajectories = {trial_schedule(t).trajectory for t in done}
    assert Trajectory("UniPCMultistepScheduler", 5) in trajectories and None in trajectories
    assert all(trial_schedule(t).key() == t.user_attrs[KEY_ATTR] for t in done)


def test_resume_and_export(legacy, monkeypatch, capsys):
    url = f"sqlite:///{legacy / 'legacy.db'}"
    cached = sorted(p.name for p in (legacy / "legacy.files").iterdir())
    with one_thread():
        assert cli.main(["resume", "--study", "legacy", "--storage", url, "--trials", "40", "--no-outputs",
                         "--no-progress"]) == 0
    study = optuna.load_study(study_name="legacy", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 40 and all(trial_schedule(t).key() == t.user_attrs[KEY_ATTR] for t in done)
    assert sorted(p.name for p in (legacy / "legacy.files").iterdir()) == cached  # the reference was reused
    monkeypatch.chdir(legacy)
    assert cli.main(["export", "--study", "legacy", "--storage", url, "--heldout", "0", "--out", "new"]) == 0
    old = {e["trial"]: e for e in json.loads((DATA / "export" / "index.json").read_text())["entries"]}
    new = json.loads((legacy / "new" / "index.json").read_text())["entries"]
    common = [e for e in new if e["trial"] in old]
    assert common and all(e["key"] == old[e["trial"]]["key"] for e in common)
    for e in common:
        schedule = io.load(legacy / "new" / e["file"])
        legacy_meta = json.loads((DATA / "export" / old[e["trial"]]["file"]).read_text())["meta"]
        assert schedule.trajectory == Trajectory(legacy_meta["scheduler"], legacy_meta["steps"])
        assert e["trajectory"] == schedule.trajectory.to_dict()


@pytest.mark.parametrize("name", ["schedule_0.json", "schedule_13.json", "schedule_3.json"])
def test_old_schedule_files_apply_with_the_same_meaning(name):
    meta = json.loads((DATA / "export" / name).read_text())["meta"]
    schedule = io.load(DATA / "export" / name)
    pipe = models.load("tiny")
    original = pipe.scheduler
    handle = datosearch.apply(pipe, DATA / "export" / name, strict=True)  # strict: runs exactly its own plan
    assert type(pipe.scheduler).__name__ == meta["scheduler"] and handle.call_kwargs == {
        "num_inference_steps": meta["steps"]}
    with count_calls(pipe.unet) as calls:
        pipe(["a red cube"], guidance_scale=meta["guidance"], output_type="latent", **handle.call_kwargs)
    handle.remove()
    assert pipe.scheduler is original
    assert calls == {"unet": schedule.n_calls, "computed": schedule.n_calls - schedule.counts()["reuse"]}
