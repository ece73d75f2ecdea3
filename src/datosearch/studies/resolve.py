"""Turn command-line options (None = not given) into a complete `StudyConfig` and the loaded pipeline.

For a new study the defaults fill the gaps; for a stored one the stored values do, so that only
options the user actually gave can make a resume differ.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UserValueError
from ..options import DEFAULTS
from ..objectives import device_name
from ..search.evaluator import accepts_size
from ..space.trajectory import set_scheduler
from .build import default_encoding, default_guidance, trajectories, default_prompts, default_resolution, load_pipeline
from .config import StudyConfig

# The per-call genome needs a bound on runs of non-full calls; the structured one places full calls itself.
MAX_NONFULL_RUN = {"calls": 5, "intervals": 5}
ENCODING_OPTIONS = {"encoding_kind": "kind", "branches": "branches", "call_scale": "call_scale",
                    "max_nonfull_run": "max_nonfull_run", "min_full": "min_full"}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _given(value: Any, default: Any) -> Any:
    """`value` unless it is None (not given); 0 and other falsy values are kept."""
    return default if value is None else value


def resolve(opts: dict[str, Any], base: StudyConfig | None = None, device: str | None = None,
            pipe: Any = None) -> tuple[StudyConfig, Any]:
    """The configuration these options describe (on top of `base`, else defaults), and the pipeline
    (loaded here unless `pipe`, already loaded for the same model, is given)."""
    def pick(name: str, field: str | None = None) -> Any:
        if opts.get(name) is not None:
            return opts[name]
        if base is not None and field is not None:
            return getattr(base, field)
        return DEFAULTS.get(name)

    device = device or opts.get("device") or default_device()
    model = pick("model", "model")
    if pipe is None:
        pipe, model = load_pipeline(model, device, pick("dtype", "dtype"))
    scheduler = set_scheduler(pipe, pick("scheduler", "scheduler"))
    if opts.get("prompts") or opts.get("images") is not None or base is None:
        n = opts["images"] if opts.get("images") is not None else (
            len(opts["prompts"]) if opts.get("prompts") else DEFAULTS["images"])
        prompts, seeds = default_prompts(n)
        if opts.get("prompts"):
            prompts = [opts["prompts"][i % len(opts["prompts"])] for i in range(n)]
    else:
        prompts, seeds = base.prompts, base.seeds
    steps = pick("steps", "steps")
    resolution = opts.get("resolution")
    if resolution is not None and not accepts_size(pipe) and resolution != default_resolution(pipe):
        size = default_resolution(pipe)
        raise UserValueError(f"model {model!r} generates {size}x{size} images only; --resolution {resolution} cannot be "
                         f"used (omit it or pass {size})")
    height = resolution if resolution is not None else (base.height if base else default_resolution(pipe))
    width = resolution if resolution is not None else (base.width if base else default_resolution(pipe))
    from ..objectives import DEFAULT_OBJECTIVES
    from ..space.trajectory import CONVERGED_SPACING
    from .realism import require_real_images

    objectives = _given(pick("objectives", "objectives"), list(DEFAULT_OBJECTIVES))
    real_stats = pick("real_stats", "real_stats")
    if "realism" in objectives:
        require_real_images(model, real_stats)
    extractor = _given(pick("extractor", "extractor"), "embedded-digits" if model == "embedded" else "conv-random")
    guidance = _given(pick("guidance", "guidance"), default_guidance(pipe))
    enc_overrides = {field: opts[name] for name, field in ENCODING_OPTIONS.items() if opts.get(name) is not None}
    if base is not None:
        encoding = {**base.encoding, **enc_overrides}
        if opts.get("search_steps") and not encoding.get("trajectories"):  # differs from the stored study
            encoding["trajectories"] = trajectories(pipe, steps)
    else:
        defaults = {field: DEFAULTS[name] for name, field in ENCODING_OPTIONS.items() if name in DEFAULTS}
        fields = {**defaults, **enc_overrides}
        fields.setdefault("max_nonfull_run", MAX_NONFULL_RUN.get(fields["kind"]))
        search_steps = opts.get("search_steps")
        if search_steps is None:  # on by default where it can be (the structured encoding)
            search_steps = fields["kind"] == "structured"
        encoding = default_encoding(pipe, steps, search_steps, **fields).to_dict()
    config = StudyConfig(
        model=model, prompts=prompts, seeds=seeds, height=int(height), width=int(width), steps=int(steps),
        scheduler=scheduler, guidance=float(guidance), objectives=list(objectives),
        extractor=extractor, device=device_name(device), dtype=pick("dtype", "dtype"),
        batch_size=int(pick("batch_size", "batch_size")), latency_images=int(pick("latency_images", "latency_images")),
        latency_warmup=int(pick("latency_warmup", "latency_warmup")),
        latency_repeats=int(pick("latency_repeats", "latency_repeats")), encoding=encoding,
        sampler=pick("sampler", "sampler"), population=int(pick("population", "population")),
        sampler_seed=int(pick("sampler_seed", "sampler_seed")), reference=pick("reference", "reference"),
        latency_mode=pick("latency_mode", "latency_mode"),
        fid_paired=base.fid_paired if base is not None else True,
        converged_spacing=base.converged_spacing if base is not None else CONVERGED_SPACING,
        real_stats=None if real_stats is None else str(real_stats),
        realism_form=base.realism_form if base is not None else None)
    return config, pipe
