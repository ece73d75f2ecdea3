"""The schedule format and its search-space encodings."""

from .io import json_schema, load, loads, save
from .layout import highest_resolution_blocks, transformer_blocks
from .schedule import FULL, MAX_RATIO, REUSE, PruneConfig, Schedule, ScheduleError

__all__ = ["FULL", "MAX_RATIO", "REUSE", "PruneConfig", "Schedule", "ScheduleError", "highest_resolution_blocks",
           "json_schema", "load", "loads", "save", "transformer_blocks"]
