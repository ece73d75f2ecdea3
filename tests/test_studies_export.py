"""A small real study (tiny pipeline): export validates and re-applies to the same images, report, show, refusal."""

import json
import re

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from datosearch import cli
from datosearch.search.evaluator import images_digest
from datosearch.space.io import json_schema
from datosearch.studies import open_study
from search_helpers import TINY_ARGS, one_thread


@pytest.fixture(scope="module")
def study_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{root}/s.db"
    with one_thread():
        assert cli.main(["run", "--study", "s", "--storage", url, "--trials", "10", "--no-outputs", *TINY_ARGS]) == 0
    return url


def test_export_validates_and_reapplies(study_url, tmp_path, capsys):
    out = tmp_path / "export"
    assert cli.main(["export", "--study", "s", "--storage", study_url, "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "datosearch/export@1" and index["entries"]
    assert [o["name"] for o in index["objectives"]] == ["fid", "latency"]
    for entry in index["entries"]:
        jsonschema.validate(json.loads((out / entry["file"]).read_text()), json_schema())
    study = open_study(study_url, "s")
    k = max(range(len(index["entries"])), key=lambda i: index["entries"][i]["speedup"])  # an accelerated one
    trial = study.trials[index["entries"][k]["trial"]]
    assert list(index["entries"][k]["values"].values()) == trial.values
    prompts = study.user_attrs["datosearch_config"]["prompts"]
    args = ["apply", "--schedule", str(out / "index.json"), "--index", str(k), "--out", str(tmp_path / "img")]
    with one_thread():
        assert cli.main(args + [a for p in prompts for a in ("--prompt", p)]) == 0
    paths = sorted((tmp_path / "img").glob("*.png"))
    images = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) / 255.0 for p in paths])
    assert images_digest(images) == trial.user_attrs["images_digest"]


def test_report_is_self_contained(study_url, tmp_path):
    path = tmp_path / "r.html"
    assert cli.main(["report", "--study", "s", "--storage", study_url, "--out", str(path)]) == 0
    html = path.read_text()
    assert "deepcache-N2-b0" in html and "Hypervolume history" in html and "Cache plans of the front" in html
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js is inlined
    opening_tags = re.findall(r"<script[^>]*>", html)
    assert opening_tags and not any("src=" in tag for tag in opening_tags)  # nothing loaded from elsewhere
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # (plotly.js's own strings hold links)
    assert "http" not in markup and "<link" not in markup


def test_show_prints_the_front(study_url, capsys):
    assert cli.main(["show", "--study", "s", "--storage", study_url]) == 0
    out = capsys.readouterr().out
    assert "fid" in out and "latency" in out and "full" in out


def test_resume_with_another_config_is_refused(study_url, capsys):
    study = open_study(study_url, "s")
    before = [(t.number, t.state, t.values) for t in study.trials]
    with one_thread():
        code = cli.main(["resume", "--study", "s", "--storage", study_url, *TINY_ARGS, "--steps", "4", "--guidance", "3",
                         "--trials", "12"])
    err = capsys.readouterr().err
    assert code == 2
    assert "steps (stored 3, given 4)" in err and "guidance (stored 7.5, given 3.0)" in err
    assert err.count("\n") == 1
    assert [(t.number, t.state, t.values) for t in open_study(study_url, "s").trials] == before
