"""The base trajectory a schedule runs on, and the one module that knows diffusers' schedulers.

A `Trajectory` is what a generation's denoising loop steps through: the scheduler class, the config
overrides it needs on top of the pipeline's own scheduler config (`algorithm_type`, `solver_order`,
`timestep_spacing`, `use_karras_sigmas`, ...), the step count, and optionally explicit `timesteps` or
`sigmas` (passed to `set_timesteps` through the pipeline call, as diffusers' pipelines take them).
`Trajectory.build(config)` makes the scheduler, `call_kwargs()` what to pass to the pipeline call,
`calls(config)` how many U-Net calls it makes (PNDM/PLMS: one more than its steps).

Everything else (the search, the evaluator, `apply`, the held-out check, the benches) names
schedulers through this module: short names (`SHORT_NAMES`), named configurations (`NAMED`), the
swap (`swapped`) and the converged reference (`converged`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from ..errors import UserValueError

SHORT_NAMES = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
               "dpm": "DPMSolverMultistepScheduler", "dpmpp2m": "DPMSolverMultistepScheduler",
               "unipc": "UniPCMultistepScheduler"}
# What users call them (labels of anchors and log lines).
LABELS = {"DPMSolverMultistepScheduler": "DPM-Solver++", "UniPCMultistepScheduler": "UniPC",
          "PNDMScheduler": "PLMS", "DDIMScheduler": "DDIM", "EulerDiscreteScheduler": "Euler"}
# Named configurations: name -> (diffusers class, overrides on top of the pipeline's config).
DETERMINISTIC: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm-plms": ("PNDMScheduler", {"skip_prk_steps": True}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp-2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    # lower_order_final: what diffusers switches its default False to (with a warning) for final sigma 0
    "dpm-singlestep": ("DPMSolverSinglestepScheduler", {"lower_order_final": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
# DPM-Solver++ SDE as diffusers' multistep "sde-dpmsolver++" (DPMSolverSDEScheduler needs torchsde)
STOCHASTIC: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
}
NAMED = {**DETERMINISTIC, **STOCHASTIC}
# The converged reference every sampler is scored against (DPM-Solver++ 2M at 100 steps), with
# "linspace" timesteps: under a config's "leading" spacing 100 and 200 steps start at t=990 and
# t=995 and agree to only ~43 dB on the embedded model; under "linspace" both start at t=999 (61 dB).
CONVERGED_SCHEDULER, CONVERGED_STEPS, CONVERGED_SPACING = "DPMSolverMultistepScheduler", 100, "linspace"


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class for a short name (`SHORT_NAMES`) or a class name."""
    import diffusers

    cls_name = SHORT_NAMES.get(name.lower(), name) if isinstance(name, str) else name
    cls = getattr(diffusers, str(cls_name), None)
    if cls is None or not hasattr(cls, "from_config") or not hasattr(cls, "set_timesteps"):
        raise UserValueError(f"unknown scheduler {name!r}; use one of {', '.join(SHORT_NAMES)} or a diffusers "
                             f"scheduler class")
    return cls


def class_name(name: str) -> str:
    """The diffusers class name of a scheduler given by short name or class name."""
    return scheduler_class(name).__name__


def _decreasing(values: Any, kind: type, what: str) -> tuple | None:
    if values is None:
        return None
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        raise UserValueError(f"{what}: {values!r} is not a list of numbers") from None
    if not out or any(a <= b for a, b in zip(out, out[1:])) or out[-1] < 0:
        raise UserValueError(f"{what}: {list(out)} is not a non-empty, strictly decreasing list >= 0")
    return out


