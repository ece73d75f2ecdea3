"""The realism objective: its offset, its real images, and when it is refused (the default leaves it out)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from datosearch import cli
from datosearch.models import digits
from datosearch.objectives import get_extractor
from datosearch.objectives.fid import extract_features
from datosearch.studies import build, realism
from datosearch.studies.config import StudyConfig
from datosearch.studies.resolve import resolve
from search_helpers import TINY_ARGS, one_thread


def test_realism_is_opt_in_and_needs_real_images_outside_the_embedded_model(tmp_path):
    stats = tmp_path / "real.npz"
    np.savez(stats, mu=np.zeros(4), sigma=np.eye(4))
    realism_only = {"images": 5, "steps": 2, "objectives": ["fid", "latency", "realism"]}
    with one_thread():
        tiny, pipe = resolve({"model": "tiny", "images": 5, "steps": 2})
        embedded, _ = resolve({"model": "embedded", **realism_only})
        with_stats, _ = resolve({"model": "tiny", **realism_only, "real_stats": str(stats)}, pipe=pipe)
        with pytest.raises(ValueError, match="realism objective needs real-image statistics for model 'tiny'"):
            resolve({"model": "tiny", **realism_only}, pipe=pipe)
    assert tiny.objectives == ["psnr", "latency", "shift"] and tiny.real_stats is None  # the default: no realism
    assert embedded.objectives == ["fid", "latency", "realism"] and embedded.real_stats is None  # its digits
    assert with_stats.objectives == ["fid", "latency", "realism"] and with_stats.real_stats == str(stats)


def test_realism_without_real_images_is_one_sentence_and_creates_nothing(tmp_path, capsys):
    db = tmp_path / "r.db"
    with one_thread():
        code = cli.main(["run", "--study", "r", "--storage", f"sqlite:///{db}", *TINY_ARGS, "--objectives",
                         "fid,latency,realism", "--trials", "1", "--no-outputs"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not db.exists()
    assert "realism objective needs real-image statistics for model 'tiny': pass --real-stats" in err


def test_the_offset_sample_extends_the_calibration_batch():
    config = type("C", (), {"prompts": ["a", "b", "c"], "seeds": [5, 2, 9]})()
    prompts, seeds = realism.offset_batch(config, 7)
    assert prompts == ["a", "b", "c", "a", "b", "c", "a"] and seeds == [5, 2, 9, 10, 11, 12, 13]
    assert realism.offset_batch(config, 2) == (["a", "b", "c"], [5, 2, 9])  # never fewer than the batch


def test_training_digits_are_the_split_the_held_out_check_never_uses():
    record = json.loads(digits.TRAINING_RECORD.read_text())["split"]
    assert not set(record["train_indices"]) & set(record["heldout_indices"])
    train, held = digits.training_digits()[0], digits.heldout_digits()[0]
    assert len(train) == len(record["train_indices"]) and len(train) + len(held) == 1797
    assert not torch.equal(train[:len(held)], held)


def _realism_setup(tmp_path, monkeypatch, form: str | None):
    """A tiny study's realism score (the given `realism_form`), its reference, the offset sample's features and the
    real statistics it was given."""
    monkeypatch.setattr(realism, "OFFSET_IMAGES", 6)
    with one_thread():
        config, pipe = resolve({"model": "tiny", "images": 3, "steps": 2, "objectives": ["fid", "latency", "realism"],
                                "real_stats": str(tmp_path / "real.npz"), "reference": "full", "batch_size": 3})
        config = dataclasses.replace(config, realism_form=form)
        extractor = get_extractor(config.extractor, "cpu")
        d = extractor.num_features
        mu = torch.linspace(-1, 1, d, dtype=torch.float64)
        sigma = torch.eye(d, dtype=torch.float64) + 0.1 * torch.ones(d, d, dtype=torch.float64)
        np.savez(tmp_path / "real.npz", mu=mu.numpy(), sigma=sigma.numpy())
        reference = build.reference_images(pipe, config, tmp_path)
        score = build.extra_scores(config, reference, "cpu", pipe, tmp_path)["realism"]
        prompts, seeds = realism.offset_batch(config)
        sample = build.reference_images(pipe, dataclasses.replace(config, prompts=prompts, seeds=seeds), tmp_path)
    assert len(sample) == 6 and torch.equal(sample[:3], reference)  # same prompts and seeds: the same images
    return score, reference, extractor, extract_features(extractor, sample), (mu, sigma)


def _frechet(mu1, s1, mu2, s2) -> float:
    """The Fréchet distance of two Gaussians, in numpy (independent of torchmetrics)."""
    root = np.sqrt(np.linalg.eigvals(s1.numpy() @ s2.numpy()).astype(complex)).real.sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2 * root)


def test_realism_is_the_frechet_distance_of_the_sample_shifted_by_the_candidate_s_paired_change(tmp_path, monkeypatch):
    """The calibration batch is the sample's first images, so the reference itself scores the sample's own
    Fréchet distance from the real statistics; a candidate moves the mean by its paired mean shift and the
    covariance by its covariance minus the reference's (kept positive semi-definite)."""
    score, reference, extractor, sample, (mu, sigma) = _realism_setup(tmp_path, monkeypatch, None)
    sample_sigma = torch.cov(sample.T)
    assert score(reference) == pytest.approx(_frechet(sample.mean(0), sample_sigma, mu, sigma), rel=1e-4)
    darker = reference * 0.5
    fd, fr = extract_features(extractor, darker), extract_features(extractor, reference)
    shifted = sample_sigma + torch.cov(fd.T) - torch.cov(fr.T)
    values, vectors = torch.linalg.eigh(shifted)
    psd = (vectors * values.clamp(min=0)) @ vectors.T
    expected = _frechet(sample.mean(0) + (fd - fr).mean(0), psd, mu, sigma)
    assert score(darker) == pytest.approx(expected, rel=1e-4) and score(darker) != pytest.approx(score(reference))


