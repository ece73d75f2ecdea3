"""The report's study-level plots: Optuna's hypervolume history and heat-maps of the front's plans."""

from __future__ import annotations

import warnings

import optuna
import plotly.graph_objects as go
from optuna.study import StudyDirection

from ..search.pareto import reference_point
from ..space.schedule import FULL, REUSE
from .front import FrontEntry


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
    rows = [f"schedule_{k} (trial {e.trial.number}" + (f", {e.anchor})" if e.anchor else ")") for k, e in enumerate(entries)]
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
