"""Schedule JSON: load (schema-checked, one clear error), save (atomic), and the shipped JSON Schema."""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .schedule import SCHEMA_IDS, Schedule, ScheduleError


@lru_cache(maxsize=1)
def json_schema() -> dict[str, Any]:
    """The JSON Schema of `datosearch/schedule@1` and `@2` (one file), shipped in the package."""
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
                            f"{' and '.join(map(repr, SCHEMA_IDS))}")
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


def load(path: str | os.PathLike, index: int | None = None) -> Schedule:
    """Load a schedule file; a file holding a list (an export) needs `index`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScheduleError(f"{path}: cannot read schedule file ({exc.strerror})") from None
    data = _decode(text, str(path))
    if isinstance(data, dict) and "schedules" in data:
        items = data["schedules"]
        if index is None or not 0 <= index < len(items):
            raise ScheduleError(f"{path}: holds {len(items)} schedules; pick one with an index in 0..{len(items) - 1}")
        return from_json_obj(items[index], f"{path}[{index}]")
    return from_json_obj(data, str(path))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` via a temporary file and `os.replace`, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(schedule: Schedule, path: str | os.PathLike) -> None:
    write_json_atomic(path, schedule.to_dict())