def test_realism_studies_created_before_the_frechet_form_keep_the_mean_term(tmp_path, monkeypatch):
    """A stored configuration without `realism_form` is the mean form: ||sample mean - mu + paired shift||²."""
    stored = {**_config_json(["fid", "latency", "realism"])}
    assert StudyConfig.from_json(stored).realism_form == "mean"
    assert StudyConfig.from_json({**stored, "objectives": ["psnr", "latency", "shift"]}).realism_form is None
    assert StudyConfig.from_json({**stored, "realism_form": "frechet"}).realism_form == "frechet"
    score, reference, extractor, sample, (mu, _) = _realism_setup(tmp_path, monkeypatch, "mean")
    gap = sample.mean(0) - mu
    assert score(reference) == pytest.approx(float(gap @ gap), rel=1e-6)
    darker = reference * 0.5
    moved = gap + (extract_features(extractor, darker) - extract_features(extractor, reference)).mean(0)
    assert score(darker) == pytest.approx(float(moved @ moved), rel=1e-6) and score(darker) != score(reference)


def _config_json(objectives: list[str]) -> dict:
    """A stored configuration as a study created before `realism_form` holds it."""
    with one_thread():
        config, _ = resolve({"model": "tiny", "images": 3, "steps": 2, "objectives": ["psnr", "latency", "shift"]})
    data = config.to_json()
    data.pop("realism_form")
    return {**data, "objectives": objectives}


def test_the_embedded_real_statistics_follow_the_prompted_digits():
    """Real digits mixed as the prompts ask: all-3 prompts give the training 3s' mean and covariance; a prompt
    with no digit is refused in one sentence."""
    extractor = get_extractor("embedded-digits", "cpu")
    config = type("C", (), {"model": "embedded", "real_stats": None})()
    images, labels = digits.training_digits()
    threes = extract_features(extractor, images[labels == 3])
    mu, sigma = realism.real_stats(config, extractor, [digits.digit_prompt(3)] * 4)
    assert torch.allclose(mu, threes.mean(0)) and torch.allclose(sigma, torch.cov(threes.T), atol=1e-9)
    mixed_mu, mixed_sigma = realism.real_stats(config, extractor, [digits.digit_prompt(3), digits.digit_prompt(8)])
    eights = extract_features(extractor, images[labels == 8])
    both = torch.cat([threes - threes.mean(0) + mixed_mu, eights - eights.mean(0) + mixed_mu])  # not the mixture
    assert not torch.allclose(mixed_mu, threes.mean(0))
    assert torch.trace(mixed_sigma) > torch.trace(torch.cov(both.T)) * 0.999  # the digits' own means spread it
    with pytest.raises(ValueError, match="realism objective on the embedded model needs a digit in every prompt"):
        realism.real_stats(config, extractor, ["a cat"])


def test_realism_refuses_statistics_of_another_width_and_a_batch_of_another_size():
    from datosearch.objectives import ObjectiveError, RealismDistance

    extractor = get_extractor("conv-random", "cpu", num_features=4)
    reference = torch.rand(5, 3, 8, 8)
    sample = torch.randn(20, 4, dtype=torch.float64)
    real = (torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    with pytest.raises(ObjectiveError, match="must have the extractor's 4 dimensions"):
        RealismDistance(extractor, reference, torch.randn(20, 5, dtype=torch.float64), real)
    score = RealismDistance(extractor, reference, sample, real)
    assert score(reference) >= 0.0
    with pytest.raises(ObjectiveError, match="one candidate per reference image: 4 vs 5"):
        score(reference[:4])
