"""Tests of datosearch.objectives: FID-proxy, reference cache, paired metrics, latency, extractors, MACs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datosearch.models.tiny import tiny_sd_pipeline
from datosearch.objectives import (
    DEFAULT_OBJECTIVES,
    OBJECTIVES,
    FeatureShift,
    FidProxy,
    Latency,
    ObjectiveError,
    call_macs,
    count_macs,
    device_name,
    get_extractor,
    load_or_compute_reference,
    measure_latency,
    objective_directions,
    paired_metrics,
    reference_key,
    set_timing_threads,
    speedup,
    timing_session,
)
from datosearch.space import PruneConfig, Schedule, highest_resolution_blocks

N_IMAGES = 80  # > 64 feature dimensions of conv-random


def smooth_images(n: int = N_IMAGES, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Varied, smooth images in [0, 1]: upsampled low-resolution noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def noisy(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def extractor() -> torch.nn.Module:
    return get_extractor("conv-random")


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return smooth_images()


@pytest.fixture(scope="module")
def proxy(extractor, reference) -> FidProxy:
    return FidProxy(extractor, reference_images=reference)


# ---------------------------------------------------------------- FID-proxy
def test_fid_of_reference_with_itself_is_zero_and_grows_with_noise(proxy, reference):
    assert proxy(reference) == pytest.approx(0.0, abs=1e-4)
    values = [proxy(noisy(reference, s)) for s in (0.03, 0.1, 0.3)]
    assert 0 < values[0] < values[1] < values[2], values
    # the real side is kept across candidates: scoring the reference again still gives ~0
    assert proxy(reference) == pytest.approx(0.0, abs=1e-4)


def test_fid_uses_torchmetrics_with_fixed_real_side(proxy, reference):
    from torchmetrics.image.fid import FrechetInceptionDistance

    assert isinstance(proxy.metric, FrechetInceptionDistance)
    assert proxy.metric.reset_real_features is False
    assert int(proxy.metric.real_features_num_samples) == len(reference)


def test_nan_images_raise(proxy, reference):
    bad = reference.clone()
    bad[3, 0, 5, 5] = float("nan")
    with pytest.raises(ObjectiveError, match="candidate produced NaN"):
        proxy(bad)
    inf = reference.clone()
    inf[0, 0, 0, 0] = float("inf")
    with pytest.raises(ObjectiveError, match="candidate produced NaN"):
        proxy(inf)


def test_too_few_images_raise(extractor, proxy, reference):
    with pytest.raises(ObjectiveError, match="at least 65 images"):
        proxy(reference[:64])
    with pytest.raises(ObjectiveError, match="reference images"):
        FidProxy(extractor, reference_images=reference[:10])


# ---------------------------------------------------------------- shift
def test_shift_is_the_squared_mean_paired_feature_difference(extractor, reference):
    shift = FeatureShift(extractor, reference)
    assert shift(reference) == 0.0
    candidate = noisy(reference, 0.1)
    diff = (extractor(candidate).double() - extractor(reference).double()).mean(0)
    assert shift(candidate) == pytest.approx(float(diff @ diff), rel=1e-6)


def test_shift_sees_a_shared_change_that_random_errors_of_the_same_size_do_not_make(extractor, reference):
    """The same brightness offset on every image moves the mean; offsets of the same size and random
    sign (the same pixel error) mostly cancel. The paired FID-proxy term (a mean square) sees both alike."""
    base = reference * 0.8 + 0.1  # room to move without clipping
    signs = torch.tensor([1.0, -1.0]).repeat(len(base) // 2).view(-1, 1, 1, 1)
    shared, random = base + 0.05, base + 0.05 * signs
    assert torch.allclose((shared - base).abs(), (random - base).abs())
    shift, proxy = FeatureShift(extractor, base), FidProxy(extractor, reference_images=base, paired=True)
    assert shift(shared) > 20 * shift(random)
    paired = lambda x: float((proxy.features(x) - proxy.reference_features).pow(2).sum(1).mean())  # noqa: E731
    assert paired(random) == pytest.approx(paired(shared), rel=0.5)


def test_shift_checks_its_input(extractor, reference):
    shift = FeatureShift(extractor, reference)
    with pytest.raises(ObjectiveError, match="one candidate per reference image"):
        shift(reference[:10])
    bad = reference.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ObjectiveError, match="NaN"):
        shift(bad)


def test_shift_with_an_offset_is_the_squared_distance_of_the_mean_feature_from_a_target(extractor, reference):
    """offset = (reference mean - target mean): the value is ||candidate mean - target mean||^2 exactly."""
    target = extractor(noisy(reference, 0.3)).double().mean(0)
    offset = extractor(reference).double().mean(0) - target
    realism = FeatureShift(extractor, reference, offset=offset)
    candidate = noisy(reference, 0.1)
    gap = extractor(candidate).double().mean(0) - target
    assert realism(candidate) == pytest.approx(float(gap @ gap), rel=1e-6)
    assert realism(reference) == pytest.approx(float(offset @ offset), rel=1e-9)  # the reference is not the target
    with pytest.raises(ObjectiveError, match="offset must have the extractor's 64 dimensions"):
        FeatureShift(extractor, reference, offset=torch.zeros(3))


def test_npz_stats_agree_with_image_reference(tmp_path, extractor, proxy, reference):
    path = proxy.save_stats(tmp_path / "stats.npz")
    from_stats = FidProxy(extractor, real_stats=path)
    candidate = noisy(reference, 0.1)
    assert from_stats(candidate) == pytest.approx(proxy(candidate), rel=1e-4, abs=1e-6)
    # an .npz with only mu and sigma (the common format) gives the same value
    with np.load(path) as data:
        np.savez(tmp_path / "plain.npz", mu=data["mu"], sigma=data["sigma"])
    assert FidProxy(extractor, real_stats=tmp_path / "plain.npz")(candidate) == pytest.approx(
        proxy(candidate), rel=1e-4, abs=1e-6)


def test_npz_with_wrong_dimension_raises(tmp_path, extractor):
    np.savez(tmp_path / "bad.npz", mu=np.zeros(8), sigma=np.eye(8))
    with pytest.raises(ObjectiveError, match="8-d but the feature extractor gives 64-d"):
        FidProxy(extractor, real_stats=tmp_path / "bad.npz")


# ---------------------------------------------------------------- reference cache
def test_reference_cache_computes_once_per_key(tmp_path, reference):
    fields = dict(model="tiny", prompts=["a", "b"], seeds=[0, 1], resolution=(32, 32), steps=4,
                  scheduler="PNDMScheduler", guidance=7.5, dtype=torch.float32)
    key = reference_key(**fields)
    assert key == reference_key(**dict(reversed(list(fields.items()))))  # order-independent
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return reference[:4]

    first = load_or_compute_reference(tmp_path, key, compute)
    second = load_or_compute_reference(tmp_path, key, compute)
    assert len(calls) == 1
    assert torch.equal(first, second) and torch.equal(second, reference[:4])
    other = reference_key(**{**fields, "seeds": [0, 2]})
    assert other != key
    load_or_compute_reference(tmp_path, other, compute)
    assert len(calls) == 2
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_reference_cache_recomputes_an_unreadable_file(tmp_path, reference):
    from datosearch.objectives import reference_path

    reference_path(tmp_path, "k").write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable reference cache"):
        images = load_or_compute_reference(tmp_path, "k", lambda: reference[:2])
    assert torch.equal(images, reference[:2])
    assert torch.equal(load_or_compute_reference(tmp_path, "k", lambda: reference[2:4]), reference[:2])


def test_reference_key_needs_all_fields():
    with pytest.raises(ObjectiveError, match="missing field"):
        reference_key(model="tiny", prompts=["a"])


def test_reference_cache_refuses_nan(tmp_path):
    with pytest.raises(ObjectiveError, match="NaN"):
        load_or_compute_reference(tmp_path, "k", lambda: torch.full((2, 3, 8, 8), float("nan")))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- paired metrics
def test_paired_metrics(reference):
    same = paired_metrics(reference[:8], reference[:8])
    assert same["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert same["psnr"] >= 99.0 and same["mae"] == 0.0
    worse = paired_metrics(noisy(reference[:8], 0.2), reference[:8])
    assert worse["psnr"] < 30 and worse["ssim"] < 0.9 and worse["mae"] > 0.05
    tiny = paired_metrics(reference[:2, :, :7, :7], reference[:2, :, :7, :7])  # small images: smaller kernel
    assert tiny["ssim"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ObjectiveError, match="shaped like the reference"):
        paired_metrics(reference[:4], reference[:5])


# ---------------------------------------------------------------- latency
def test_latency_counts_calls_and_is_sane():
    calls = []

    def run() -> None:
        calls.append(1)
        time.sleep(0.01)

    lat = measure_latency(run, "cpu", warmup=2, repeats=3)
    assert len(calls) == 5
    assert isinstance(lat, Latency) and len(lat.times_s) == 3
    assert 0.009 <= lat.median_s < 1.0
    assert lat.median_s == sorted(lat.times_s)[1]
    assert lat.device_name == device_name("cpu") and "cores" in lat.device_name
    assert speedup(Latency(0.2), Latency(0.1)) == pytest.approx(2.0)
    with pytest.raises(ObjectiveError):
        measure_latency(run, repeats=0)


def test_timing_runs_on_its_own_thread_count_and_the_device_name_says_it():
    torch.set_num_threads(2)
    seen = []
    assert set_timing_threads(1) is None
    lat = measure_latency(lambda: seen.append(torch.get_num_threads()), "cpu", warmup=1, repeats=2)
    assert seen == [1, 1, 1] and torch.get_num_threads() == 2  # restored after timing
    assert lat.device_name.endswith("cores, 1 torch threads)") and device_name("cpu") == lat.device_name
    with timing_session("cpu"):
        assert torch.get_num_threads() == 1
        with timing_session("cpu"):  # nested: no switch, no restore inside
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    assert set_timing_threads(None) == 1
    assert device_name("cpu").endswith("cores, 2 torch threads)")  # unset: torch's own count


def test_cli_times_on_threads_and_generates_on_every_core(monkeypatch):
    import argparse
    import os

    from datosearch import cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2}, raising=False)
    cli._set_threads(argparse.Namespace(command="run", device="cpu", threads=None))
    assert torch.get_num_threads() == 3 and device_name("cpu").endswith("1 torch threads)")
    cli._set_threads(argparse.Namespace(command="run", device="cpu", threads=2))
    assert torch.get_num_threads() == 3 and device_name("cpu").endswith("2 torch threads)")
    cli._set_threads(argparse.Namespace(command="worker", device="cpu", threads=2))  # workers share the machine
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_latency_cuda_events():
    x = torch.randn(512, 512, device="cuda")
    lat = measure_latency(lambda: x @ x, "cuda", warmup=1, repeats=3)
    assert lat.median_s > 0 and lat.device_name == torch.cuda.get_device_name()


# ---------------------------------------------------------------- extractors
def test_unknown_extractor_lists_names():
    with pytest.raises(ObjectiveError, match="conv-random.*embedded-digits.*inception.*module:"):
        get_extractor("nope")


def test_inception_without_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("DATOSEARCH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(ObjectiveError, match="InceptionV3 weights are not available offline.*DATOSEARCH_INCEPTION"):
        get_extractor("inception")
    monkeypatch.setenv("DATOSEARCH_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(ObjectiveError, match="is not a file"):
        get_extractor("inception-192")


def test_conv_random_is_deterministic_and_shaped(reference):
    state = torch.random.get_rng_state()
    a, b = get_extractor("conv-random"), get_extractor("conv-random")
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert a.num_features == 64
    fa, fb = a(reference[:4]), b(reference[:4])
    assert fa.shape == (4, 64) and torch.equal(fa, fb)
    gray = a(torch.rand(2, 1, 50, 70))  # any channels / resolution
    assert gray.shape == (2, 64)
    assert not torch.equal(fa, get_extractor("conv-random", seed=1)(reference[:4]))


def test_module_import_path_extractor(reference):
    ext = get_extractor("module:datosearch.objectives.features:ConvRandomFeatures", num_features=16)
    assert ext.num_features == 16 and ext(reference[:2]).shape == (2, 16)
    ext = get_extractor("module:torch.nn:Flatten")  # no num_features: inferred from a dummy forward
    assert ext.num_features == 3 * 64 * 64
    with pytest.raises(ObjectiveError, match="cannot import"):
        get_extractor("module:datosearch.nope:thing")


def test_embedded_digits_is_imported_lazily(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("datosearch.models.digits")
    fake.digit_features = lambda: get_extractor("conv-random", num_features=8)
    monkeypatch.setitem(sys.modules, "datosearch.models.digits", fake)
    assert get_extractor("embedded-digits").num_features == 8
    monkeypatch.setitem(sys.modules, "datosearch.models.digits", None)  # import fails
    with pytest.raises(ObjectiveError, match="datosearch.models.digits"):
        get_extractor("embedded-digits")


def test_embedded_digits_extractor_is_the_shipped_feature_net():
    from datosearch.models import digits

    ext = get_extractor("embedded-digits")  # ships with the package: no error is acceptable here
    assert isinstance(ext, digits.DigitFeatures)
    x = torch.rand(2, 1, 32, 32)
    assert ext.num_features == 64 and ext(x).shape == (2, 64)
    assert torch.equal(ext(x), digits.digit_features()(x))  # the trained net, not a stand-in


def test_objective_names():
    assert DEFAULT_OBJECTIVES == ("psnr", "latency", "shift")
    assert objective_directions() == ["maximize", "minimize", "minimize"]
    assert objective_directions(["fid", "macs", "psnr"]) == ["minimize", "minimize", "maximize"]
    assert set(OBJECTIVES) == {"fid", "latency", "macs", "psnr", "adherence", "shift", "realism"}
    assert objective_directions(["fid", "latency", "shift"]) == ["minimize", "minimize", "minimize"]
    with pytest.raises(ObjectiveError, match="unknown objective"):
        objective_directions(["fid", "speed"])
    with pytest.raises(ObjectiveError, match="distinct"):
        objective_directions(["fid", "fid"])


# ---------------------------------------------------------------- MACs
@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline()


def test_macs_ordering(pipe):
    n = 5
    full = count_macs(pipe, Schedule.full(n))
    uniform = count_macs(pipe, Schedule.deepcache(n, interval=2, branch=0))
    reuse = count_macs(pipe, Schedule(["full"] + ["reuse"] * (n - 1)))
    assert full > uniform > reuse > 0
    per_call = call_macs(pipe, Schedule.full(n))
    assert reuse == per_call[0] and full == n * per_call[0]
    # deeper branches recompute more
    assert count_macs(pipe, Schedule.deepcache(n, 2, branch=3)) > uniform
    # no guidance halves the batch
    assert count_macs(pipe, Schedule.full(n), guidance_scale=1.0) * 2 == full


def test_macs_pruning_reduces_count_and_leaves_pipe_alone(pipe):
    n = 3
    blocks = highest_resolution_blocks(pipe.unet)
    full = count_macs(pipe, Schedule.full(n))
    pruned = count_macs(pipe, Schedule.constant_ratio(n, blocks, 0.5))
    assert 0 < pruned < full
    stronger = count_macs(pipe, Schedule.constant_ratio(n, blocks, 0.7))
    assert stronger < pruned
    scaled = Schedule(["full"] * n, PruneConfig(ratios={b: 0.5 for b in blocks}, call_scale=[0.0, 1.0, 1.0]))
    per_call = call_macs(pipe, scaled)
    assert per_call[0] > per_call[1] == per_call[2]
    assert not hasattr(pipe.unet, "_diffusers_hook")  # counting ran on a meta replica


def test_macs_with_a_schedule_applied_to_the_pipe(pipe):
    from datosearch import dato

    handle = dato.apply(pipe, Schedule.deepcache(3, 2, 0))
    try:
        assert count_macs(pipe, Schedule.full(3)) == 3 * call_macs(pipe, Schedule.full(1))[0]
    finally:
        handle.remove()


def test_macs_match_a_real_run_of_the_accelerated_unet(pipe):
    from torch.utils.flop_counter import FlopCounterMode

    from datosearch import dato
    from datosearch.objectives.macs import _CUSTOM

    blocks = highest_resolution_blocks(pipe.unet)
    schedule = Schedule([*"full reuse".split(), 0, 1], PruneConfig(ratios={blocks[0]: 0.5}))
    unet = pipe.unet
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor(500), torch.randn(2, 77, 32)
    handle = dato.apply(unet, schedule)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
            for _ in range(schedule.n_calls):
                unet(x, t, ctx)
    finally:
        handle.remove()
    assert counter.get_total_flops() // 2 == count_macs(pipe, schedule, height=16, width=16, guidance_scale=7.5)
