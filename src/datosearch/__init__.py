"""datosearch: search DaTo acceleration schedules for diffusers U-Nets, and apply them.

`datosearch.apply(pipe, "schedule.json")` accelerates a pipeline; `handle.remove()` undoes it.
"""

from . import _quiet

_quiet.install()  # before diffusers/transformers log their known-harmless start-up messages

from .dato import DaToHandle, apply, remove  # noqa: E402
from .space import Schedule, ScheduleError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["DaToHandle", "Schedule", "ScheduleError", "apply", "remove", "__version__"]
