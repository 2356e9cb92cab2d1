"""Pareto frontier: the finished runs tested on the same images as (CER, F1) points with bootstrap
error bars, the frontier, optional re-decision variants and the paper's published points."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import rcl
from ui.charts import coverage_figure, frontier_figure
from ui.common import disclaimer, get_run, guard, no_runs_message, page, run_version, split_rows

MAX_BOOTSTRAP = 60  # runs without stored CIs get one computed (and cached) up to this many per view
MAX_DECISION_RUNS = 40  # decision-rule variants: predictions of at most this many runs are re-decided

page("Pareto frontier")
st.write("Each point is a finished run: **CER** on x (malignant cases called benign; lower is safer) and "
         "**F1-macro** on y (higher is more accurate). The frontier joins the runs no other run beats on both. "
         "Runs are only compared when they were tested on the same images (same dataset and test split).")


@st.cache_data(show_spinner=False, max_entries=2048)
def cached_ci(path: str, mtime: int) -> dict:
    return rcl.run_ci(get_run(path))


@st.cache_data(show_spinner="Re-deciding runs under the swept matrices…", max_entries=16)
def cached_frontier(keys: tuple[tuple[str, int], ...]) -> list[dict]:
    return rcl.decision_frontier([get_run(path) for path, _ in keys])


rows = split_rows()
if not rows:
    no_runs_message("the Pareto frontier")
    disclaimer()
    st.stop()
groups = rcl.split_groups(rows)
if not groups:
    st.info(f"None of the {rcl.plural(len(rows), 'finished run')} stored its test sample ids, so none can be "
            "compared on the same images. Runs trained with this version store them.")
    disclaimer()
    st.stop()

# --- which runs: one test split -----------------------------------------------------------------
labels = {f"{g['dataset']}:{g['split']}": g for g in groups}
f1, f2, f3 = st.columns([3, 2, 2])
choice = f1.selectbox("Runs tested on the same images", list(labels), key="pareto_group",
                      format_func=lambda key: labels[key]["label"],
                      help="Runs are only comparable on the same test split: a run tested on other images is "
                           "never drawn beside these. The split is named by a hash of its test sample ids.")
group = labels[choice]
in_group = rcl.comparable(rows, group)
models = sorted({str(r["model"]) for r in in_group})
chosen_models = f2.multiselect("Models", models, default=models, key="pareto_models")
with f3:
    show_paper = st.toggle("Paper's points", key="pareto_paper",
                           help="The paper's published test results on the real datasets: a reference only.")
    show_rules = st.toggle("Re-decision variants", key="pareto_rules",
                           help="Each run re-decided by Bayes minimum risk under a grid of severity matrices.")
view = rcl.comparable([r for r in in_group if str(r["model"]) in chosen_models], group)
if not view:
    st.warning("No run matches these filters.")
    st.stop()
if len(groups) > 1:
    st.caption(f"Not shown, because tested on other images: "
               f"{'; '.join(g['label'] for g in groups if g is not group)}.")

# --- error bars ---------------------------------------------------------------------------------
missing = [i for i, r in enumerate(view) if r["cer_low"] is None and r["f1_low"] is None]
with guard("bootstrap intervals"):
    for i in missing[:MAX_BOOTSTRAP]:
        view[i] = rcl.with_ci(view[i], cached_ci(view[i]["path"], run_version(view[i]["path"])))
if len(missing) > MAX_BOOTSTRAP:
    st.caption(f"{rcl.plural(len(missing) - MAX_BOOTSTRAP, 'run')} without a stored confidence interval are drawn "
               "without error bars (training stores them at the end of a run).")

frame = pd.DataFrame(view)
numeric = ["cer", "cer_low", "cer_high", "f1_macro", "f1_low", "f1_high", "accuracy"]
frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
xs, ys = list(frame["cer"]) + list(frame["cer_low"]) + list(frame["cer_high"]), \
    list(frame["f1_macro"]) + list(frame["f1_low"]) + list(frame["f1_high"])
fig, per_run = frontier_figure(frame)

if show_rules:
    keys = tuple((r["path"], run_version(r["path"])) for r in view[:MAX_DECISION_RUNS])
    with guard("decision-rule variants"):
        points = pd.DataFrame(cached_frontier(keys))
        variants = points[points["decision"] != "argmax"]
        names = {r["id"]: r["label"] for r in view}
        fig.add_scatter(x=variants["cer"], y=variants["f1_macro"], mode="markers", name="Bayes re-decision",
                        marker={"size": 5, "symbol": "circle-open", "color": "#777777"},
                        customdata=list(zip(variants["run_id"].map(names), variants["decision"])),
                        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>CER %{x:.1%} · F1 %{y:.3f}"
                                      "<extra></extra>")
        best = points[points["pareto"]].sort_values("cer")
        fig.add_scatter(x=best["cer"], y=best["f1_macro"], mode="lines", name="frontier with re-decision",
                        line={"color": "#777777", "dash": "dot", "shape": "hv"}, hoverinfo="skip")
        xs += list(points["cer"])
        ys += list(points["f1_macro"])
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
    xs += list(paper["cer"])
    ys += list(paper["f1_macro"])
    st.caption("Paper points are the published test results on the real datasets (the paper's Tables III and V): a "
               "reference for scale, not comparable with runs on other data.")

fig.update_layout(xaxis_range=rcl.axis_range(xs), yaxis_range=rcl.axis_range(ys),
                  xaxis_title="CER, malignant cases missed (lower is safer)",
                  yaxis_title="F1-macro (higher is better)", xaxis_tickformat=".0%", height=560,
                  legend={"title": ("runs, by loss" if per_run else "loss") + " (filled: on the frontier)",
                          "groupclick": "toggleitem"},
                  margin={"t": 20, "b": 10, "l": 10, "r": 10})
st.plotly_chart(fig, width="stretch")

starts = sorted({str(r["start"]) for r in view})
st.caption(f"{rcl.plural(len(view), 'run')} on {group['label'].rsplit(' · ', 1)[0]}, each at its "
           f"{rcl.decision_rule('argmax')}; {int(frame['on_front'].sum())} on the frontier. Error bars: 95% bootstrap "
           f"intervals of the test metrics. Recipe: {'; '.join(starts)} (hover a point for its full recipe).")
st.dataframe(rcl.frontier_display(view), hide_index=True, width="stretch")
st.download_button("Download CSV", rcl.frontier_csv(view), file_name=f"pareto_{group['dataset']}_{group['split']}.csv",
                   mime="text/csv", help="Rates as fractions (0.25 = 25%), one row per run shown.")

st.subheader("With referral: CER on the answered cases against coverage")
shown = {r["id"] for r in view}
referral = pd.DataFrame([r for r in rcl.abstention_rows() if r["id"] in shown])
if referral.empty:
    st.caption("No run here has figures with referral (runs trained before they were recorded).")
else:
    cover = coverage_figure(referral)
    st.plotly_chart(cover, width="stretch")
    st.caption(f"{len(referral)} runs, each answering its test split ({int(referral['n'].min())}–"
               f"{int(referral['n'].max())} cases) with its default decision, its referral band and its "
               "unfamiliar-image detector. Error bars: 95% bootstrap intervals.")
disclaimer()
