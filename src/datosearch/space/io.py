"""Schedule JSON: load (schema-checked, one clear error), save (atomic), and the shipped JSON Schema."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..atomic import write_atomic
from .schedule import SCHEMA_IDS, Schedule, ScheduleError


@lru_cache(maxsize=1)
def json_schema() -> dict[str, Any]:
    """The JSON Schema of `datosearch/schedule@1`, `@2` and `@3` (one file), shipped in the package."""
    return json.loads(resources.files(__package__).joinpath("schedule.schema.json").read_text())


def _field(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def from_json_obj(data: Any, source: str = "schedule") -> Schedule:
    """Validate a decoded JSON object and build the Schedule; raises `ScheduleError` naming the field."""
    if not isinstance(data, dict):
        raise ScheduleError(f"{source}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema")
    if version not in SCHEMA_IDS:
        raise ScheduleError(f"{source}: unknown schema {version!r}; this datosearch reads "
                            f"{', '.join(map(repr, SCHEMA_IDS))}")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))
    if error is not None:
        message = error.message
        if error.validator == "oneOf" and "description" in error.schema:
            message = f"{error.instance!r} is not {error.schema['description']}"
        raise ScheduleError(f"{source}: field '{_field(error.absolute_path)}': {message}")
    try:
        return Schedule.from_dict(data)
    except ScheduleError as exc:
        raise ScheduleError(f"{source}: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _decode(text: str, source: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:
        raise ScheduleError(f"{source}: not valid JSON ({exc})") from None


def loads(text: str, source: str = "schedule") -> Schedule:
    return from_json_obj(_decode(text, source), source)


EXPORT_FORMAT = "datosearch/export@1"  # `datosearch export`'s index.json (written by `studies.export`)


def _export_entry(path: Path, data: dict[str, Any], index: int | None) -> Path:
    """The schedule file of entry `index` of an export index (relative to the index); one sentence otherwise."""
    entries = data.get("entries")
    if not isinstance(entries, list) or not entries:
        raise ScheduleError(f"{path}: the export index lists no schedules")
    if index is None and len(entries) > 1:
        raise ScheduleError(f"{path}: the export holds {len(entries)} schedules; pick one with "
                            f"index=K (--index K) in 0..{len(entries) - 1}")
    k = 0 if index is None else index
    if not 0 <= k < len(entries):
        raise ScheduleError(f"{path}: the export holds {len(entries)} schedules; index {k} is not in "
                            f"0..{len(entries) - 1}")
    entry = entries[k]
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ScheduleError(f"{path}: field 'entries[{k}].file' is missing or not a string")
    return path.parent / entry["file"]


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScheduleError(f"{path}: cannot read schedule file ({exc.strerror})") from None
    return _decode(text, str(path))


def load(path: str | os.PathLike, index: int | None = None) -> Schedule:
    """Load a schedule file, or entry `index` of an export's `index.json` (needed when it lists several)."""
    path = Path(path)
    data = _read(path)
    if isinstance(data, dict) and data.get("format") == EXPORT_FORMAT:
        path = _export_entry(path, data, index)
        data = _read(path)  # the entry's file must be a schedule
    elif index not in (None, 0):
        raise ScheduleError(f"{path}: holds one schedule, not an export index; index {index} does not exist")
    return from_json_obj(data, str(path))


def json_text(data: Any) -> str:
    """The JSON text datosearch writes (indented, newline-terminated)."""
    return json.dumps(data, indent=2) + "\n"


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` atomically (`datosearch.atomic.write_atomic`), so readers never see half a file."""
    write_atomic(path, json_text(data))


def save(schedule: Schedule, path: str | os.PathLike) -> None:
    write_json_atomic(path, schedule.to_dict())
