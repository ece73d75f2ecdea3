"""`StudyConfig`: everything that defines a study's objective values, stored as study user attrs.

Two runs may share a study only if every field is equal; `diff` names the fields that are not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import UserValueError
from ..search.attrs import BUDGET_ATTR, CONFIG_ATTR  # noqa: F401 - re-exported (studies.config.BUDGET_ATTR)
from ..space.trajectory import CONVERGED_SPACING, Trajectory

REFERENCES = ("full", "converged")
REALISM_FORMS = ("frechet", "mean")


class StudyConfigError(UserValueError):
    """The requested configuration differs from the one stored in the study."""


@dataclass
class StudyConfig:
    """Model, calibration batch, objectives, measurement and search settings of one study."""

    model: str
    prompts: list[str]
    seeds: list[int]
    height: int
    width: int
    steps: int
    scheduler: str
    guidance: float
    objectives: list[str]
    extractor: str
    device: str
    dtype: str = "float32"
    batch_size: int = 8
    latency_images: int = 1
    latency_warmup: int = 1
    latency_repeats: int = 3
    encoding: dict[str, Any] = field(default_factory=dict)
    sampler: str = "nsga2"
    population: int = 8
    sampler_seed: int = 0
    reference: str = "full"  # what quality is measured against: "full" compute or the "converged" trajectory
    fid_paired: bool = False  # the FID-proxy adds the paired feature distance (see objectives.fid)
    latency_mode: str = "measured"  # "model": predicted by the study's calibrated cost model (studies.cost)
    # timestep spacing of the converged reference (None: the scheduler config's own, as studies stored before it)
    converged_spacing: str | None = CONVERGED_SPACING
    real_stats: str | None = None  # .npz of real-image feature statistics for `realism` (None: the embedded digits)
    # how `realism` estimates the distance from real images: "frechet" (mean and covariance), "mean" (the mean term:
    # realism studies created before "frechet"); None without `realism`
    realism_form: str | None = None

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.seeds):
            raise UserValueError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds: give one seed per prompt")
        if not self.prompts:
            raise UserValueError("the calibration batch needs at least one prompt")
        self.prompts, self.seeds, self.objectives = list(self.prompts), [int(s) for s in self.seeds], list(self.objectives)
        self.guidance = float(self.guidance)
        if self.latency_mode not in ("model", "measured"):
            raise UserValueError(f"latency must be 'model' or 'measured', got {self.latency_mode!r}")
        if self.reference not in REFERENCES:
            raise UserValueError(f"reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if "realism" not in self.objectives:
            self.realism_form = None
        elif self.realism_form is None:
            self.realism_form = "frechet"
        elif self.realism_form not in REALISM_FORMS:
            raise UserValueError(f"realism_form must be one of {', '.join(REALISM_FORMS)}, got {self.realism_form!r}")

    @property
    def trajectory(self) -> Trajectory:
        """The study's own base trajectory: its scheduler at its step count."""
        return Trajectory(self.scheduler, self.steps)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (round-trips through `json`)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudyConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StudyConfigError(f"the stored study configuration has unknown fields {unknown}; "
                                   "it was written by another datosearch version")
        old = {"converged_spacing": None,  # stored before the field: the config's own spacing
               "realism_form": "mean" if "realism" in data.get("objectives", ()) else None}  # realism before "frechet"
        return cls(**{**old, **data})

    def diff(self, other: "StudyConfig") -> list[str]:
        """Names of the fields whose values differ (encoding sub-fields as `encoding.NAME`)."""
        a, b = self.to_json(), other.to_json()
        out = [k for k in a if k != "encoding" and a[k] != b[k]]
        enc_a, enc_b = _encoding(a["encoding"]), _encoding(b["encoding"])
        out += [f"encoding.{k}" for k in sorted(set(enc_a) | set(enc_b)) if enc_a.get(k) != enc_b.get(k)]
        return out

    def require_same(self, stored: "StudyConfig", study_name: str) -> None:
        """Raise `StudyConfigError` naming the differing fields, if any."""
        differing = stored.diff(self)
        if differing:
            shown = ", ".join(f"{k} (stored {_short(stored, k)!s}, given {_short(self, k)!s})" for k in differing[:6])
            more = f" and {len(differing) - 6} more" if len(differing) > 6 else ""
            raise StudyConfigError(f"study {study_name!r} was created with a different configuration: "
                                   f"{shown}{more}; use another --study name or the stored settings")


def _encoding(data: dict[str, Any]) -> dict[str, Any]:
    """An encoding dict with today's defaults for fields an older study did not store."""
    from ..space.encoding import EncodingConfig

    try:
        return EncodingConfig.normalised(data)
    except (TypeError, ValueError):
        return data


def _short(config: StudyConfig, key: str) -> str:
    data = config.to_json()
    value = data["encoding"].get(key.split(".", 1)[1]) if key.startswith("encoding.") else data[key]
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
