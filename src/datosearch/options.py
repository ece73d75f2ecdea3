"""Bounds of the command-line's numeric options, checked before anything is loaded or written.

`check_options(vars(args))` raises `OptionError` (a ValueError: one sentence, exit 2) for the first
option out of range. None means "not given" and is never an error; 0 is a value like any other
(`--guidance 0` is legitimate, `--steps 0` is not). Every option has an upper bound that a real model
on a real machine can meet, with the reason; the message and `--help` (`help_text`) both state it, so
a value no run could finish (`--steps 1000000000`, `--images 10**12`) is refused at once instead of
filling the memory.

`export_dir` and `report_path` are where `export`, `report` and `run` write by default; the CLI tries
every path a command will write before any work (`cli.check_input`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserValueError

SEED_MAX = 2**32 - 1  # NumPy's (and so Optuna's samplers') seed range
MAX_STEPS = 1000  # the training timesteps of Stable Diffusion-style models
MAX_CALLS = MAX_STEPS + 1  # PNDM/PLMS make one U-Net call more than their steps
MAX_IMAGES = 20_000
MAX_TRIALS = 100_000
MAX_BATCH = 256
MAX_BUDGET_MINUTES = 30 * 24 * 60
HELDOUT_SEED0 = 777000  # studies use seeds 0..N-1; held-out seeds start far above any study size
# a new study's settings where the command line gives none (`studies.resolve`); `--help` states them from here
DEFAULTS: dict[str, Any] = dict(model="embedded", images=24, steps=50, dtype="float32", batch_size=24,
                                latency_images=1, latency_warmup=1, latency_repeats=3, sampler="nsga2",
                                population=8, sampler_seed=0, encoding_kind="structured", min_full=1,
                                reference="converged", latency_mode="model")


@dataclass(frozen=True)
class Bound:
    """Allowed values of one option: `lo`..`hi` (integers, unless `integer` is False), a multiple of `step`."""

    lo: float
    hi: float
    why: str  # why nothing above `hi` makes sense
    integer: bool = True
    step: int = 1

    def allowed(self) -> str:
        kind = f"a multiple of {self.step}" if self.step > 1 else "an integer" if self.integer else "a finite number"
        return f"{kind} in {_number(self.lo)}..{_number(self.hi)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


IMAGES_WHY = (f"every candidate generates them all and they are held in memory as float32: {MAX_IMAGES:,} at "
              "512x512 px take 63 GB")
BATCH_WHY = f"more than {MAX_BATCH} images in one pipeline call exceed any accelerator's memory at Stable Diffusion sizes"
CALLS_WHY = f"a trajectory has at most {MAX_CALLS} U-Net calls ({MAX_STEPS} steps; PNDM makes one more)"
HELDOUT_WHY = (f"every exported schedule and anchor generates them all and they are held in memory as float32: "
               f"{MAX_IMAGES:,} at 512x512 px take 63 GB")
TIMING_WHY = "each is one more full generation per candidate; the median settles long before 100"

# option (argparse dest) -> its bounds
BOUNDS: dict[str, Bound] = {
    "trials": Bound(0, MAX_TRIALS, "each trial generates the whole calibration batch; no search needs more"),
    "images": Bound(1, MAX_IMAGES, IMAGES_WHY),
    "steps": Bound(1, MAX_STEPS, f"diffusion models are trained on {MAX_STEPS} timesteps and no scheduler "
                                 "takes more steps than that"),
    "resolution": Bound(8, 4096, "diffusers' pipelines need a multiple of the VAE's factor 8, and 4096 px is 16x "
                                 "the pixels of SDXL's 1024, beyond any U-Net's memory", step=8),
    "threads": Bound(1, 1024, "more torch threads than any machine has cores only slows it down"),
    "batch_size": Bound(1, MAX_BATCH, BATCH_WHY),
    "latency_images": Bound(1, MAX_BATCH, BATCH_WHY),
    "latency_warmup": Bound(0, 100, TIMING_WHY),
    "latency_repeats": Bound(1, 100, TIMING_WHY),
    "population": Bound(2, MAX_TRIALS // 10, f"a larger generation would not evolve 10 times in {MAX_TRIALS:,} "
                                             "trials, the most a study may have"),
    "sampler_seed": Bound(0, SEED_MAX, "NumPy's seed range, which Optuna's samplers use"),
    "seed": Bound(0, SEED_MAX, "NumPy's seed range"),
    "max_nonfull_run": Bound(0, MAX_CALLS, CALLS_WHY),
    "min_full": Bound(0, MAX_CALLS, CALLS_WHY),
    "index": Bound(0, MAX_TRIALS, f"an export lists at most one schedule per trial, and a study has at most "
                                  f"{MAX_TRIALS:,}"),
    "guidance": Bound(0.0, 100.0, "guidance scales in use stay below 30; far above, images saturate", integer=False),
    "heldout": Bound(0, MAX_IMAGES, HELDOUT_WHY),
    "timing_rounds": Bound(1, 100, TIMING_WHY),
    "heldout_seed": Bound(MAX_IMAGES, SEED_MAX - MAX_IMAGES, f"studies calibrate on seeds 0..N-1 with N at most "
                          f"{MAX_IMAGES:,}, and held-out images must use seeds no study saw; above, NumPy's seed range "
                          f"ends"),
    "pictures": Bound(0, 100, "each picture is embedded in the report page; more than 100 per schedule make it "
                              "too large to open"),
    "stale_after": Bound(0, 30 * 86_400, "a trial running for 30 days is stale whatever its worker does",
                         integer=False),
    "budget": Bound(0, MAX_BUDGET_MINUTES, "a time limit of more than 30 days limits nothing: leave --budget out "
                                           "and stop the search with Ctrl-C", integer=False),
}
LOW_WHY = {"heldout_seed"}  # whose reason also explains the lower bound
EXCLUSIVE_LOW = {"stale_after": "seconds", "budget": "minutes"}  # strictly above `lo`: their unit
NONEMPTY_LISTS = ("objectives", "branches", "prompts")
FLAGS = {"sampler_seed": "--seed", "prompts": "--prompt"}


class OptionError(UserValueError):
    """A command-line option outside its allowed range."""


def flag(dest: str) -> str:
    return FLAGS.get(dest, "--" + dest.replace("_", "-"))


def help_text(dest: str) -> str:
    """The option's range and why its limit is where it is, for `--help`."""
    bound = BOUNDS[dest]
    allowed = f"> {_number(bound.lo)} and at most {_number(bound.hi)}" if dest in EXCLUSIVE_LOW else bound.allowed()
    return f"{allowed}: {bound.why}"


