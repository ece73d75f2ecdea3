"""Wiring: FID-proxy features narrower than the calibration batch, prompted digits, scheduler names."""

from types import SimpleNamespace

import pytest
import torch

from datosearch import objectives
from datosearch.models.tiny import tiny_sd_pipeline
from datosearch.space.trajectory import set_scheduler
from datosearch.studies.build import make_extractor, n_calls, prompted_digits


def test_conv_random_is_built_narrow():
    config = SimpleNamespace(extractor="conv-random", prompts=["p"] * 12)
    assert make_extractor(config, "cpu").num_features == 6


def test_wide_extractor_gets_a_fixed_projection(monkeypatch):
    monkeypatch.setattr(objectives, "get_extractor", lambda name, device="cpu", **kw: objectives.ConvRandomFeatures(64))
    config = SimpleNamespace(extractor="embedded-digits", prompts=["p"] * 12)
    a, b = make_extractor(config, "cpu"), make_extractor(config, "cpu")
    images = torch.rand(3, 3, 16, 16)
    assert a.num_features == 6 and a(images).shape == (3, 6)
    assert torch.equal(a(images), b(images))
    config.prompts = ["p"] * 80
    assert make_extractor(config, "cpu").num_features == 64  # wide enough batch: unchanged


def test_prompted_digits():
    assert prompted_digits(["a handwritten digit 3", "digit 7!"]) == [3, 7]
    with pytest.raises(ValueError, match="needs a digit"):
        prompted_digits(["a cat"])


def test_scheduler_names_and_call_counts():
    pipe = tiny_sd_pipeline()
    assert set_scheduler(pipe, None) == "PNDMScheduler" and n_calls(pipe, 10) == 11
    assert set_scheduler(pipe, "ddim") == "DDIMScheduler" and n_calls(pipe, 10) == 10
    with pytest.raises(ValueError, match="unknown scheduler"):
        set_scheduler(pipe, "warp")
