"""The report's HTML tables: the front (the export index's rows), the study box, the latency cost model,
where the trials and the front came from (per operator).

The front table renders `studies.export.build_export`'s index rows, the same rows `index.json`
holds, so the report and the export cannot disagree.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from ..search.attrs import COSTMODEL_ATTR, DEDUP_ATTR, FAIL_ATTR
from ..search.operators import operator_table
from .config import StudyConfig
from .export import beaten_summary
from .report_scatter import QUALITY, REFERENCE, broken_constraints
from .reproduce import reproduce_command
from .study import budget


def _num(value: Any, fmt: str = ".3g", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{suffix}"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pruning(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "none"
    blocks = f"{summary['blocks']} block{'s' if summary['blocks'] > 1 else ''}"
    return (f"{blocks}, ratio {summary['ratio_mean']:.2f} mean / {summary['ratio_max']:.2f} max, "
            f"{_esc(summary['selection'])}" + (", per-call scale" if summary.get("per_call") else ""))


HELDOUT_QUALITY = (("FID-proxy vs real digits", ""), ("FID-proxy vs converged", ""), ("PSNR vs converged", "dB"),
                   ("PSNR vs full compute", "dB"))  # (column, unit) of `_heldout_quality`


def _heldout_quality(row: dict[str, Any]) -> list[str]:
    """A held-out row's quality cells, in `HELDOUT_QUALITY` order."""
    return [_num(row.get("fid_real"), ".3g"), _num(row.get("fid_converged"), ".3g"),
            _num(row.get("psnr_converged"), ".2f"), _num(row.get("psnr_fullcompute"), ".2f")]


def front_table(index: dict[str, Any], latency_how: str) -> str:
    """One row per exported schedule, fastest first: search and held-out values, calls, pruning, anchors beaten."""
    names = [o["name"] for o in index["objectives"]]
    quality = [n for n in names if n not in ("latency", "macs")]
    reference = REFERENCE.get(index["config"].get("reference"), "the reference")
    paired_psnr = "psnr" not in quality and any("psnr" in e.get("paired", {}) for e in index["entries"])
    header = ["file", "speedup (search)"] + [f"{QUALITY.get(n, n).split(' (')[0]} (search)" for n in quality]
    header += [f"PSNR vs {reference} (search, dB)"] if paired_psnr else []
    held = index.get("heldout")
    if held:
        header += ["speedup (held-out)"] + [f"{n} (held-out{', ' + u if u else ''})" for n, u in HELDOUT_QUALITY]
    header += ["calls full / shallow / reuse / forecast", "trajectory", "token pruning"]
    header += ["beats on held-out images"] if held else []
    rows = []
    for e in sorted(index["entries"], key=lambda e: -(e["speedup"] or 0.0)):
        h = e.get("heldout") or {}
        c = e["counts"]
        latency = e["values"].get("latency")
        speed = _num(e["speedup"], ".2f", "x")
        if latency is not None:
            speed = f"<span title='latency {latency:.4g} s, {latency_how}'>{speed}</span>"
        held_speed = _num(h.get("speedup_vs_fullcompute"), ".2f", "x")
        if h.get("speedup_range"):
            held_speed += f"<br><small>{h['speedup_range'][0]:.2f}–{h['speedup_range'][1]:.2f}</small>"
        row = [f"<code>{_esc(e['file'])}</code>" + (f"<br><small>anchor {_esc(e['anchor'])}</small>" if e["anchor"] else ""),
               speed] + [_num(e["values"].get(n), ".4g") for n in quality]
        row += [_num(e.get("paired", {}).get("psnr"), ".2f")] if paired_psnr else []
        trajectory = f"{_esc(e['trajectory']['scheduler'])}, {e['trajectory']['steps']} steps"
        row += [held_speed, *_heldout_quality(h)] if held else []
        row += [f"{c['full']} / {c['shallow']} / {c['reuse']} / {c.get('forecast', 0)}", trajectory,
                _pruning(e.get("pruning"))]
        beats = h.get("beats", [])
        row += [f"<small title='{_esc(', '.join(beats))}'>{_esc(beaten_summary(beats)) or ('none' if h else '—')}</small>"
                ] if held else []
        rows.append(row)
    if held:
        ref = held.get("reference", {})
        note = (f"Held-out: {held['n_images']} images (seeds {held['seed0']}+), never seen by the search; PSNR against the "
                f"converged reference ({_esc(ref.get('scheduler'))}, {ref.get('steps')} steps{_ref_fid(ref)}) and the "
                f"study's full compute; speedup timed end to end. <i>Beats</i>: not slower than "
                f"{held['dominance']['speed']:.2f}x the anchor's speed and {held['dominance']['psnr_db']:g} dB closer "
                f"to converged (FID-proxy at most {held['dominance']['fid_slack']:.0%} worse), or a FID-proxy "
                f"{held['dominance']['fid_margin']:.0%} lower.")
    else:
        note = (f"Not re-scored on held-out images: run <code>datosearch export --study {_esc(index['study'])} "
                f"--heldout 50</code>, then the report again.")
    return (f"<section id='front'><h2>The front: {len(rows)} exported schedules</h2><p>{note} The numbers are the "
            f"rows of the export's <code>index.json</code>.</p>{_table(header, rows, 'front')}"
            f"{anchor_table(held)}</section>")


def _ref_fid(ref: dict[str, Any]) -> str:
    fid = ref.get("fid_real")
    return "" if fid is None else f"; its own FID-proxy against real digits {fid:.3g}"


