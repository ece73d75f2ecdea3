"""The report's scatter plots: speedup against full compute (x, higher is better) against quality (y).

Every trial is drawn by what happened to it: the exported (Pareto-optimal) schedules, the other
feasible trials, trials that broke a constraint (the constraint in the hover), anchors by family
(names in the legend and hover, no text on the plot; an open marker when the anchor broke a
constraint) and failed trials in a strip below, at the speedup their plan predicts, with the reason.
Seconds, counts and the trajectory are in the hover. An axis is logarithmic when its range spans
more than `LOG_RANGE`.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from ..objectives.costmodel import CostModel, CostModelError
from ..search.attrs import (ANCHOR_ATTR, COSTMODEL_ATTR, DEDUP_ATTR, FAIL_ATTR, LATENCY_ATTR, PAIRED_PREFIX,
                            SCHEDULE_ATTR, SPEEDUP_ATTR)
from ..space.schedule import Schedule, ScheduleError
from .config import StudyConfig
from .front import trial_schedule

LOG_RANGE = 10.0  # max/min of an axis's values above which it is drawn logarithmic
QUALITY = {"fid": "FID-proxy (lower is better)", "psnr": "PSNR (dB, higher is better)",
           "adherence": "prompt adherence (higher is better)",
           "shift": "feature shift (lower is better)", "realism": "distance from real images (lower is better)"}
REFERENCE = {"full": "full compute", "converged": "the converged reference"}
FAMILIES = (("full compute", "star", "#000000"), ("DeepCache", "diamond", "#6a3d9a"),
            ("DaTo COCO", "hexagram", "#e31a1c"), ("constant pruning ratio", "square", "#ff7f00"),
            ("fewer steps", "triangle-up", "#1f78b4"), ("other anchor", "pentagon", "#33a02c"))


@dataclass
class Metric:
    """A quality axis: its label and how to read it from a trial (None: not measured)."""

    key: str
    label: str
    value: Callable[[FrozenTrial], float | None]

    @property
    def short(self) -> str:
        return self.label.split(" (")[0]


def quality_metrics(study: optuna.Study, config: StudyConfig) -> list[Metric]:
    """The study's quality objectives, then PSNR against its reference where it was computed (and not an objective)."""
    out = []
    for i, name in enumerate(config.objectives):
        if name not in ("latency", "macs"):
            label = QUALITY.get(name, name)
            if name == "psnr":
                label = f"PSNR vs {REFERENCE.get(config.reference, config.reference)} (dB, higher is better)"
            out.append(Metric(name, label, lambda t, i=i: t.values[i] if t.values else None))
    psnr = f"{PAIRED_PREFIX}psnr"
    if "psnr" not in config.objectives and any(psnr in t.user_attrs for t in study.get_trials(deepcopy=False)):
        out.append(Metric("psnr", f"PSNR vs {REFERENCE.get(config.reference, config.reference)}, search images "
                                  "(dB, higher is better)", lambda t: t.user_attrs.get(psnr)))
    return out


def family(name: str, schedule: Schedule | None) -> str:
    if name == "full":
        return "full compute"
    for prefix, label in (("deepcache", "DeepCache"), ("dato-coco", "DaTo COCO"), ("ratio-", "constant pruning ratio")):
        if name.startswith(prefix):
            return label
    return "fewer steps" if schedule is not None and schedule.trajectory is not None else "other anchor"


def broken_constraints(trial: FrozenTrial, config: StudyConfig) -> list[str]:
    """One phrase per constraint the trial broke (value > 0)."""
    enc = config.encoding
    out = []
    for name, c in sorted(trial.constraints.items()):
        if c <= 0:
            continue
        if name == "max_nonfull_run" and enc.get("max_nonfull_run") is not None:
            out.append(f"{enc['max_nonfull_run'] + c:g} non-full calls in a row, over the limit of {enc['max_nonfull_run']}")
        elif name == "min_full" and enc.get("min_full") is not None:
            out.append(f"{enc['min_full'] - c:g} full calls, under the minimum of {enc['min_full']}")
        else:
            out.append(f"constraint {name} broken by {c:g}")
    return out


