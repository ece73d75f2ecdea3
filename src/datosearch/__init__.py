"""datosearch: search DaTo acceleration schedules for diffusers U-Nets, and apply them.

`datosearch.apply(pipe, "schedule.json")` accelerates a pipeline; `handle.remove()` undoes it.
"""

from .dato import DaToHandle, apply, remove
from .space import Schedule, ScheduleError

__version__ = "0.1.0"
__all__ = ["DaToHandle", "Schedule", "ScheduleError", "apply", "remove", "__version__"]
