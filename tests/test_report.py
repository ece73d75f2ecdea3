"""The report (issue 19): axes a user thinks in, the front table from the export's rows, anchors and
failures, the study box with a command that reproduces the study, pictures, and bad input."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from datosearch import cli
from datosearch.objectives import set_timing_threads
from datosearch.search.attrs import ANCHOR_ATTR, BUDGET_ATTR, FAIL_ATTR, SPEEDUP_ATTR
from datosearch.space.schedule import Schedule
from datosearch.studies import export_front, open_study
from datosearch.studies import study as studies
from datosearch.studies.export import beaten_summary, build_export, heldout_summary, stored_heldout
from datosearch.studies.front import pareto_front
from datosearch.studies.report import render_report, write_report
from datosearch.studies.report_pictures import DEFAULT_PICTURES, png_data_uri, upscale_factor
from datosearch.studies.report_scatter import quality_figures
from datosearch.studies.reproduce import reproduce_command
from datosearch.studies.resolve import resolve
from datosearch.studies.study import stored_config
from search_helpers import TINY_ARGS, FakeEvaluator, one_thread
from test_workers import _config

URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _fake_heldout(entries):
    """Held-out rows with known numbers (the real re-scoring is tested in test_launch/test_heldout)."""
    rows = [{"name": f"t{e.trial.number}", "speedup_vs_fullcompute": 1.5 + 0.25 * k, "speedup_range": [1.4, 1.6],
             "fid_real": 40.0 + k, "fid_converged": 2.0 + k, "psnr_converged": 30.0 + k / 8, "psnr_fullcompute": 35.0 + k / 16,
             "beats": ["deepcache-N2-b0"] if k == 0 else []} for k, e in enumerate(entries)]
    return {"n_images": 6, "seed0": 777000, "reference": {"scheduler": "DPMSolverMultistepScheduler", "steps": 100},
            "dominance": {"speed": 0.95, "psnr_db": 1.0, "fid_slack": 0.1, "fid_margin": 0.2}, "front": rows,
            "anchors": [{"name": "deepcache-N2-b0", "speedup_vs_fullcompute": 1.7, "fid_real": 50.0,
                         "psnr_converged": 28.0, "psnr_fullcompute": 33.0}]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real tiny study (constraint: at most 1 non-full call in a row, so some anchors break it), exported
    with held-out rows, and its report with 2 pictures."""
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root}/s.db"
    args = ["run", "--study", "s", "--storage", url, "--trials", "10", "--no-outputs", *TINY_ARGS,
            "--encoding", "calls", "--max-nonfull-run", "1", "--objectives", "fid,latency,shift"]
    with one_thread():
        assert cli.main(args) == 0
    study = open_study(url, "s")
    export_front(study, root / "export", _fake_heldout)
    with one_thread():
        page = write_report(study, root / "r.html", pictures=2, export_dir=root / "export", storage=url).read_text()
    return study, url, root, page


