"""StudyConfig: JSON round trip, field-by-field comparison, the refusal message."""

import pytest

from datosearch.studies.config import StudyConfig, StudyConfigError


def make(**kw) -> StudyConfig:
    fields = dict(model="tiny", prompts=["a", "b"], seeds=[0, 1], height=32, width=32, steps=3, scheduler="PNDMScheduler",
                  guidance=7.5, objectives=["fid", "latency"], extractor="conv-random", device="cpu",
                  encoding={"n_calls": 4, "kind": "calls", "branches": [0]})
    return StudyConfig(**{**fields, **kw})


def test_json_round_trip():
    config = make()
    assert StudyConfig.from_json(config.to_json()) == config


def test_studies_stored_before_the_converged_spacing_keep_the_scheduler_config_spacing():
    stored = make().to_json()
    assert stored.pop("converged_spacing") == "linspace"  # new studies
    assert StudyConfig.from_json(stored).converged_spacing is None  # older ones keep their reference


def test_diff_names_every_differing_field():
    a = make()
    b = make(steps=4, seeds=[0, 2], device="NVIDIA H100", encoding={"n_calls": 5, "kind": "calls", "branches": [0]})
    assert a.diff(b) == ["seeds", "steps", "device", "encoding.n_calls"]
    assert a.diff(make()) == []


def test_refusal_message_names_fields():
    with pytest.raises(StudyConfigError, match=r"'demo'.*steps \(stored 3, given 4\).*guidance"):
        make(steps=4, guidance=5.0).require_same(make(), "demo")


def test_unknown_stored_fields_and_bad_prompts():
    with pytest.raises(StudyConfigError, match="unknown fields"):
        StudyConfig.from_json({**make().to_json(), "colour": "red"})
    with pytest.raises(ValueError, match="one seed per prompt"):
        make(seeds=[0])
