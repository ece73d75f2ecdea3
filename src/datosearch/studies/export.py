"""Export the Pareto front: `DIR/index.json` (objectives + file names) and one `schedule_K.json` per schedule.

`build_export` is the one place the index's rows are made: `export_front` writes them and the
report's front table shows them, so the two cannot disagree. The files are staged in a temporary
directory and renamed into place, the index last; a failed write leaves the previous export intact,
and `schedule_K.json` files left from an earlier, larger export are removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna

from ..errors import UserValueError
from ..atomic import check_writable, publish_atomic, writing
from ..search.attrs import PAIRED_PREFIX
from ..space.io import EXPORT_FORMAT as INDEX_FORMAT, json_text
from ..space.schedule import Schedule
from .front import FrontEntry, pareto_front
from .study import stored_config


@dataclass
class Export:
    """The files of an export, `(name, JSON text)`, and the index (the last file) as a dict."""

    files: list[tuple[str, str]]
    index: dict[str, Any]


def pruning_summary(schedule: Schedule) -> dict[str, Any] | None:
    """How many blocks prune, their mean and largest ratio, and the base-token selection (None: no pruning)."""
    ratios = [r for r in schedule.prune.ratios.values() if r > 0]
    if not ratios:
        return None
    return {"blocks": len(ratios), "ratio_mean": sum(ratios) / len(ratios), "ratio_max": max(ratios),
            "selection": schedule.prune.base_selection, "per_call": schedule.prune.call_scale is not None}


def build_export(study: optuna.Study, entries: Sequence[FrontEntry], scores: dict[str, Any] | None = None) -> Export:
    """The schedule files and the index of `entries` (the study's front); `scores` are held-out rows
    (`studies.verify.heldout_scores`: `front` in the entries' order, None where an entry has none)."""
    config = stored_config(study)
    files: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    for k, entry in enumerate(entries):
        name = f"schedule_{k}.json"
        meta = dict(model=config.model, height=config.height, width=config.width,
                    guidance=config.guidance, dtype=config.dtype, objectives=entry.values,
                    speedup=entry.speedup, hardware=config.device, study=study.study_name, trial=entry.trial.number)
        if entry.anchor:
            meta["name"] = entry.anchor
        # a searched base trajectory stays the schedule's own; the others run on the study's
        schedule = replace(entry.schedule.with_meta(**meta), trajectory=entry.schedule.trajectory or config.trajectory)
        files.append((name, json_text(schedule.to_dict())))
        paired = {k[len(PAIRED_PREFIX):]: v for k, v in entry.trial.user_attrs.items() if k.startswith(PAIRED_PREFIX)}
        rows.append({"file": name, "trial": entry.trial.number, "values": entry.values, "speedup": entry.speedup,
                     "anchor": entry.anchor, "key": schedule.key(), "counts": schedule.counts(), "paired": paired,
                     "trajectory": schedule.trajectory.to_dict(),
                     "pruning": pruning_summary(schedule)})
        if scores is not None and scores["front"][k] is not None:
            rows[-1]["heldout"] = scores["front"][k]
    objectives = [{"name": n, "direction": d.name.lower()} for n, d in zip(config.objectives, study.directions)]
    index = {"format": INDEX_FORMAT, "study": study.study_name, "objectives": objectives,
             "config": config.to_json(), "entries": rows}
    if scores is not None:
        index["heldout"] = {k: v for k, v in scores.items() if k != "front"}
    return Export(files, index)


def export_front(study: optuna.Study, out_dir: str | Path, heldout: Callable[[list[FrontEntry]], dict] | None = None) -> Path:
    """Write the study's front under `out_dir`; returns the index path.

    An `out_dir` that cannot be written is refused first (`OutputPathError`, one sentence). Every file is
    first written into a staging directory inside `out_dir`, so a failed write (disk full: `OutputPathError`,
    an unserialisable value) leaves the previous export as it was. Then the schedule files are
    moved into place, the index last, and `schedule_K.json` files the new index does not list are removed.
    `heldout(entries)` (see `studies.verify.heldout_scores`) re-scores the front on held-out images;
    its rows go beside the search values in each entry (`heldout`) and in the index.
    """
    out_dir = check_writable(out_dir, "the export", directory=True)  # before the held-out work; leaves nothing
    entries = pareto_front(study)
    if not entries:
        raise UserValueError(f"study {study.study_name!r} has no completed trials to export; run or resume it first")
    export = build_export(study, entries, heldout(entries) if heldout is not None else None)
    with writing(out_dir, "the export"):
        path = publish_atomic(out_dir, [*export.files, ("index.json", json_text(export.index))])[-1]
        written = [name for name, _ in export.files]
        for stale in out_dir.glob("schedule_*.json"):
            if stale.name not in written:
                stale.unlink()
    return path


def _runs(numbers: list[int]) -> str:
    """3, 4, 5, 8 -> '3-5, 8'."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def beaten_summary(names: Sequence[str]) -> str:
    """Anchor names, DeepCache ones (branch 0) folded by interval: 'DeepCache N=3-10, non-uniform N=5, 8; pndm-7'."""
    folded: dict[str, list[int]] = {"": [], "non-uniform ": []}
    rest = []
    for name in names:
        match = re.fullmatch(r"deepcache-(nonuniform-)?N(\d+)-b0", name)
        if match:
            folded["non-uniform " if match.group(1) else ""].append(int(match.group(2)))
        else:
            rest.append(name)
    deepcache = ", ".join(f"{kind}N={_runs(ns)}" for kind, ns in folded.items() if ns)
    return "; ".join(([f"DeepCache {deepcache}"] if deepcache else []) + rest)


def heldout_summary(index: dict[str, Any]) -> str | None:
    """The held-out rows of an export index as plain text, fastest first: PSNR vs converged, FID-proxy
    vs real digits, speedup, the anchors beaten; None when the export was not re-scored."""
    held = index.get("heldout")
    if not held:
        return None
    rows = sorted((e for e in index["entries"] if e.get("heldout")),
                  key=lambda e: -e["heldout"]["speedup_vs_fullcompute"])
    own = _fmt(held["reference"].get("fid_real"))
    lines = [f"held-out: {held['n_images']} images (seeds {held['seed0']}+); PSNR vs the converged reference, "
             f"FID-proxy vs real digits (the converged reference's own: {own}), speedup"]
    for e in rows:
        h = e["heldout"]
        lines.append(f"  {e['file']:<16}  {h['psnr_converged']:6.2f} dB  {_fmt(h.get('fid_real')):>6}  "
                     f"{h['speedup_vs_fullcompute']:6.2f}x  beats: {beaten_summary(h.get('beats', [])) or 'none'}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def stored_heldout(index_path: str | Path, study: optuna.Study, entries: Sequence[FrontEntry]) -> dict[str, Any] | None:
    """The held-out scores of an earlier export of `study` (`index.json`) for `entries`, matched by trial
    (None where it did not re-score that trial; None overall without a readable, re-scored index of this study)."""
    try:
        index = json.loads(Path(index_path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or index.get("study") != study.study_name \
            or "heldout" not in index:
        return None
    by_trial = {e.get("trial"): e["heldout"] for e in index.get("entries", []) if "heldout" in e}
    return {**index["heldout"], "front": [by_trial.get(e.trial.number) for e in entries]}