def _cells(page: str, table: str) -> list[list[str]]:
    body = re.search(rf"<table class='{table}'>.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    return [[re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_front_table_rows_are_the_index_rows(tiny):
    _, _, root, page = tiny
    index = json.loads((root / "export" / "index.json").read_text())
    rows = _cells(page, "front")
    assert len(rows) == len(index["entries"]) >= 2
    by_file = {r[0][0]: r for r in rows}
    speedups = [float(r[1][0].rstrip("x")) for r in rows]
    assert speedups == sorted(speedups, reverse=True)  # fastest first
    for e in index["entries"]:
        row = by_file[e["file"]]
        h = e["heldout"]
        assert row[1][0] == f"{e['speedup']:.2f}x" and row[2] == [f"{e['values']['fid']:.4g}"]
        assert row[3] == [f"{e['values']['shift']:.4g}"]  # the third objective
        row = row[:3] + row[4:]
        assert row[3] == [f"{e['paired']['psnr']:.2f}"]  # PSNR on the search images
        assert row[4][0] == f"{h['speedup_vs_fullcompute']:.2f}x" and row[5] == [f"{h['fid_real']:.3g}"]
        assert row[6] == [f"{h['fid_converged']:.3g}"]
        assert row[7] == [f"{h['psnr_converged']:.2f}"] and row[8] == [f"{h['psnr_fullcompute']:.2f}"]
        c = e["counts"]
        assert row[9] == [str(c["full"]), "/", str(c["shallow"]), "/", str(c["reuse"]), "/", str(c["forecast"])]
        assert " ".join(row[12]) == (beaten_summary(h["beats"]) or "none")
    assert "deepcache-N2-b0" in " ".join(sum(_cells(page, "anchors")[0], []))


def test_the_table_and_the_index_come_from_one_builder(tiny):
    study, _, root, _ = tiny
    entries = pareto_front(study)
    index = json.loads((root / "export" / "index.json").read_text())
    scores = stored_heldout(root / "export" / "index.json", study, entries)
    assert build_export(study, entries, scores).index == index  # the report's rows are the index's rows
    assert stored_heldout(root / "missing.json", study, entries) is None


def test_axes_are_speedup_and_quality_with_seconds_in_the_hover(tiny):
    study, _, _, _ = tiny
    figs = quality_figures(study, stored_config(study), {e.trial.number for e in pareto_front(study)})
    assert [f.layout.yaxis.title.text.split(" (")[0] for f in figs] == ["FID-proxy", "feature shift",
                                                                     "PSNR vs full compute, search images"]
    for fig in figs:
        assert "speedup against full compute" in (fig.layout.xaxis.title.text or fig.layout.xaxis2.title.text)
        hovers = " ".join(t for trace in fig.data for t in (trace.text or ()))
        assert re.search(r"speedup \d+\.\d\dx \(latency [\d.e-]+ s, measured\)", hovers)
        for trace in fig.data:  # anchors named in the legend and hover, never as text on the plot
            assert "text" not in (trace.mode or "")
        xs = [x for trace in fig.data for x in trace.x]
        speedups = [t.user_attrs[SPEEDUP_ATTR] for t in study.trials if SPEEDUP_ATTR in t.user_attrs]
        assert max(xs) == pytest.approx(max(speedups))


def test_infeasible_anchors_are_open_markers_with_the_reason(tiny):
    study, _, _, _ = tiny
    fig = quality_figures(study, stored_config(study), set())[0]
    broken = [t for t in study.trials if t.constraints.get("max_nonfull_run", 0) > 0]
    assert broken  # DeepCache N>=3 and DaTo COCO run more than 1 non-full call in a row
    texts = {text: (trace, k) for trace in fig.data for k, text in enumerate(trace.text or ())}
    for trial in broken:
        text = next(t for t in texts if f"<b>trial {trial.number}</b>" in t)
        assert "non-full calls in a row, over the limit of 1" in text
        trace, k = texts[text]
        if trial.user_attrs.get(ANCHOR_ATTR):
            assert trace.marker.symbol[k].endswith("-open") and trace.name.startswith("anchor: ")
        else:
            assert trace.name.startswith("constraint broken")


def test_study_box_and_the_command_that_reproduces_the_study(tiny):
    study, url, _, page = tiny
    box = re.search(r"<section id='study'>(.*?)</section>", page, re.S).group(1)
    for text in ("tiny, 32x32", "PNDMScheduler, 3 steps (4 U-Net calls), guidance 7.5", "5 calibration",
                 "6 held-out", "2 pictured", "10 complete", "0 failed", "0 pruned", "nsga2, population 4, seed 0",
                 "calls, branches", "at most 1 non-full calls in a row"):
        assert text in box, text
    config = stored_config(study)
    command = reproduce_command(config, "s", url, 10)
    assert not command.caveats and command.text() in box.replace("&#x27;", "'")
    args = cli.parser().parse_args(command.args[1:])
    with one_thread():  # as the study was made: the command reproduces every field
        assert resolve(cli._opts(args))[0].diff(config) == []
    previous = set_timing_threads(2)  # the device (its name counts timing threads) is where the command runs
    try:
        assert resolve(cli._opts(args))[0].diff(config) == ["device"]
    finally:
        set_timing_threads(previous)


def test_pictures_are_decodable_nearest_neighbour_pngs(tiny):
    study, _, _, page = tiny
    section = re.search(r"<section id='pictures'>(.*?)</section>", page, re.S).group(1)
    uris = URI.findall(section)
    n_rows = section.split("<tbody>")[1].count("<tr>")  # schedules and anchors (full compute is in the header)
    assert n_rows >= len(pareto_front(study)) and len(uris) == 2 + n_rows * 2 * 2  # image + difference per seed
    image = Image.open(io.BytesIO(base64.b64decode(uris[0])))
    scale = upscale_factor(32, 32)
    assert image.size == (32 * scale, 32 * scale) and scale == 3
    pixels = torch.from_numpy(np.array(image)).reshape(32 * scale, 32 * scale, -1)
    blocks = pixels.reshape(32, scale, 32, scale, -1)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every pixel is a scale x scale block: nearest-neighbour
    assert "seed 777000" in section and "PSNR vs full compute" in section
    assert DEFAULT_PICTURES == cli.DEFAULT_PICTURES == 4


def test_png_data_uri_grey_and_colour():
    for channels in (1, 3):
        uri = png_data_uri(torch.rand(channels, 5, 7), scale=2)
        image = Image.open(io.BytesIO(base64.b64decode(URI.fullmatch(uri).group(1))))
        assert image.size == (14, 10) and image.mode == ("L" if channels == 1 else "RGB")


# ---------------------------------------------------------------- studies scored by the fake evaluator
def _fake_study(url: str, fail_if=lambda s: False, trials: int = 6) -> optuna.Study:
    config = _config()
    study = studies.create(url, "f", config, [Schedule.full(6), Schedule.deepcache(6, 2), Schedule.deepcache(6, 3)])
    studies.run(study, FakeEvaluator(fail_if), config, trials) if trials else None
    return study


def test_failed_trials_are_drawn_below_with_their_reason(tmp_path):
    study = _fake_study(f"sqlite:///{tmp_path}/f.db", fail_if=lambda s: s.counts()["full"] == 3)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed
    fig = quality_figures(study, stored_config(study), set())[0]
    strip = next(t for t in fig.data if t.name.startswith("failed"))
    assert strip.yaxis == "y2" and len(strip.x) == len(failed)
    assert all("<b>failed</b>: CandidateError: the generated images contain NaN" in t and "estimated from its plan" in t
               for t in strip.text)


def test_a_study_with_no_finished_trial_gets_a_page_that_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/f.db"
    _fake_study(url, trials=0)
    out = tmp_path / "r.html"
    assert cli.main(["report", "--study", "f", "--storage", url, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "no finished trial yet" in lines[0]
    assert "The study has no finished trial yet" in out.read_text()


def test_a_study_where_every_trial_failed_says_how_many_and_why(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/f.db"
    study = _fake_study(url, trials=0)
    study.set_user_attr(BUDGET_ATTR, 4)
    with pytest.raises(Exception):
        studies.run(study, FakeEvaluator(lambda s: True), stored_config(study), 4)  # gives up: all fail
    n = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    out = tmp_path / "r.html"
    assert cli.main(["report", "--study", "f", "--storage", url, "--out", str(out)]) == 0
    line, = capsys.readouterr().out.strip().splitlines()
    reason = study.trials[0].user_attrs[FAIL_ATTR]
    assert f"all {n} finished trials failed" in line and reason in line
    page = out.read_text()
    assert f"No Pareto front: all {n} finished trials failed" in page and "failed (" in page  # and they are drawn


@pytest.mark.parametrize("where", ["under_a_file", "a_directory"])
def test_an_unwritable_output_is_one_sentence_exit_2_and_no_temporary_file(tmp_path, capsys, where):
    url = f"sqlite:///{tmp_path}/f.db"
    _fake_study(url)
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    out = tmp_path / "file" / "r.html" if where == "under_a_file" else tmp_path / "dir"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert cli.main(["report", "--study", "f", "--storage", url, "--out", str(out), "--pictures", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write the report to {out}" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_write_that_fails_late_leaves_no_temporary_file(tmp_path, monkeypatch):
    import os

    from datosearch.errors import UserValueError

    study = _fake_study(f"sqlite:///{tmp_path}/f.db")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(UserValueError, match="No space left on device"):
        write_report(study, tmp_path / "out" / "r.html", pictures=0)
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_report_without_pictures_loads_no_model(tmp_path, monkeypatch):
    study = _fake_study(f"sqlite:///{tmp_path}/f.db")  # model "fake" could not be loaded
    page = render_report(study, pictures=0)
    assert "<section id='front'>" in page and "<section id='pictures'>" not in page
    assert "Not re-scored on held-out images" in page


def test_run_writes_the_export_then_the_report_with_its_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with one_thread():
        assert cli.main(["run", "--study", "o", "--trials", "4", "--heldout", "0", *TINY_ARGS]) == 0
    out = capsys.readouterr().out
    assert "exported exports/o/index.json" in out and "report   reports/o.html" in out
    page = (tmp_path / "reports" / "o.html").read_text()
    index = json.loads((tmp_path / "exports" / "o" / "index.json").read_text())
    assert [r[0][0] for r in _cells(page, "front")] == [e["file"] for e in sorted(
        index["entries"], key=lambda e: -e["speedup"])]
    assert f"{DEFAULT_PICTURES} pictured" in page


def test_beaten_anchors_fold_deepcache_intervals():
    names = ["deepcache-N3-b0", "deepcache-N4-b0", "deepcache-N5-b0", "deepcache-N8-b0", "deepcache-nonuniform-N5-b0",
             "deepcache-nonuniform-N8-b0", "deepcache-N2-b1", "unipc-7"]
    assert beaten_summary(names) == "DeepCache N=3-5, 8, non-uniform N=5, 8; deepcache-N2-b1; unipc-7"
    assert beaten_summary([]) == "" and beaten_summary(["pndm-5"]) == "pndm-5"


def test_heldout_summary_lists_the_rows_fastest_first(tiny):
    _, _, root, _ = tiny
    index = json.loads((root / "export" / "index.json").read_text())
    lines = heldout_summary(index).splitlines()
    assert lines[0].startswith("held-out: 6 images (seeds 777000+)")
    assert len(lines) == 1 + sum("heldout" in e for e in index["entries"])
    speeds = [float(re.search(r"([\d.]+)x  beats", line).group(1)) for line in lines[1:]]
    assert speeds == sorted(speeds, reverse=True)
    assert any("beats: DeepCache N=2" in line for line in lines[1:])
    assert heldout_summary({"entries": index["entries"]}) is None  # not re-scored
