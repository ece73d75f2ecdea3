"""Export the Pareto front: `DIR/index.json` (objectives + file names) and one `schedule_K.json` per schedule.

The files are staged in a temporary directory and renamed into place, the index last; a failed
write leaves the previous export intact, and `schedule_K.json` files left from an earlier, larger
export are removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna

from ..errors import UserValueError
from ..space.io import write_json_atomic
from .front import pareto_front
from .study import stored_config

INDEX_FORMAT = "datosearch/export@1"


def export_front(study: optuna.Study, out_dir: str | Path) -> Path:
    """Write the study's front under `out_dir`; returns the index path.

    Every file is first written into a staging directory inside `out_dir`, so a failed write (disk
    full, an unserialisable value) leaves the previous export as it was. Then the schedule files are
    moved into place, the index last, and `schedule_K.json` files the new index does not list are removed.
    """
    out_dir = Path(out_dir)
    config = stored_config(study)
    entries = pareto_front(study)
    if not entries:
        raise UserValueError(f"study {study.study_name!r} has no completed trials to export; run or resume it first")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".export-", suffix=".tmp"))
    try:
        written: list[str] = []
        index: list[dict[str, Any]] = []
        for k, entry in enumerate(entries):
            name = f"schedule_{k}.json"
            meta = dict(model=config.model, height=config.height, width=config.width, scheduler=config.scheduler,
                        steps=config.steps, guidance=config.guidance, dtype=config.dtype, objectives=entry.values,
                        speedup=entry.speedup, hardware=config.device, study=study.study_name, trial=entry.trial.number)
            if entry.anchor:
                meta["name"] = entry.anchor
            write_json_atomic(staging / name, entry.schedule.with_meta(**meta).to_dict())
            written.append(name)
            index.append({"file": name, "trial": entry.trial.number, "values": entry.values, "speedup": entry.speedup,
                          "anchor": entry.anchor, "key": entry.schedule.key(), "counts": entry.schedule.counts()})
        objectives = [{"name": n, "direction": d.name.lower()} for n, d in zip(config.objectives, study.directions)]
        write_json_atomic(staging / "index.json", {"format": INDEX_FORMAT, "study": study.study_name,
                                                   "objectives": objectives, "config": config.to_json(),
                                                   "entries": index})
        for name in written:
            os.replace(staging / name, out_dir / name)
        path = out_dir / "index.json"
        os.replace(staging / "index.json", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in out_dir.glob("schedule_*.json"):
        if stale.name not in written:
            stale.unlink()
    return path


def resolve_schedule_file(path: str | Path, index: int | None) -> tuple[Path, int | None]:
    """For an export index, the K-th schedule file; any other file is returned unchanged."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return path, index  # let the schedule loader report it
    if isinstance(data, dict) and data.get("format") == INDEX_FORMAT:
        entries = data["entries"]
        k = 0 if index is None else index
        if not 0 <= k < len(entries):
            raise UserValueError(f"{path}: the export holds {len(entries)} schedules; pick --index in 0..{len(entries) - 1}")
        return path.parent / entries[k]["file"], None
    return path, index