@dataclass(frozen=True)
class Trajectory:
    """Scheduler class, config overrides, step count, optional explicit timesteps or sigmas."""

    scheduler: str
    steps: int
    config: Mapping[str, Any] = field(default_factory=dict)
    timesteps: tuple[int, ...] | None = None
    sigmas: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheduler", class_name(self.scheduler))
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise UserValueError(f"steps: {self.steps!r} is not an integer >= 1")
        if not isinstance(self.config, Mapping) or not all(isinstance(k, str) for k in self.config):
            raise UserValueError(f"config: {self.config!r} is not a mapping of option names to values")
        object.__setattr__(self, "config", dict(sorted(self.config.items())))
        object.__setattr__(self, "timesteps", _decreasing(self.timesteps, int, "timesteps"))
        object.__setattr__(self, "sigmas", _decreasing(self.sigmas, float, "sigmas"))
        if self.timesteps is not None and self.sigmas is not None:
            raise UserValueError("a trajectory takes explicit timesteps or sigmas, not both")
        explicit = self.timesteps or self.sigmas
        if explicit is not None and len(explicit) != self.steps:
            raise UserValueError(f"{len(explicit)} explicit values for {self.steps} steps")

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # ------------------------------------------------------------------ use
    def build(self, base_config: Any) -> Any:
        """The scheduler: `base_config` (the pipeline's scheduler config) plus the overrides."""
        return scheduler_class(self.scheduler).from_config(base_config, **self.config)

    def call_kwargs(self) -> dict[str, Any]:
        """What to pass to the pipeline call: `num_inference_steps`, and `timesteps` / `sigmas` if explicit."""
        kwargs: dict[str, Any] = {"num_inference_steps": self.steps}
        if self.timesteps is not None:
            kwargs["timesteps"] = list(self.timesteps)
        if self.sigmas is not None:
            kwargs["sigmas"] = list(self.sigmas)
        return kwargs

    def set_timesteps(self, scheduler: Any, device: Any = None) -> Any:
        """`scheduler.set_timesteps` for this trajectory (explicit values when it has them); returns the scheduler."""
        explicit = {k: v for k, v in self.call_kwargs().items() if k != "num_inference_steps"}
        if explicit:
            scheduler.set_timesteps(device=device, **explicit)
        else:
            scheduler.set_timesteps(self.steps, device=device)
        return scheduler

    def calls(self, base_config: Any) -> int:
        """U-Net calls of one generation (PNDM/PLMS: steps + 1; Heun: 2 * steps - 1)."""
        return len(self.set_timesteps(self.build(base_config)).timesteps)

    def label(self) -> str:
        """'UniPC 8 steps', 'DPM-Solver++ 7 steps, explicit timesteps', with any config options."""
        name = LABELS.get(self.scheduler, self.scheduler)
        extra = ", explicit timesteps" if self.timesteps else ", explicit sigmas" if self.sigmas else ""
        options = ", ".join(f"{k}={v}" for k, v in self.config.items())
        return f"{name} {self.steps} steps{extra}" + (f" ({options})" if options else "")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scheduler": self.scheduler, "steps": self.steps}
        if self.config:
            out["config"] = dict(self.config)
        if self.timesteps is not None:
            out["timesteps"] = list(self.timesteps)
        if self.sigmas is not None:
            out["sigmas"] = list(self.sigmas)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Trajectory":
        return cls(data["scheduler"], data["steps"], data.get("config") or {}, data.get("timesteps"),
                   data.get("sigmas"))


def named(name: str, steps: int, **overrides: Any) -> Trajectory:
    """A named configuration of `NAMED` (e.g. "dpmpp-2m") at `steps` steps, plus `overrides`."""
    if name not in NAMED:
        raise UserValueError(f"unknown scheduler {name!r}; use one of {', '.join(NAMED)}")
    cls_name, options = NAMED[name]
    return Trajectory(cls_name, steps, {**options, **overrides})


def converged(spacing: str | None = CONVERGED_SPACING) -> Trajectory:
    """The converged reference: DPM-Solver++ 2M at 100 steps (`spacing` None: the config's own spacing,
    as studies stored before the spacing was fixed)."""
    return named("dpmpp-2m", CONVERGED_STEPS, **({} if spacing is None else {"timestep_spacing": spacing}))


@contextlib.contextmanager
def swapped(pipe: Any, trajectory: Trajectory | None) -> Iterator[Any]:
    """Run with `trajectory`'s scheduler (built from the pipeline's own config) swapped in; None: the
    pipeline's own. The original scheduler object is restored afterwards."""
    original = pipe.scheduler
    try:
        if trajectory is not None:
            pipe.scheduler = trajectory.build(original.config)
        yield pipe.scheduler
    finally:
        pipe.scheduler = original


def own(pipe: Any, steps: int) -> Trajectory:
    """The pipeline's current scheduler at `steps` steps (no overrides)."""
    return Trajectory(type(pipe.scheduler).__name__, int(steps))


def set_scheduler(pipe: Any, scheduler: str | None) -> str:
    """Make `scheduler` (a short name or class name; None: keep) the pipeline's scheduler for good, built
    from its config (kept when it already is that class); returns the class name."""
    if scheduler:
        cls = scheduler_class(scheduler)
        if type(pipe.scheduler) is not cls:
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
    return type(pipe.scheduler).__name__