def _schedule(trial: FrozenTrial) -> Schedule | None:
    try:
        return trial_schedule(trial) if SCHEDULE_ATTR in trial.user_attrs else None
    except ScheduleError:
        return None


class SpeedupEstimate:
    """A failed trial's speedup from its plan: the study's cost model, else full-compute calls / computed calls."""

    def __init__(self, study: optuna.Study, config: StudyConfig) -> None:
        data = study.user_attrs.get(COSTMODEL_ATTR)
        self.model = CostModel.from_dict(data) if data is not None else None
        self.n_calls = int(config.encoding.get("n_calls") or 0)

    def __call__(self, schedule: Schedule) -> tuple[float, str]:
        if self.model is not None:
            try:
                return self.model.predict(None, n_calls=self.n_calls) / self.model.predict(schedule), "cost model"
            except CostModelError:
                pass
        c = schedule.counts()
        return (self.n_calls or schedule.n_calls) / max(1, c["full"] + c["shallow"]), "U-Net calls computed"


def _hover(trial: FrozenTrial, schedule: Schedule | None, metrics: Sequence[Metric], latency_how: str,
           status: str) -> str:
    anchor = trial.user_attrs.get(ANCHOR_ATTR)
    lines = [f"<b>trial {trial.number}</b>" + (f" — anchor {html.escape(anchor)}" if anchor else "")]
    speedup, latency = trial.user_attrs.get(SPEEDUP_ATTR), trial.user_attrs.get(LATENCY_ATTR)
    if speedup is not None:
        lines.append(f"speedup {speedup:.2f}x" + (f" (latency {latency:.4g} s, {latency_how})" if latency else ""))
    for m in metrics:
        v = m.value(trial)
        if v is not None:
            lines.append(f"{m.short}: {v:.4g}")
    if schedule is not None:
        c = schedule.counts()
        lines.append(f"calls full/shallow/reuse/forecast: {c['full']}/{c['shallow']}/{c['reuse']}/{c['forecast']}")
        if schedule.trajectory is not None:
            lines.append(f"trajectory: {html.escape(schedule.trajectory.label())}")
        if schedule.prune.active:
            lines.append(f"pruning in {sum(r > 0 for r in schedule.prune.ratios.values())} blocks")
    if status:
        lines.append(status)
    return "<br>".join(lines)


def _axis_type(values: Sequence[float]) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return "log" if vals and min(vals) > 0 and max(vals) / min(vals) > LOG_RANGE else "linear"


def _trace(rows: list[tuple[float, float, str]], name: str, row: int, mode: str = "markers",
           **style: object) -> tuple[go.Scatter, int]:
    xs, ys, texts = zip(*rows) if rows else ((), (), ())
    if "hoverinfo" not in style:
        style["hovertemplate"] = "%{text}<extra></extra>"
    return go.Scatter(x=list(xs), y=list(ys), text=list(texts), name=name, mode=mode, **style), row


