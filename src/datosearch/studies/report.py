"""A self-contained HTML report (plotly.js inlined, opens offline): Pareto front with the anchors
labelled, hypervolume history, and heat-maps of the front's cache plans and pruning ratios."""

from __future__ import annotations

import html
import warnings
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.study import StudyDirection

from ..atomic import write_atomic
from ..search.attrs import ANCHOR_ATTR, COSTMODEL_ATTR
from ..search.pareto import reference_point
from ..space.schedule import FULL, REUSE
from .front import FrontEntry, objective_names, pareto_front


def pareto_figure(study: optuna.Study, names: list[str]) -> go.Figure:
    """Optuna's Pareto-front plot (first two or three objectives) plus labelled anchor markers."""
    shown = names[:3] if len(names) <= 3 else names[:2]
    idx = list(range(len(shown)))
    fig = optuna.visualization.plot_pareto_front(
        study, targets=lambda t: [t.values[i] for i in idx], target_names=shown, include_dominated_trials=True)
    anchors = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.values is not None
               and t.user_attrs.get(ANCHOR_ATTR)]
    if anchors:
        coords = {axis: [t.values[i] for t in anchors] for axis, i in zip("xyz", idx)}
        style = dict(mode="markers+text", text=[t.user_attrs[ANCHOR_ATTR] for t in anchors], name="anchors",
                     textposition="top center")
        if len(shown) == 2:
            fig.add_trace(go.Scatter(**coords, **style, marker={"symbol": "diamond-open", "size": 13, "color": "black",
                                                                 "line": {"width": 2}}))
        else:
            fig.add_trace(go.Scatter3d(**coords, **style, marker={"symbol": "diamond-open", "size": 6, "color": "black"}))
    fig.update_layout(title=f"Pareto front of {study.study_name}")
    return fig


def hypervolume_figure(study: optuna.Study) -> go.Figure:
    """Optuna's hypervolume history, reference point = worst anchor value per objective + 10 %."""
    ref = reference_point(study.get_trials(deepcopy=False), study.directions)
    ref_raw = [r if d == StudyDirection.MINIMIZE else -r for r, d in zip(ref, study.directions)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fig = optuna.visualization.plot_hypervolume_history(study, reference_point=ref_raw)
    fig.update_layout(title="Hypervolume history (reference: worst anchor values + 10%)")
    return fig


def _cache_code(action: object) -> int:
    return 2 if action == FULL else 0 if action == REUSE else 1


def plan_figures(entries: list[FrontEntry]) -> list[go.Figure]:
    """Heat-maps: cache action per call (full / shallow / reuse) and pruning ratio per block, one row per schedule."""
    if not entries:
        return []
    rows = [f"#{k} trial {e.trial.number}" + (f" ({e.anchor})" if e.anchor else "") for k, e in enumerate(entries)]
    cache = [[_cache_code(a) for a in e.schedule.cache] for e in entries]
    hover = [[_action_text(a, e.schedule.forecast.get(t)) for t, a in enumerate(e.schedule.cache)] for e in entries]
    plan = go.Figure(go.Heatmap(z=cache, y=rows, x=list(range(len(cache[0]))), text=hover, zmin=0, zmax=2,
                                hovertemplate="%{y}<br>call %{x}: %{text}<extra></extra>",
                                colorscale=[[0, "#d73027"], [0.5, "#fee08b"], [1, "#1a9850"]],
                                colorbar={"tickvals": [0, 1, 2], "ticktext": ["reuse", "shallow", "full"]}))
    plan.update_layout(title="Cache plans of the front", xaxis_title="U-Net call", yaxis={"autorange": "reversed"})
    blocks = sorted({b for e in entries for b in e.schedule.prune.ratios})
    figs = [plan]
    if blocks:
        ratios = [[e.schedule.prune.ratios.get(b, 0.0) for b in blocks] for e in entries]
        fig = go.Figure(go.Heatmap(z=ratios, y=rows, x=blocks, zmin=0, zmax=0.75, colorscale="Viridis",
                                   colorbar={"title": "ratio"}))
        fig.update_layout(title="Token-pruning ratios of the front", yaxis={"autorange": "reversed"})
        figs.append(fig)
    return figs


def _action_text(action: object, forecast: object) -> str:
    text = "full" if action == FULL else "reuse" if action == REUSE else f"shallow b{action}"
    return text if forecast is None else f"{text}, forecast order {forecast.order} damping {forecast.damping:g}"


def cost_model_table(study: optuna.Study) -> str:
    """The study's latency cost model (if it has one): its fit and coefficients, as an HTML table."""
    data = study.user_attrs.get(COSTMODEL_ATTR)
    if data is None:
        return ""
    stats = data.get("stats", {})
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v * 1e3:.3f}</td></tr>" for k, v in sorted(data["coefficients"].items()))
    fit = (f"fit on {len(stats.get('points', []))} timed schedules: R² {stats.get('r2', float('nan')):.4f}, max relative "
           f"error {stats.get('max_rel_err', float('nan')):.3f}; calibration {stats.get('calibration_s', float('nan')):.0f} s "
           f"on {html.escape(str(data.get('device', '')))}")
    return (f"<section><h2>Latency cost model</h2><p>{fit}</p><table><tr><th>feature</th><th>ms</th></tr>{rows}"
            f"</table></section>")


def write_report(study: optuna.Study, path: str | Path) -> Path:
    """Write the report atomically; the HTML embeds plotly.js and makes no network requests."""
    names = objective_names(study)
    entries = pareto_front(study)
    figures = [pareto_figure(study, names)]
    if len(study.directions) > 1 and entries:
        figures.append(hypervolume_figure(study))
    figures += plan_figures(entries)
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
             for i, fig in enumerate(figures)]
    title = html.escape(f"datosearch report: {study.study_name}")
    body = "\n".join(f"<section>{p}</section>" for p in parts) + cost_model_table(study)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{len(study.trials)} trials, {len(entries)} Pareto-optimal schedules.</p>"
            f"{body}</body></html>")
    return write_atomic(path, page)
