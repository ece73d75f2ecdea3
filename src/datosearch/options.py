"""Bounds of the command-line's numeric options, checked before anything is loaded or written.

`check_options(vars(args))` raises `OptionError` (a ValueError: one sentence, exit 2) for the first
option out of range. None means "not given" and is never an error; 0 is a value like any other
(`--guidance 0` is legitimate, `--steps 0` is not).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import UserValueError

SEED_MAX = 2**32 - 1  # NumPy's (and so Optuna's samplers') seed range

# option (argparse dest) -> (lowest allowed, highest allowed or None, integer?)
BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "trials": (0, None, True),
    "images": (1, None, True),
    "steps": (1, None, True),
    "resolution": (1, None, True),
    "threads": (1, None, True),
    "batch_size": (1, None, True),
    "latency_images": (1, None, True),
    "latency_warmup": (0, None, True),
    "latency_repeats": (1, None, True),
    "population": (2, None, True),
    "sampler_seed": (0, SEED_MAX, True),
    "seed": (0, SEED_MAX, True),
    "max_nonfull_run": (0, None, True),
    "min_full": (0, None, True),
    "index": (0, None, True),
    "guidance": (0.0, None, False),
    "heldout": (0, None, True),
    "pictures": (0, None, True),
}
POSITIVE_FLOATS = ("stale_after",)  # strictly > 0
NONEMPTY_LISTS = ("objectives", "branches", "prompts")
FLAGS = {"sampler_seed": "--seed", "prompts": "--prompt"}


class OptionError(UserValueError):
    """A command-line option outside its allowed range."""


def flag(dest: str) -> str:
    return FLAGS.get(dest, "--" + dest.replace("_", "-"))


def _check_number(dest: str, value: Any) -> None:
    if dest in POSITIVE_FLOATS:
        if not (math.isfinite(value) and value > 0):
            raise OptionError(f"{flag(dest)} must be a number of seconds > 0, got {value}")
        return
    lo, hi, integer = BOUNDS[dest]
    if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        kind = "an integer" if integer else "a finite number"
        allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise OptionError(f"{flag(dest)} must be {kind} {allowed}, got {value}")


def check_options(opts: dict[str, Any]) -> None:
    """Raise `OptionError` for the first given option that is out of range (None = not given)."""
    for dest, value in opts.items():
        if value is None:
            continue
        if dest in BOUNDS or dest in POSITIVE_FLOATS:
            _check_number(dest, value)
        elif dest in NONEMPTY_LISTS and not value:
            raise OptionError(f"{flag(dest)} needs at least one value")
        elif dest == "branches" and any(b < 0 for b in value):
            raise OptionError(f"--branches must be branch ids >= 0, got {','.join(map(str, value))}")
