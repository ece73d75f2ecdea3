"""A self-contained HTML report (plotly.js inlined, images as data URIs, opens offline): what a user
needs to pick a schedule.

In order: the study in one box (`report_tables.study_box`), the front table (the export index's rows,
`export.build_export`, with the held-out rows of an earlier export of the study), speedup against
quality for every trial (`report_scatter`), pictures of each exported schedule and anchor beside full
compute (`report_pictures`), the hypervolume history and the front's plans (`report_plans`), and
the latency cost model. A study with no finished trial, or no front, gets a page that says so.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..atomic import check_writable, write_atomic, writing
from ..search.attrs import ANCHOR_ATTR, SPEEDUP_ATTR
from ..space.schedule import Schedule
from .export import build_export, stored_heldout
from .front import FrontEntry, pareto_front, trial_schedule
from .report_pictures import DEFAULT_PICTURES, make_pictures, pictures_html
from .report_plans import hypervolume_figure, plan_figures
from .report_scatter import LEGEND_NOTE, family, quality_figures
from .report_tables import (cost_model_table, failure_reasons, front_table, operators_html,  # noqa: F401
                            study_box)
from .study import stored_config

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;font-size:13px}
table.front td,table.anchors td{text-align:right}table.front td:first-child,table.front td:last-child{text-align:left}
table.box th{background:#f4f4f4;width:8em}code{font-size:12px;word-break:break-all}
table.pictures td{white-space:nowrap}table.pictures img{margin:1px;image-rendering:pixelated}
table.front code{white-space:nowrap}
table.pictures tr.full th,table.pictures tr.full td{position:sticky;top:0;background:#fff;z-index:1}
p.status{font-size:1.2em;padding:.5em;background:#fff3cd;border:1px solid #e0c060}"""


def status_line(study: optuna.Study, entries: list[FrontEntry]) -> str | None:
    """One sentence when the study has no front yet (no finished trial, or every trial failed), else None."""
    if entries:
        return None
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        return f"no Pareto front: none of the {len(complete)} completed trials satisfies the study's constraints"
    if failed:
        why = "; ".join(f"{n}x {reason}" for reason, n in failure_reasons(study))
        return f"no Pareto front: all {len(failed)} finished trials failed (commonest reasons: {why})"
    return f"the study has no finished trial yet ({len(trials)} running or waiting); run or resume it first"


def anchor_rows(study: optuna.Study, entries: list[FrontEntry]) -> list[tuple[str, str, Schedule]]:
    """One `(name, note, schedule)` per anchor evaluated by the study (not full compute, not already exported)."""
    exported = {e.anchor for e in entries}
    out: dict[str, tuple[str, str, Schedule]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        name = trial.user_attrs.get(ANCHOR_ATTR)
        if name and name != "full" and name not in exported and name not in out:
            schedule = trial_schedule(trial)
            speedup = trial.user_attrs.get(SPEEDUP_ATTR)
            note = f"anchor ({family(name, schedule)})" + (f", {speedup:.2f}x" if speedup else "")
            out[name] = (f"anchor {name}", note, schedule)
    return list(out.values())


def _figure_html(fig: Any, first: bool) -> str:
    return f"<section>{fig.to_html(full_html=False, include_plotlyjs=first, config={'displaylogo': False})}</section>"


def render_report(study: optuna.Study, *, pipe: Any = None, pictures: int = DEFAULT_PICTURES,
                  export_dir: str | Path | None = None, storage: str | None = None) -> str:
    """The report page. `pipe` (loaded here when None and `pictures` > 0) generates the pictures;
    `export_dir` holds an earlier export whose held-out rows the front table shows."""
    config = stored_config(study)
    entries = pareto_front(study)
    status = status_line(study, entries)
    scores = stored_heldout(Path(export_dir) / "index.json", study, entries) if export_dir and entries else None
    parts = [study_box(study, config, storage, pictures if entries else 0, scores["n_images"] if scores else None)]
    if status:
        parts.insert(0, f"<p class='status'>{html.escape(status[0].upper() + status[1:])}.</p>")
    else:
        latency_how = "predicted by the cost model" if config.latency_mode == "model" else "measured"
        parts.append(front_table(build_export(study, entries, scores).index, latency_how))
    figures = quality_figures(study, config, {e.trial.number for e in entries}) if len(study.trials) else []
    parts += [f"<p>{LEGEND_NOTE}</p>"] if figures else []
    parts += [_figure_html(fig, i == 0) for i, fig in enumerate(figures)]
    if entries and pictures > 0:
        if pipe is None:
            from .build import load_pipeline
            from .resolve import default_device

            pipe, _ = load_pipeline(config.model, default_device(), config.dtype)
        order = sorted(range(len(entries)), key=lambda k: -(entries[k].speedup or 0.0))  # as the front table
        named = [(f"schedule_{k}.json", _entry_note(entries[k]), entries[k].schedule) for k in order]
        parts.append(pictures_html(make_pictures(pipe, config, named + anchor_rows(study, entries), pictures)))
    if entries:
        more = ([hypervolume_figure(study)] if len(study.directions) > 1 else []) + plan_figures(entries)
        parts += [_figure_html(fig, not figures and i == 0) for i, fig in enumerate(more)]
    parts += [operators_html(study), cost_model_table(study)]
    title = html.escape(f"datosearch report: {study.study_name}")
    summary = (f"{len(study.trials)} trials, {len(entries)} exported (Pareto-optimal) schedules. Hover a point for "
               f"its numbers; the table lists each exported schedule's file.")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
            f"<body><h1>{title}</h1><p>{summary}</p>{''.join(parts)}</body></html>")


def _entry_note(e: FrontEntry) -> str:
    speed = f"{e.speedup:.2f}x" if e.speedup else "speedup not measured"
    return f"exported, {speed}" + (f", anchor {e.anchor}" if e.anchor else "")


def write_report(study: optuna.Study, path: str | Path, **options: Any) -> Path:
    """Render (`render_report`, same options) and write the report atomically. An output path that cannot
    be written is an `OutputPathError` (a `UserValueError`), raised before any work and leaving nothing behind."""
    path = check_writable(path, "the report")
    page = render_report(study, **options)
    with writing(path, "the report"):
        return write_atomic(path, page)
