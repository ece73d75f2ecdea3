"""A run with the defaults a user gets: structured encoding over several trajectories, converged reference,
latency from a cost model calibrated once per study, the front re-scored on held-out images."""

from __future__ import annotations

import functools
import json
import math

import optuna
import pytest
from diffusers import StableDiffusionPipeline

from datosearch import cli
from datosearch.objectives.costmodel import CostModel
from datosearch.objectives.paired import PSNR_CAP_DB
from datosearch.search import processes
from datosearch.search.attrs import ANCHOR_ATTR, COSTMODEL_ATTR, LATENCY_ATTR, SPEEDUP_ATTR
from datosearch.studies import verify
from datosearch.studies.front import trial_schedule
from datosearch.studies.heldout import dominates
from datosearch.studies.study import stored_config
from search_helpers import cli_study, one_thread, quick_tuning

ROUNDS = 2  # timing rounds of the held-out check (`export --timing-rounds`): the rows, not the timing, are tested
ARGS = ["--model", "tiny", "--images", "5", "--steps", "6", "--population", "4", "--no-progress"]


@pytest.fixture(scope="module")
def default_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    with quick_tuning():
        url = cli_study(root, "d", 30, ARGS)
    return optuna.load_study(study_name="d", storage=url), url, root


def test_defaults_search_the_trajectory_against_the_converged_reference(default_study):
    study, _, _ = default_study
    config = stored_config(study)
    assert config.encoding["kind"] == "structured" and len(config.encoding["trajectories"]) > 1
    assert config.reference == "converged" and config.converged_spacing == "linspace"
    assert config.latency_mode == "model" and config.fid_paired
    names = {t.user_attrs.get(ANCHOR_ATTR) for t in study.trials}
    assert {"full", "pndm-5", "unipc-5", "dpmpp2m-5"} <= names  # fewer steps of the study's and the fast solvers


def test_latency_comes_from_the_stored_cost_model(default_study):
    study, _, _ = default_study
    model = CostModel.from_dict(study.user_attrs[COSTMODEL_ATTR])
    n_calls = stored_config(study).encoding["n_calls"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and "dedup_of" not in t.user_attrs]
    assert len(done) >= 20
    for trial in done:
        assert trial.values[1] == pytest.approx(model.predict(trial_schedule(trial)))
        assert trial.user_attrs[SPEEDUP_ATTR] == pytest.approx(model.predict(None, n_calls=n_calls) / trial.values[1])
    full = next(t for t in done if t.user_attrs.get(ANCHOR_ATTR) == "full")
    assert full.user_attrs[SPEEDUP_ATTR] == 1.0 and full.user_attrs[LATENCY_ATTR] == full.values[1]


def test_resume_reuses_the_cost_model_and_export_rescores_on_heldout_images(default_study, monkeypatch, capsys):
    study, url, root = default_study
    stored = study.user_attrs[COSTMODEL_ATTR]
    with one_thread():
        assert cli.main(["resume", "--study", "d", "--storage", url, "--trials", "32", "--no-outputs",
                         "--no-progress"]) == 0
    assert optuna.load_study(study_name="d", storage=url).user_attrs[COSTMODEL_ATTR] == stored  # not recalibrated
    monkeypatch.chdir(root)
    monkeypatch.setattr(verify, "CONVERGENCE_CHECK_IMAGES", 2)  # the reference's 200-step check: 2 of the 6 images
    seeds = _record_seeds(monkeypatch)
    with one_thread():
        capsys.readouterr()
        assert cli.main(["export", "--study", "d", "--storage", url, "--heldout", "6", "--heldout-seed", "900000",
                         "--timing-rounds", str(ROUNDS)]) == 0
    assert "held-out: 6 images (seeds 900000+)" in capsys.readouterr().out
    # every image the export generated (converged reference, full compute, each schedule, every timing round)
    # had a held-out seed of the range asked for, and all six were used; none is a calibration seed of the study
    assert set(seeds) == set(range(900000, 900006)) and not set(seeds) & set(stored_config(study).seeds)
    index = json.loads((root / "exports" / "d" / "index.json").read_text())
    assert index["heldout"]["n_images"] == 6 and index["heldout"]["seed0"] == 900000
    assert index["heldout"]["reference"]["steps"] == 100 and index["heldout"]["anchors"]
    assert index["heldout"]["reference"]["check"]["images"] == 2
    anchors = index["heldout"]["anchors"]
    full = next(a for a in anchors if a["name"] == "full")  # full compute through the hooks: the same images
    assert full["psnr_fullcompute"] == PSNR_CAP_DB and 0.5 < full["speedup_vs_fullcompute"] < 2
    for row in [e["heldout"] for e in index["entries"]] + anchors:
        low, high = row["speedup_range"]
        assert low <= row["speedup_vs_fullcompute"] <= high and row["timing_rounds"] >= ROUNDS
        assert row["unet_calls"] == row["full"] + row["shallow"] + row["reuse"]  # the plan ran, call by call
        assert row["unet_computed"] == row["full"] + row["shallow"] and row["n_images"] == 6
        assert 0 < row["psnr_converged"] < PSNR_CAP_DB and math.isfinite(row["psnr_converged"])
    rows = [e["heldout"] for e in index["entries"]] + anchors
    assert min(r["timing_rounds"] for r in rows) == ROUNDS  # --timing-rounds reached the check
    for entry in index["entries"]:
        row = entry["heldout"]
        assert row["beats"] == [a["name"] for a in anchors if dominates(row, a)]


def _record_seeds(monkeypatch) -> list[int]:
    """The seed of every image the tiny pipeline generates from now on (in this process: none is split off to
    worker processes, which would record theirs in their own copy of the list)."""
    monkeypatch.setattr(processes, "MAX_PROCESSES", 1)
    seeds: list[int] = []
    real = StableDiffusionPipeline.__call__

    @functools.wraps(real)
    def call(self, *args, generator=None, **kwargs):
        gens = generator if isinstance(generator, list) else [generator]
        seeds.extend(g.initial_seed() for g in gens if g is not None)
        return real(self, *args, generator=generator, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", call)
    return seeds


def test_report_shows_the_cost_model_and_forecast_calls(default_study, tmp_path):
    from datosearch.studies.report import cost_model_table, write_report

    study, _, _ = default_study
    table = cost_model_table(study)
    assert "Latency cost model" in table and "R² " in table and "full" in table
    page = write_report(study, tmp_path / "r.html", pictures=0).read_text()  # pictures: tests/test_report.py
    assert table in page
    assert cost_model_table(optuna.create_study()) == ""  # a study without one shows nothing
