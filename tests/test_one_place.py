"""One atomic writer and one module of attribute keys (issue 15)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from datosearch import atomic
from datosearch.search import attrs

SRC = Path(atomic.__file__).parent


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in SRC.rglob("*.py")}


def test_write_atomic_text_and_bytes(tmp_path):
    text = tmp_path / "sub" / "a.json"
    assert atomic.write_atomic(text, "héllo\n") == text and text.read_bytes() == "héllo\n".encode()
    blob = tmp_path / "b.bin"
    atomic.write_atomic(blob, b"\x00\xffdata")
    assert blob.read_bytes() == b"\x00\xffdata"
    assert stat.S_IMODE(os.stat(blob).st_mode) == 0o644  # readable by the other users of a shared study
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json", "b.bin"]  # no temporaries


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text("old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_only_one_atomic_writer():
    users = sorted(name for name, text in _sources().items() if re.search(r"mkstemp|os\.replace\(|\.rename\(", text))
    assert users == ["atomic.py"]
    for module in ("space/io.py", "objectives/reference.py", "objectives/fid.py", "studies/report.py"):
        assert "write_atomic(" in _sources()[module], module


def test_reference_cache_and_report_go_through_the_writer(tmp_path, monkeypatch):
    import torch

    from datosearch.objectives.reference import load_or_compute_reference

    written = []
    real = atomic.write_atomic

    def spy(path, data, **kw):
        written.append(Path(path).name)
        return real(path, data, **kw)

    monkeypatch.setattr("datosearch.objectives.reference.write_atomic", spy)
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(load_or_compute_reference(tmp_path, "k", lambda: images), images)
    assert torch.equal(load_or_compute_reference(tmp_path, "k", lambda: 1 / 0), images)  # read back from the cache
    assert written == ["reference-k.safetensors"]


# a string literal where an attribute key goes (an f-string starting with a constant, f"{PREFIX}...", is fine)
Q = r"""f?["'](?!\{)"""
ACCESS = re.compile(rf"""(user_attrs(\.get)?[\[(]\s*{Q}|set_user_attr\(\s*{Q}|user_attrs=\{{\s*{Q}"""
                    rf"""|attrs\[\s*{Q}|attrs\.update\(\{{\s*{Q}|attrs: dict[^=]*=\s*\{{\s*{Q})""")


def test_attribute_keys_are_spelled_in_one_module():
    offenders = {name: ACCESS.findall(text) for name, text in _sources().items() if name != "search/attrs.py"}
    assert {k: v for k, v in offenders.items() if v} == {}
    for module in ("search/pareto.py", "studies/front.py", "search/runner.py", "search/liveness.py",
                   "search/evaluator.py", "studies/study.py", "studies/report.py"):
        assert "attrs import" in _sources()[module], module
    keys = attrs.TRIAL_ATTRS + attrs.STUDY_ATTRS
    assert len(set(keys)) == len(keys)
