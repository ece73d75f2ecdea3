"""Start-up is quiet (issue 15): loading the models prints nothing and raises no Python warnings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import datosearch
from datosearch import _quiet

SCRIPT = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from datosearch import models
    from datosearch.studies.build import load_pipeline
    models.load("embedded")
    models.load("tiny")
    load_pipeline("embedded")
    import datosearch.cli, datosearch.studies, datosearch.objectives
print("WARNINGS", [f"{w.category.__name__}: {w.message}" for w in caught])
"""


def test_loading_the_models_emits_no_warnings():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(datosearch.__file__).parents[1])}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "WARNINGS []"
    assert proc.stderr == ""  # neither transformers' torchvision fallback nor diffusers' accelerate notice


def test_only_the_known_harmless_messages_are_dropped():
    _quiet.install()
    _quiet.install()  # idempotent
    log = logging.getLogger("transformers.utils.import_utils")
    assert len(log.filters) == 1

    def passes(logger: logging.Logger, message: str) -> bool:
        return logger.filter(logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, (), None))

    assert not passes(log, "`CLIPImageProcessor` requires torchvision (not installed); falling back to "
                           "`CLIPImageProcessorPil` for backward compatibility.")
    assert passes(log, "`CLIPTokenizer` requires tokenizers (not installed)")  # anything else goes through
    mu = logging.getLogger("diffusers.models.modeling_utils")
    assert not passes(mu, "There are modules in UNet2DConditionModel that should be kept in float32: []. Casting")
    assert passes(mu, "There are modules in UNet2DConditionModel that should be kept in float32: ['norm']. Casting")
    gp = logging.getLogger("optuna._gp.batched_lbfgsb")
    assert not passes(gp, "The 'greenlet' package is unavailable, falling back to sequential L-BFGS-B optimization. "
                          "This may lead to slower suggestions.")
    assert passes(gp, "L-BFGS-B did not converge")
