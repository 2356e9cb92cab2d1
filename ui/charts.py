"""The app's plotly figures (Severity, Train, Pareto, Confusion, Triage): layout only; every number
comes from ``rcl`` (rows, views, results), so pages only place them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

import rcl
from ui.common import LOSS_COLOURS, TIER_COLOURS

MAX_LEGEND_RUNS = 30  # up to this many runs the legend names each run; past it, each loss


def error_bar(points: pd.DataFrame, value: str, low: str, high: str) -> dict:
    """Asymmetric error bars from interval columns (a missing bound draws no bar)."""
    lows, highs = points[low], points[high]
    return {"type": "data", "symmetric": False, "thickness": 1, "width": 2,
            "array": (highs - points[value]).where(highs.notna()).fillna(0).tolist(),
            "arrayminus": (points[value] - lows).where(lows.notna()).fillna(0).tolist()}


def frontier_figure(frame: pd.DataFrame) -> tuple[go.Figure, bool]:
    """The runs as (CER, F1) points with their intervals and the frontier; also whether the legend
    names each run (else each loss, the run named on hover)."""
    losses = sorted(frame["loss"].astype(str).unique())
    colour = {loss: LOSS_COLOURS[n % len(LOSS_COLOURS)] for n, loss in enumerate(losses)}
    missed = [("" if pd.isna(m) else f" ({rcl.count_of(t, m)} missed)")
              for t, m in zip(frame["type_2"].fillna(0), frame["malignant"])]
    frame = frame.assign(missed=missed)
    per_run = len(frame) <= MAX_LEGEND_RUNS
    traces = ([(str(points["label"].iloc[0]), points) for _, points in frame.groupby("id", sort=False)] if per_run
              else [(str(loss), points) for loss, points in frame.groupby("loss", sort=True)])
    fig = go.Figure()
    for name, points in traces:
        loss = str(points["loss"].iloc[0])
        fig.add_scatter(
            x=points["cer"], y=points["f1_macro"], mode="markers", name=name, legendgroup=loss,
            legendgrouptitle_text=loss if per_run else None,
            marker={"size": 10, "color": colour[loss], "line": {"width": 1.5},
                    "symbol": ["circle" if f else "circle-open" for f in points["on_front"]]},
            error_x=error_bar(points, "cer", "cer_low", "cer_high"),
            error_y=error_bar(points, "f1_macro", "f1_low", "f1_high"),
            customdata=points[["label", "config", "id", "model", "missed"]].to_numpy(),
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>CER %{x:.1%}%{customdata[4]} · "
                          "F1 %{y:.3f}<br>%{customdata[2]}<extra></extra>",
        )
    front = frame[frame["on_front"]].sort_values("cer")
    if len(front):
        fig.add_scatter(x=front["cer"], y=front["f1_macro"], mode="lines", name="Pareto frontier",
                        line={"color": "#000000", "dash": "dash", "shape": "hv"}, hoverinfo="skip")
    return fig, per_run


def coverage_figure(referral: pd.DataFrame) -> go.Figure:
    """Answered-case CER against coverage, one point per run, with their intervals."""
    fig = go.Figure(go.Scatter(
        x=referral["coverage"], y=referral["cer_answered"], mode="markers", text=referral["label"],
        error_x=error_bar(referral, "coverage", "coverage_low", "coverage_high"),
        error_y=error_bar(referral, "cer_answered", "cer_answered_low", "cer_answered_high"),
        hovertemplate="%{text}<br>coverage %{x:.1%} · answered CER %{y:.1%}<extra></extra>"))
    fig.update_layout(xaxis_title="coverage (share answered, higher is more useful)",
                      yaxis_title="CER on answered cases (lower is safer)", xaxis_tickformat=".0%",
                      yaxis_tickformat=".0%", height=420, margin={"t": 20, "b": 10, "l": 10, "r": 10})
    return fig


def curves_figure(history: list[dict]) -> go.Figure:
    """A training job's validation CER and F1 by epoch (its ``history.jsonl`` rows)."""
    frame = pd.DataFrame(history)
    fig = go.Figure()
    if "val_cer" in frame:
        fig.add_scatter(x=frame["epoch"], y=frame["val_cer"], name="val CER (lower is safer)", line={"color": "#D55E00"})
    if "val_f1_macro" in frame:
        fig.add_scatter(x=frame["epoch"], y=frame["val_f1_macro"], name="val F1-macro", line={"color": "#0072B2"})
    fig.update_layout(height=280, xaxis_title="epoch", yaxis_range=[0, 1],
                      margin={"t": 10, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h"})
    return fig


def cost_heatmap(matrix: rcl.SeverityMatrix) -> go.Figure:
    """What each answer costs when deciding (``rcl.cost_matrix``: the diagonal is 0)."""
    classes = list(matrix.taxonomy.classes)
    costs = rcl.cost_matrix(matrix)
    fig = go.Figure(go.Heatmap(
        z=costs, x=classes, y=classes, text=[[f"{v:g}" for v in row] for row in costs], texttemplate="%{text}",
        colorscale="Oranges", colorbar={"title": "cost"},
        hovertemplate="true %{y} → predicted %{x}: cost %{z}<extra></extra>",
    ))
    fig.update_layout(title="Cost of each answer when deciding", xaxis_title="predicted", yaxis_title="true",
                      height=380, yaxis_autorange="reversed", margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return fig


def tier_bars(rows: list[dict], n: int) -> go.Figure:
    """Error tiers of a re-decided run beside its argmax ones (``rcl.redecide_run``'s ``tiers`` rows)."""
    tiers = [r["tier"] for r in rows]
    fig = go.Figure()
    fig.add_bar(y=tiers, x=[r["reference"] for r in rows], name="argmax (as trained)", orientation="h",
                marker_color="#BBBBBB", text=[r["reference"] for r in rows], textposition="outside")
    fig.add_bar(y=tiers, x=[r["count"] for r in rows], name="re-decided", orientation="h",
                marker_color=[TIER_COLOURS[r["key"]] for r in rows], text=[r["count"] for r in rows],
                textposition="outside")
    fig.update_layout(barmode="group", height=260, xaxis_title=f"test images (of {n})",
                      margin={"t": 40, "b": 10, "l": 10, "r": 30},
                      legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
                      yaxis={"automargin": True, "autorange": "reversed"})
    return fig


def confusion_figure(view: dict, normalise: bool) -> go.Figure:
    """``rcl.confusion_view``'s matrix, cells coloured by error tier, counts (or row shares) written in
    them, each true class labelled with its number of test images."""
    k = len(view["classes"])
    # A discrete colour scale: one band per tier index (0..3), in the Okabe-Ito palette.
    scale = []
    for i, tier in enumerate(rcl.TIERS):
        scale += [[i / 4, TIER_COLOURS[tier]], [(i + 1) / 4, TIER_COLOURS[tier]]]
    text = [[(rcl.pct(view['values'][i, j], 0) if normalise else f"{view['counts'][i, j]}") for j in range(k)]
            for i in range(k)]  # shares are of the row's n, written on its label
    rows = [f"{name} (n={n})" for name, n in zip(view["classes"], view["counts"].sum(axis=1))]
    tier_names = np.vectorize(lambda t: rcl.TIER_LABELS[rcl.TIERS[t]])(view["tiers"])
    # Empty cells are drawn faint so the eye goes to where the errors are.
    opacity_z = np.where(view["counts"] > 0, view["tiers"] + 0.5, np.nan)
    fig = go.Figure()
    fig.add_heatmap(z=view["tiers"] + 0.5, x=view["classes"], y=rows, colorscale=scale, zmin=0, zmax=4,
                    showscale=False, opacity=0.25, hoverinfo="skip")
    fig.add_heatmap(z=opacity_z, x=view["classes"], y=rows, colorscale=scale, zmin=0, zmax=4,
                    showscale=False, text=text, texttemplate="%{text}", textfont={"size": 14},
                    customdata=np.dstack([tier_names, view["counts"]]),
                    hovertemplate="true %{y} → predicted %{x}<br>%{customdata[0]}<br>%{customdata[1]} images"
                                  "<extra></extra>")
    for tier in rcl.TIERS:  # legend entries for the tier colours
        fig.add_scatter(x=[None], y=[None], mode="markers", name=rcl.TIER_LABELS[tier],
                        marker={"size": 12, "symbol": "square", "color": TIER_COLOURS[tier]})
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=120 + 60 * k, legend={"orientation": "h", "y": -0.15},
                      plot_bgcolor="white", margin={"t": 10, "b": 10, "l": 10, "r": 10})
    return fig


def probability_bars(result, taxonomy: rcl.Taxonomy) -> go.Figure:
    """A triaged image's class probabilities (malignant orange, benign blue), titled as untrusted or
    for inspection only when the case is referred."""
    critical = dict(zip(taxonomy.classes, taxonomy.is_critical))
    classes, probs = list(result.probabilities), list(result.probabilities.values())
    fig = go.Figure(go.Bar(
        x=classes, y=probs, marker_color=["#D55E00" if critical[c] else "#0072B2" for c in classes],
        text=[f"{p:.2f}" for p in probs], textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra></extra>",
    ))
    title = "Class probabilities (orange = malignant, blue = benign)"
    if result.answer.referred:
        title = ("UNTRUSTED probabilities: unlike the training images" if not result.trusted
                 else "Probabilities for inspection only: the case is referred")
    fig.update_layout(title=title, yaxis_range=[0, 1.1], height=300, margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return fig
