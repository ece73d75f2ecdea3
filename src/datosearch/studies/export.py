"""Export the Pareto front: `DIR/index.json` (objectives + file names) and one `schedule_K.json` per schedule.

The files are staged in a temporary directory and renamed into place, the index last; a failed
write leaves the previous export intact, and `schedule_K.json` files left from an earlier, larger
export are removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import optuna

from ..errors import UserValueError
from ..atomic import publish_atomic
from ..space.io import EXPORT_FORMAT as INDEX_FORMAT, json_text
from .front import FrontEntry, pareto_front
from .study import stored_config


def export_front(study: optuna.Study, out_dir: str | Path, heldout: Callable[[list[FrontEntry]], dict] | None = None) -> Path:
    """Write the study's front under `out_dir`; returns the index path.

    Every file is first written into a staging directory inside `out_dir`, so a failed write (disk
    full, an unserialisable value) leaves the previous export as it was. Then the schedule files are
    moved into place, the index last, and `schedule_K.json` files the new index does not list are removed.
    `heldout(entries)` (see `studies.verify.heldout_scores`) re-scores the front on held-out images;
    its rows go beside the search values in each entry (`heldout`) and in the index.
    """
    out_dir = Path(out_dir)
    config = stored_config(study)
    entries = pareto_front(study)
    if not entries:
        raise UserValueError(f"study {study.study_name!r} has no completed trials to export; run or resume it first")
    scores = heldout(entries) if heldout is not None else None
    files: list[tuple[str, str]] = []
    index: list[dict[str, Any]] = []
    for k, entry in enumerate(entries):
        name = f"schedule_{k}.json"
        own = entry.schedule.meta  # a searched base trajectory stays the schedule's own
        meta = dict(model=config.model, height=config.height, width=config.width,
                    scheduler=own.get("scheduler", config.scheduler), steps=own.get("steps", config.steps),
                    guidance=config.guidance, dtype=config.dtype, objectives=entry.values,
                    speedup=entry.speedup, hardware=config.device, study=study.study_name, trial=entry.trial.number)
        if entry.anchor:
            meta["name"] = entry.anchor
        schedule = entry.schedule.with_meta(**meta)
        files.append((name, json_text(schedule.to_dict())))
        index.append({"file": name, "trial": entry.trial.number, "values": entry.values, "speedup": entry.speedup,
                      "anchor": entry.anchor, "key": schedule.key(), "counts": schedule.counts()})
        if scores is not None:
            index[-1]["heldout"] = scores["front"][k]
    objectives = [{"name": n, "direction": d.name.lower()} for n, d in zip(config.objectives, study.directions)]
    body = {"format": INDEX_FORMAT, "study": study.study_name, "objectives": objectives,
            "config": config.to_json(), "entries": index}
    if scores is not None:
        body["heldout"] = {k: v for k, v in scores.items() if k != "front"}
    path = publish_atomic(out_dir, [*files, ("index.json", json_text(body))])[-1]
    written = [name for name, _ in files]
    for stale in out_dir.glob("schedule_*.json"):
        if stale.name not in written:
            stale.unlink()
    return path
