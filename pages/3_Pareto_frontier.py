"""Pareto frontier: every finished run as (CER, F1) with bootstrap error bars, the frontier, the paper."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import rcl
from ui.common import LOSS_COLOURS, disclaimer, finished_rows, get_run, guard, no_runs_message, page

MAX_BOOTSTRAP = 60  # runs without stored CIs get one computed (and cached) up to this many per view
MAX_DECISION_RUNS = 40  # decision-rule variants: predictions of at most this many runs are re-decided

page("Pareto frontier")
st.write("Each point is a finished run: **CER** on x (malignant cases called benign; lower is safer) and "
         "**F1-macro** on y (higher is more accurate). The frontier joins the runs no other run beats on both.")


@st.cache_data(show_spinner=False, max_entries=2048)
def cached_ci(path: str, mtime: int) -> dict:
    return rcl.run_ci(get_run(path))


@st.cache_data(show_spinner="Re-deciding runs under the swept matrices…", max_entries=16)
def cached_frontier(keys: tuple[tuple[str, int], ...]) -> list[dict]:
    return rcl.decision_frontier([get_run(path) for path, _ in keys])


def mtime(path: str) -> int:
    try:
        return (Path(path) / "metrics.json").stat().st_mtime_ns
    except OSError:
        return 0


rows = finished_rows()
if not rows:
    no_runs_message("the Pareto frontier")
    disclaimer()
    st.stop()

# --- filters ------------------------------------------------------------------------------------
datasets = sorted({str(r["dataset"]) for r in rows})
models = sorted({str(r["model"]) for r in rows})
f1, f2, f3 = st.columns([2, 2, 3])
dataset = f1.selectbox("Dataset", datasets, key="pareto_dataset",
                       help="Runs are only comparable on the same test split.")
chosen_models = f2.multiselect("Models", models, default=models, key="pareto_models")
with f3:
    show_paper = st.toggle("Paper's published points (reference only)", key="pareto_paper")
    show_rules = st.toggle("Decision-rule variants (Bayes re-decision)", key="pareto_rules")
view = [r for r in rows if str(r["dataset"]) == dataset and str(r["model"]) in chosen_models]
if not view:
    st.warning("No run matches these filters.")
    st.stop()

# --- error bars ---------------------------------------------------------------------------------
missing = [i for i, r in enumerate(view) if r["cer_low"] is None and r["f1_low"] is None]
with guard("bootstrap intervals"):
    for i in missing[:MAX_BOOTSTRAP]:
        view[i] = rcl.with_ci(view[i], cached_ci(view[i]["path"], mtime(view[i]["path"])))
if len(missing) > MAX_BOOTSTRAP:
    st.caption(f"{len(missing) - MAX_BOOTSTRAP} runs have no stored confidence interval and are drawn without "
               "error bars (training stores them at the end of a run).")

frame = pd.DataFrame(view)
frame["on_front"] = rcl.front_flags(view)
numeric = ["cer", "cer_low", "cer_high", "f1_macro", "f1_low", "f1_high", "accuracy"]
frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")

fig = go.Figure()
for n, (loss, group) in enumerate(frame.groupby("loss", sort=True)):
    def bar(col_lo, col_hi, col, g=group):
        lo = (g[col] - g[col_lo]).where(g[col_lo].notna())
        hi = (g[col_hi] - g[col]).where(g[col_hi].notna())
        return {"type": "data", "symmetric": False, "array": hi.fillna(0).tolist(),
                "arrayminus": lo.fillna(0).tolist(), "thickness": 1, "width": 2}

    fig.add_scatter(
        x=group["cer"], y=group["f1_macro"], mode="markers", name=str(loss),
        marker={"size": 9, "color": LOSS_COLOURS[n % len(LOSS_COLOURS)], "line": {"width": 1, "color": "white"}},
        error_x=bar("cer_low", "cer_high", "cer"), error_y=bar("f1_low", "f1_high", "f1_macro"),
        customdata=group[["label", "config", "id", "model"]].to_numpy(),
        hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>CER %{x:.1%} · F1 %{y:.3f}"
                      "<br>%{customdata[2]}<extra></extra>",
    )
front = frame[frame["on_front"]].sort_values("cer")
if len(front):
    fig.add_scatter(x=front["cer"], y=front["f1_macro"], mode="lines", name="Pareto frontier",
                    line={"color": "#000000", "dash": "dash", "shape": "hv"}, hoverinfo="skip")

if show_rules:
    keys = tuple((r["path"], mtime(r["path"])) for r in view[:MAX_DECISION_RUNS])
    with guard("decision-rule variants"):
        points = pd.DataFrame(cached_frontier(keys))
        variants = points[points["decision"] != "argmax"]
        labels = {r["id"]: r["label"] for r in view}
        fig.add_scatter(x=variants["cer"], y=variants["f1_macro"], mode="markers", name="Bayes re-decision",
                        marker={"size": 5, "symbol": "circle-open", "color": "#777777"},
                        customdata=list(zip(variants["run_id"].map(labels), variants["decision"])),
                        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>CER %{x:.1%} · F1 %{y:.3f}"
                                      "<extra></extra>")
        best = points[points["pareto"]].sort_values("cer")
        fig.add_scatter(x=best["cer"], y=best["f1_macro"], mode="lines", name="frontier with re-decision",
                        line={"color": "#777777", "dash": "dot", "shape": "hv"}, hoverinfo="skip")
        if len(view) > MAX_DECISION_RUNS:
            st.caption(f"Decision-rule variants are drawn for the first {MAX_DECISION_RUNS} runs only.")

if show_paper:
    paper = pd.DataFrame(rcl.PAPER_RESULTS)
    fig.add_scatter(
        x=paper["cer"], y=paper["f1_macro"], mode="markers", name="paper (published, other data)",
        marker={"size": 10, "symbol": "diamond-open", "color": "#CC79A7"},
        customdata=paper[["dataset", "model", "method"]].to_numpy(),
        hovertemplate="PAPER: %{customdata[0]} · %{customdata[1]} · %{customdata[2]}<br>CER %{x:.1%} · F1 %{y:.3f}"
                      "<extra></extra>",
    )
    st.caption("Paper points are the published test results on the real datasets (the paper's Tables III and V): a "
               "reference for scale, not comparable with runs on other data.")

x_max = pd.concat([frame["cer"], frame["cer_high"]]).max()
x_max = min(1.02, (0.0 if pd.isna(x_max) else float(x_max)) + 0.05)
if show_paper:
    x_max = max(x_max, 0.47)
fig.update_layout(xaxis_range=[-0.01, x_max], xaxis_title="CER (lower is safer)", yaxis_title="F1-macro (higher is better)",
                  xaxis_tickformat=".0%", height=560, legend={"title": "loss"},
                  margin={"t": 20, "b": 10, "l": 10, "r": 10})
st.plotly_chart(fig, width="stretch")

st.caption(f"{len(view)} runs on {dataset}, each at its argmax decision on its test split; "
           f"{int(frame['on_front'].sum())} on the frontier. Error bars: 95% bootstrap intervals of the test metrics.")
columns = ["label", "loss", "model", "alpha", "beta", "seed", "cer", "cer_low", "cer_high", "f1_macro", "f1_low",
           "f1_high", "accuracy", "type_2", "on_front", "id"]
st.dataframe(frame[columns].sort_values("cer"), hide_index=True, width="stretch")
st.download_button("Download CSV", frame.drop(columns=["path"]).to_csv(index=False),
                   file_name=f"pareto_{dataset}.csv", mime="text/csv")

st.subheader("With referral: CER on the answered cases against coverage")
shown = {r["id"] for r in view}
referral = pd.DataFrame([r for r in rcl.abstention_rows() if r["id"] in shown])
if referral.empty:
    st.caption("No run here has figures with referral (runs trained before they were recorded).")
else:
    cover = go.Figure(go.Scatter(
        x=referral["coverage"], y=referral["cer_answered"], mode="markers", text=referral["label"],
        error_x={"type": "data", "symmetric": False, "array": referral["coverage_high"] - referral["coverage"],
                 "arrayminus": referral["coverage"] - referral["coverage_low"]},
        error_y={"type": "data", "symmetric": False, "array": referral["cer_answered_high"] - referral["cer_answered"],
                 "arrayminus": referral["cer_answered"] - referral["cer_answered_low"]},
        hovertemplate="%{text}<br>coverage %{x:.1%} · answered CER %{y:.1%}<extra></extra>"))
    cover.update_layout(xaxis_title="coverage (share answered, higher is more useful)",
                        yaxis_title="CER on answered cases (lower is safer)", xaxis_tickformat=".0%",
                        yaxis_tickformat=".0%", height=420, margin={"t": 20, "b": 10, "l": 10, "r": 10})
    st.plotly_chart(cover, width="stretch")
    st.caption(f"{len(referral)} runs, each answering its test split ({int(referral['n'].min())}–"
               f"{int(referral['n'].max())} cases) with its default decision, its referral band and its "
               "unfamiliar-image detector. Error bars: 95% bootstrap intervals.")
disclaimer()
