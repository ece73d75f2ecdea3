"""A study that keeps the user's trajectory (`--no-search-steps`) exports schedules for it only; the
fewer-steps anchors on other samplers stay reference rows in the held-out table and the report (issue 29)."""

from __future__ import annotations

import json

import optuna
from optuna.study import StudyDirection

from datosearch import cli
from datosearch.search.attrs import ANCHOR_ATTR
from datosearch.space import io
from datosearch.space.trajectory import Trajectory
from datosearch.studies.front import front_trials, trial_schedule
from datosearch.studies.report import write_report
from datosearch.studies.verify import anchor_schedules_of
from search_helpers import TINY_ARGS, cli_study, one_thread, quick_tuning

ARGS = [*TINY_ARGS[:TINY_ARGS.index("--steps")], "--steps", "6", *TINY_ARGS[TINY_ARGS.index("--steps") + 2:]]
OWN = Trajectory("PNDMScheduler", 6)


def test_no_search_steps_exports_only_its_own_trajectory(tmp_path, monkeypatch, capsys):
    with quick_tuning():
        url = cli_study(tmp_path, "own", 24, ARGS)
    study = optuna.load_study(study_name="own", storage=url)
    others = [t for t in study.trials if t.user_attrs.get(ANCHOR_ATTR) and trial_schedule(t).trajectory not in (None, OWN)]
    assert {t.user_attrs[ANCHOR_ATTR] for t in others} >= {"unipc-5", "dpmpp2m-5", "pndm-5"}
    # a fewer-steps run better than everything on every objective: the study's own best, not the user's
    unipc = next(t for t in others if t.user_attrs[ANCHOR_ATTR] == "unipc-5")
    best = [min(col) / 2 if d == StudyDirection.MINIMIZE else max(col) * 2
            for d, col in zip(study.directions, zip(*(t.values for t in study.trials if t.values)))]
    study.add_trial(optuna.trial.create_trial(values=best, user_attrs=unipc.user_attrs))
    assert [t.user_attrs[ANCHOR_ATTR] for t in study.best_trials] == ["unipc-5"]
    front = front_trials(study)
    assert front and all(trial_schedule(t).trajectory in (None, OWN) for t in front)
    monkeypatch.chdir(tmp_path)
    with one_thread():
        assert cli.main(["export", "--study", "own", "--storage", url, "--heldout", "0"]) == 0
    index = json.loads((tmp_path / "exports" / "own" / "index.json").read_text())
    assert index["entries"] and all(e["trajectory"] == OWN.to_dict() for e in index["entries"])
    assert all(io.load(tmp_path / "exports" / "own" / e["file"]).trajectory == OWN for e in index["entries"])
    anchors = {name for name, _ in anchor_schedules_of(study)}  # what `export --heldout N` scores beside the front
    assert {"unipc-5", "dpmpp2m-5", "pndm-5"} <= anchors
    page = write_report(study, tmp_path / "r.html", pictures=0).read_text()
    assert "unipc-5" in page and "dpmpp2m-5" in page