def quality_figure(study: optuna.Study, config: StudyConfig, metric: Metric, metrics: Sequence[Metric],
                   front: set[int]) -> go.Figure:
    """Speedup (x) against `metric` (y) for every trial, failed ones in a strip below."""
    latency_how = "predicted by the cost model" if config.latency_mode == "model" else "measured"
    estimate = SpeedupEstimate(study, config)
    groups: dict[str, list[tuple[float, float, str]]] = {}
    symbols: dict[str, list[str]] = {}
    rings: dict[str, list[bool]] = {}
    line: list[tuple[float, float, str]] = []  # every front member, anchors too, joined by speedup
    failed: list[tuple[float, float, str]] = []
    for trial in study.get_trials(deepcopy=False):
        if DEDUP_ATTR in trial.user_attrs:
            continue  # drawn where the trial it repeats is
        schedule = _schedule(trial)
        if trial.state == TrialState.FAIL:
            if schedule is None:
                continue
            x, how = estimate(schedule)
            reason = html.escape(str(trial.user_attrs.get(FAIL_ATTR, "no reason recorded")))
            failed.append((x, len(failed) % 4, _hover(trial, schedule, (), latency_how, f"<b>failed</b>: {reason}<br>speedup "
                                          f"{x:.2f}x estimated from its plan ({how})")))
            continue
        x, y = trial.user_attrs.get(SPEEDUP_ATTR), metric.value(trial) if trial.state == TrialState.COMPLETE else None
        if x is None or y is None:
            continue
        broken = broken_constraints(trial, config)
        status = ("<b>constraint broken</b>: " + "; ".join(broken)) if broken else ""
        anchor = trial.user_attrs.get(ANCHOR_ATTR)
        if anchor:
            group = family(anchor, schedule)
        else:
            group = "constraint broken" if broken else "exported (Pareto-optimal)" if trial.number in front else "other trials"
            status = status or ("on the Pareto front: exported" if trial.number in front else "")
        groups.setdefault(group, []).append((x, y, _hover(trial, schedule, metrics, latency_how, status)))
        symbols.setdefault(group, []).append("-open" if broken else "")
        if trial.number in front:
            line.append((x, y, ""))
            rings.setdefault(group, []).append(True)
        else:
            rings.setdefault(group, []).append(False)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.86, 0.14], vertical_spacing=0.04) \
        if failed else go.Figure()
    traces = []
    other = groups.pop("other trials", [])
    traces.append(_trace(other, f"other trials ({len(other)})", 1, marker={"color": "#9ecae1", "size": 7}))
    broken_rows = groups.pop("constraint broken", [])
    if broken_rows:
        traces.append(_trace(broken_rows, f"constraint broken ({len(broken_rows)})", 1,
                             marker={"symbol": "x-thin-open", "color": "#636363", "size": 8, "line": {"width": 2}}))
    exported = groups.pop("exported (Pareto-optimal)", [])
    traces.append(_trace(sorted(line), "Pareto front", 1, mode="lines", line={"color": "#d7301f", "width": 1, "dash": "dot"},
                         hoverinfo="skip"))
    traces.append(_trace(exported, f"exported, Pareto-optimal ({len(exported)})", 1,
                         marker={"color": "#d7301f", "size": 10, "line": {"color": "white", "width": 1}}))
    for name, symbol, color in FAMILIES:
        rows = groups.get(name)
        if rows:
            ring = rings[name]
            traces.append(_trace(rows, f"anchor: {name} ({len(rows)})", 1, marker={
                "symbol": [symbol + s for s in symbols[name]], "color": color, "size": 12,
                "line": {"color": ["#d7301f" if r else color for r in ring], "width": [3 if r else 1 for r in ring]}}))
    if failed:
        traces.append(_trace(failed, f"failed ({len(failed)})", 2, marker={"symbol": "x", "color": "#b2182b", "size": 9}))
    for trace, row in traces:
        if failed:
            fig.add_trace(trace, row=row, col=1)
        else:
            fig.add_trace(trace)
    xs = [x for t, _ in traces for x in t.x]
    ys = [y for t, row in traces if row == 1 for y in t.y]
    fig.update_xaxes(type=_axis_type(xs))
    fig.update_yaxes(title_text=metric.label, type=_axis_type(ys), row=1 if failed else None, col=1 if failed else None)
    if failed:
        fig.update_yaxes(showticklabels=False, showgrid=False, title_text="failed", range=[-0.7, 3.7], row=2, col=1)
        fig.update_xaxes(title_text="speedup against full compute (x, higher is better)", row=2, col=1)
    else:
        fig.update_xaxes(title_text="speedup against full compute (x, higher is better)")
    fig.update_layout(title=f"{metric.short} against speedup, every trial", height=560, legend={"itemsizing": "constant"})
    return fig


LEGEND_NOTE = ("Each point is a trial; hover it for its numbers (seconds, calls, trajectory, why it broke a constraint or "
               "failed). Anchors are named in the legend and the hover; a red ring marks an exported anchor, an open "
               "marker an anchor that broke a constraint; failed trials sit in the strip below at the speedup their "
               "plan predicts.")


def quality_figures(study: optuna.Study, config: StudyConfig, front: set[int]) -> list[go.Figure]:
    """One speedup-vs-quality figure per quality metric of the study."""
    metrics = quality_metrics(study, config)
    return [quality_figure(study, config, m, metrics, front) for m in metrics]