def make_scheduler(name: str, config: Any) -> Any:
    """Scheduler `name` (a key of `NAMED`, or "reference": the converged one) built from `config`."""
    table = {**NAMED, "reference": (CONVERGED_SCHEDULER, converged().config)}
    if name not in table:
        raise UserValueError(f"unknown scheduler {name!r}; use one of {', '.join(table)}")
    cls_name, options = table[name]
    return scheduler_class(cls_name).from_config(config, **options)


# Config switches that move few-step quality by >= 0.3 dB either way, depending on the plan, on the embedded
# model's calibration images (bench/results/config-switches.md): the structured encoding's option genes.
# The first value is diffusers' default. DPM-Solver++'s final sigma: sigma_min gains ~1 dB on forecasting
# plans of 8-12 steps and loses 1-4 dB elsewhere; heun: +0.4 dB at 5 full steps, -0.85 at 10. UniPC: no
# corrector after the first step +0.6 / +0.4 dB at 5 / 7 full steps; sigma_min -0.4 to +0.2 dB.
SWITCHES: dict[str, dict[str, tuple[Any, ...]]] = {
    "DPMSolverMultistepScheduler": {"final_sigmas_type": ("zero", "sigma_min"), "solver_type": ("midpoint", "heun")},
    "UniPCMultistepScheduler": {"final_sigmas_type": ("zero", "sigma_min"), "disable_corrector": ([], [0])},
}


def switch_gene(scheduler: str, option: str) -> str:
    """The option gene of `scheduler`'s config switch `option` ("dpm.final_sigmas_type")."""
    short = min((k for k, v in SHORT_NAMES.items() if v == scheduler), key=len, default=scheduler)
    return f"{short}.{option}"


def switch_choices(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A switch's config values as an Optuna categorical holds them (lists as their JSON text, "[0]")."""
    return tuple(v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v) for v in values)


def switched(scheduler: str, choices: Mapping[str, Any]) -> dict[str, Any]:
    """The config overrides of `scheduler`'s switches given as {option: choice} (`switch_choices`'s form):
    only those that differ from diffusers' default (an option not given keeps it)."""
    out = {}
    for option, values in SWITCHES.get(scheduler, {}).items():
        i = switch_choices(values).index(choices[option]) if option in choices else 0
        if i:
            out[option] = values[i]
    return out


WARP_START = (0.7, 1.0)  # fraction of the training timesteps where a warped trajectory starts
WARP_POWER = (1.0, 3.0)  # > 1: the steps bend toward low noise


def warp_timesteps(steps: int, start: float, power: float, train_steps: int = 1000) -> tuple[int, ...]:
    """`steps` strictly decreasing timesteps t_i = 1 + (t0 - 1)(1 - i/steps)^power, t0 = start·(train_steps - 1)
    (DESIGN §11: dense at low noise for power > 1), rounded and kept distinct and inside 1..train_steps-1.
    On the embedded model (start 0.85, power 1.7) at 5 steps: 850 582 357 180 56."""
    if steps < 1 or steps >= train_steps:
        raise UserValueError(f"a warped trajectory needs 1..{train_steps - 1} steps, got {steps}")
    t0 = max(float(steps), min(train_steps - 1.0, start * (train_steps - 1)))
    raw = [1 + (t0 - 1) * (1 - i / steps) ** power for i in range(steps)]
    out = [0] * steps
    for i in reversed(range(steps)):  # from the low-noise end: at least one apart
        out[i] = max(round(raw[i]), out[i + 1] + 1 if i + 1 < steps else 1)
    top = train_steps - 1
    for i in range(steps):  # from the high-noise end: inside the training range
        out[i] = min(out[i], top - i)
    return tuple(out)


def timesteps_to_sigmas(timesteps: Any, base_config: Any) -> tuple[float, ...]:
    """The sigmas ((1 - ᾱ_t) / ᾱ_t)^½ of `timesteps` under the scheduler config's noise schedule (for
    schedulers that take `sigmas=` but not `timesteps=`, such as UniPC)."""
    import diffusers

    alphas = diffusers.DDPMScheduler.from_config(base_config).alphas_cumprod
    return tuple(float(((1 - alphas[t]) / alphas[t]) ** 0.5) for t in timesteps)


def takes(scheduler: str, name: str) -> bool:
    """Whether `scheduler`'s `set_timesteps` takes `name` ("timesteps" or "sigmas")."""
    import inspect

    return name in inspect.signature(scheduler_class(scheduler).set_timesteps).parameters