def anchor_table(held: dict[str, Any] | None) -> str:
    """The compared anchors' held-out rows (what the front is judged against)."""
    if not held or not held.get("anchors"):
        return ""
    rows = [[_esc(a["name"]), _num(a.get("speedup_vs_fullcompute"), ".2f", "x"), *_heldout_quality(a)]
            for a in sorted(held["anchors"], key=lambda a: -a.get("speedup_vs_fullcompute", 0.0))]
    header = ["anchor", "speedup"] + [f"{n} ({u})" if u else n for n, u in HELDOUT_QUALITY]
    return "<h3>Anchors on the same held-out images</h3>" + _table(header, rows, "anchors")


def trial_counts(study: optuna.Study, config: StudyConfig) -> dict[str, int]:
    """Trials by outcome (duplicates of an evaluated schedule counted apart)."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return {"total": len(trials), "complete": len(done), "failed": sum(t.state == TrialState.FAIL for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "running or waiting": sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials),
            "constraint broken": sum(bool(broken_constraints(t, config)) for t in done),
            "duplicates (not re-evaluated)": sum(DEDUP_ATTR in t.user_attrs for t in done)}


def failure_reasons(study: optuna.Study, top: int = 3) -> list[tuple[str, int]]:
    """The commonest reasons trials failed, with counts."""
    reasons = Counter(str(t.user_attrs.get(FAIL_ATTR, "no reason recorded"))
                      for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    return reasons.most_common(top)


def study_box(study: optuna.Study, config: StudyConfig, storage: str | None, pictures: int,
              heldout_images: int | None) -> str:
    """The study in one box: model, trajectory, images, trials, encoding, sampler, latency, how to reproduce it."""
    enc = config.encoding
    counts = trial_counts(study, config)
    trajectories = enc.get("trajectories") or []
    constraints = [f"at least {enc.get('min_full', 1)} full call(s)"]
    if enc.get("max_nonfull_run") is not None:
        constraints.append(f"at most {enc['max_nonfull_run']} non-full calls in a row")
    cost = study.user_attrs.get(COSTMODEL_ATTR)
    if config.latency_mode == "model" and cost is not None:
        latency = f"predicted by a cost model calibrated once per study ({cost_model_fit(cost)})"
    else:
        latency = (f"measured every trial (median of {config.latency_repeats} after {config.latency_warmup} warm-up, "
                   f"{config.latency_images} image(s))")
    command = reproduce_command(config, study.study_name, storage, budget(study) or None)
    items = [
        ("model", f"{_esc(config.model)}, {config.height}x{config.width}, {config.dtype}, on {_esc(config.device)}"),
        ("trajectory", f"{_esc(config.scheduler)}, {config.steps} steps ({enc.get('n_calls')} U-Net calls), guidance "
                       f"{config.guidance:g}" + (f"; the search may also pick {len(trajectories) - 1} other trajectories"
                                                 if len(trajectories) > 1 else "")),
        ("images", f"{len(config.prompts)} calibration (seeds {config.seeds[0]}..{config.seeds[-1]}); "
                   + (f"{heldout_images} held-out" if heldout_images else "no held-out re-scoring yet")
                   + f"; {pictures} pictured below"),
        ("objectives", f"{', '.join(config.objectives)}; quality against {REFERENCE.get(config.reference, config.reference)}, "
                       f"features {_esc(config.extractor)}"),
        ("latency", latency),
        ("trials", ", ".join(f"{v} {k}" for k, v in counts.items() if v or k in ("complete", "failed", "pruned"))
         + (f" (budget {budget(study)})" if budget(study) else "")),
        ("encoding", f"{_esc(enc.get('kind'))}, branches {enc.get('branches')}; constraints: {', '.join(constraints)}"),
        ("sampler", f"{_esc(config.sampler)}, population {config.population}, seed {config.sampler_seed}"),
        ("reproduce", f"<code>{_esc(command.text())}</code>" + "".join(f"<br><small>note: {_esc(c)}</small>"
                                                                      for c in command.caveats)),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return f"<section id='study'><h2>The study</h2><table class='box'>{rows}</table></section>"


def cost_model_table(study: optuna.Study) -> str:
    """The study's latency cost model (if it has one): its fit and coefficients, as an HTML table."""
    data = study.user_attrs.get(COSTMODEL_ATTR)
    if data is None:
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v * 1e3:.3f}</td></tr>" for k, v in sorted(data["coefficients"].items()))
    return (f"<section><h2>Latency cost model</h2><p>{cost_model_fit(data)}</p><table><tr><th>feature</th><th>ms</th>"
            f"</tr>{rows}</table></section>")


def cost_model_fit(data: dict[str, Any]) -> str:
    """The cost model's fit and calibration in one sentence."""
    stats = data.get("stats", {})
    return (f"fit on {len(stats.get('points', []))} timed schedules: R² {stats.get('r2', float('nan')):.4f}, max relative "
            f"error {stats.get('max_rel_err', float('nan')):.3f}; calibration {stats.get('calibration_s', float('nan')):.0f} s "
            f"on {html.escape(str(data.get('device', '')))}")


def operators_html(study: optuna.Study) -> str:
    """Per operator (`search.operators`): trials made, completed, children beating a parent, on the front."""
    rows = operator_table(study)
    if not rows:
        return ""
    cells = [[_esc(r["operator"]), str(r["trials"]), str(r["complete"]),
              "—" if r["beat_parent"] is None else str(r["beat_parent"]), str(r["on_front"])] for r in rows]
    note = ("anchor / seeded: enqueued (the anchors, the encoding's first generation); sampled: the sampler's own "
            "draw; the others are the structured variation's operators (a child made by several counts for each); "
            "a child beats a parent when it dominates one of them")
    return (f"<section><h2>Where the trials came from</h2><p>{_esc(note)}</p>"
            + _table(["operator", "trials", "complete", "beat a parent", "on the front"], cells, "operators")
            + "</section>")