def _check_number(dest: str, value: Any) -> None:
    bound = BOUNDS[dest]
    low_ok = value > bound.lo if dest in EXCLUSIVE_LOW else value >= bound.lo
    off_step = bound.step > 1 and math.isfinite(value) and value % bound.step != 0
    if not (math.isfinite(value) and low_ok and value <= bound.hi) or off_step:
        why = f" ({bound.why})" if value > bound.hi or off_step or dest in LOW_WHY else ""
        if dest in EXCLUSIVE_LOW:
            raise OptionError(f"{flag(dest)} must be a number of {EXCLUSIVE_LOW[dest]} > {_number(bound.lo)} "
                              f"and at most {_number(bound.hi)}{why}, got {_number(value)}")
        raise OptionError(f"{flag(dest)} must be {bound.allowed()}{why}, got {value}")


def check_options(opts: dict[str, Any]) -> None:
    """Raise `OptionError` for the first given option that is out of range (None = not given)."""
    for dest, value in opts.items():
        if value is None:
            continue
        if dest in BOUNDS:
            _check_number(dest, value)
        elif dest in NONEMPTY_LISTS and not value:
            raise OptionError(f"{flag(dest)} needs at least one value")
        elif dest == "branches" and any(b < 0 for b in value):
            raise OptionError(f"--branches must be branch ids >= 0, got {','.join(map(str, value))}")


def annotate_bounds(parser: argparse.ArgumentParser) -> None:
    """Append each bounded option's range and its reason to its `--help` text."""
    for action in parser._actions:
        if action.dest in BOUNDS:
            action.help = (f"{action.help}; " if action.help else "") + help_text(action.dest).replace("%", "%%")


def export_dir(args: argparse.Namespace) -> Path:
    """Where `export` (or `run`'s outputs) writes: `--out`, else exports/STUDY."""
    return Path(getattr(args, "out", None) or Path("exports") / args.study)


def report_path(args: argparse.Namespace) -> Path:
    """Where `report` (or `run`'s outputs) writes: `--out`, else reports/STUDY.html."""
    return Path(getattr(args, "out", None) or Path("reports") / f"{args.study}.html")
