"""Shared fixtures: tiny offline pipelines built from configs (no downloads)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# what the tests share with the benches lives in bench/ (headless.py, fake_worker.py); appended, so it shadows nothing
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _torch_threads():
    """Each test starts with the same torch and timing threads (the CLI sets both for its process) and generates
    in-process (the CLI may split generations over processes)."""
    from datosearch.objectives import set_timing_threads
    from datosearch.search import processes

    before, timing = torch.get_num_threads(), set_timing_threads(None)
    yield
    torch.set_num_threads(before)
    set_timing_threads(timing)
    processes.enable(False)


@pytest.fixture(scope="session")
def ddim_pipe():
    from datosearch.models.tiny import tiny_sd_pipeline

    return tiny_sd_pipeline(scheduler="ddim")


@pytest.fixture(scope="session")
def pndm_pipe():
    from datosearch.models.tiny import tiny_sd_pipeline

    return tiny_sd_pipeline(scheduler="pndm")


def generate(pipe, steps: int = 10, prompts=("a red cube", "a blue ball"), seed: int = 0, **kw) -> torch.Tensor:
    """Latents of one seeded generation (deterministic for a given pipeline state)."""
    out = pipe(list(prompts), num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
               output_type="latent", **kw)
    return out.images
