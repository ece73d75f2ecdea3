"""optuna-dashboard shows the objectives by name (issue 15): metric names are stored when a study is created."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from datosearch.studies import study as studies
from search_helpers import FakeEvaluator
from test_workers import _config


def _study(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/d.db"
    config = _config()
    study = studies.create(url, "d", config)
    studies.run(study, FakeEvaluator(), config, 3)
    return url


def test_metric_names_are_the_objectives(tmp_path):
    url = _study(tmp_path)
    assert optuna.load_study(study_name="d", storage=url).metric_names == ["fid", "latency"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_optuna_dashboard_shows_the_objective_names(tmp_path):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install -e '.[dashboard]')")
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")
    if exe is None:
        pytest.skip("the optuna-dashboard command is not on PATH")
    url = _study(tmp_path)
    study_id = optuna.load_study(study_name="d", storage=url)._study_id
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([exe, url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                status, page = _get(f"{base}/dashboard/studies/{study_id}")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"optuna-dashboard did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
                time.sleep(0.3)
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(f"{base}/api/studies/{study_id}")
        detail = json.loads(body)
        assert status == 200 and detail["name"] == "d"
        assert detail["objective_names"] == ["fid", "latency"]
        assert len(detail["trials"]) >= 3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
