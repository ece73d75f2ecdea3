"""The dependency floors in pyproject.toml cover the library features the code uses (issue 15).

Each row: distribution, the first release with the feature (checked in the released wheels:
`pip download NAME==X --no-deps` and grep), where it lives, and a string of our source that uses it
(so a row for a feature we no longer use fails too).
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[1]
SRC = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))


def _attr(module: str, path: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _has_param(module: str, path: str, param: str) -> Callable[[], bool]:
    return lambda: param in inspect.signature(_attr(module, path)).parameters


FEATURES: list[tuple[str, str, str, Callable[[], Any], str]] = [
    # diffusers 0.40.0's hooks.py has no CacheContext and StateManager.set_context takes a name
    ("diffusers", "0.41.0", "diffusers.hooks.hooks.CacheContext", lambda: _attr("diffusers.hooks.hooks", "CacheContext"),
     "CacheContext(name="),
    ("diffusers", "0.41.0", "StateManager.set_context(CacheContext)",
     _has_param("diffusers.hooks.hooks", "StateManager.set_context", "context"), "set_context(_CONTEXT)"),
    # optuna 4.x stores constraints only through `constraints_func`
    ("optuna", "5.0.0", "Trial.set_constraint", lambda: _attr("optuna.trial", "Trial.set_constraint"),
     "trial.set_constraint("),
    ("optuna", "5.0.0", "FrozenTrial.constraints", lambda: _attr("optuna.trial", "FrozenTrial.constraints"),
     "t.constraints.values()"),
    ("optuna", "4.0.0", "optuna.storages.journal.JournalFileBackend",
     lambda: _attr("optuna.storages.journal", "JournalFileBackend"), "journal.JournalFileBackend("),
    ("optuna", "3.6.0", "optuna.samplers.GPSampler", lambda: _attr("optuna.samplers", "GPSampler"), "GPSampler("),
    ("optuna", "3.2.0", "Study.set_metric_names", lambda: _attr("optuna", "Study.set_metric_names"),
     ".set_metric_names("),
    # transformers 4.x's CLIPTokenizer needs vocab_file/merges_file; 5.0 takes the vocabulary itself
    ("transformers", "5.0.0", "CLIPTokenizer(vocab=dict, merges=list)",
     _has_param("transformers", "CLIPTokenizer.__init__", "vocab"), "CLIPTokenizer(vocab=vocab, merges=[]"),
    ("jsonschema", "4.0.0", "jsonschema.Draft202012Validator", lambda: _attr("jsonschema", "Draft202012Validator"),
     "Draft202012Validator("),
    ("torch", "2.0.0", "torch.nn.functional.scaled_dot_product_attention",
     lambda: _attr("torch.nn.functional", "scaled_dot_product_attention"), "scaled_dot_product_attention"),
    ("torch", "2.0.0", "torch.mps.synchronize", lambda: _attr("torch.mps", "synchronize"), "torch.mps.synchronize"),
]


def declared_floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for text in project["dependencies"]:
        req = Requirement(text)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        assert lows, f"dependency {text!r} declares no floor"
        floors[req.name.lower()] = max(lows)
    return floors


@pytest.mark.parametrize("dist,first,feature,probe,used", FEATURES, ids=[f[2] for f in FEATURES])
def test_floor_covers_each_feature_used(dist, first, feature, probe, used):
    assert used in SRC, f"the code no longer uses {feature} ({used!r}); drop the row"
    floor = declared_floors()[dist]
    assert floor >= Version(first), f"{dist}>={floor} is declared but {feature} first appears in {dist} {first}"
    assert Version(version(dist)) >= floor
    assert probe(), f"the installed {dist} {version(dist)} lacks {feature}"


def test_every_runtime_dependency_is_declared_with_a_floor():
    floors = declared_floors()
    imported = set(re.findall(r"^\s*(?:from|import) (\w+)", SRC, flags=re.M))
    third_party = {"torch", "diffusers", "transformers", "optuna", "torchmetrics", "sqlalchemy", "plotly", "tqdm",
                   "safetensors", "numpy", "jsonschema"}
    assert third_party <= imported | {"numpy"}
    assert third_party <= set(floors)
