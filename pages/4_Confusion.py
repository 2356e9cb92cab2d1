"""Confusion: the K × K test confusion matrix coloured by error tier, tier totals, the fatal misses."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import rcl
from ui.common import TIER_COLOURS, disclaimer, guard, no_runs_message, page, run_picker

page("Confusion")
run = run_picker()
if run is None:
    no_runs_message("the confusion matrix")
    disclaimer()
    st.stop()

test = run.metrics.get("test", {})
st.write(f"**{run.label}** ({rcl.initialisation(run.train)}) · test split, {rcl.plural(test.get('n', 0), 'image')} · "
         f"{rcl.decision_rule('argmax')} · "
         "cells coloured by error tier (rows: true class with its number of test images n, columns: predicted class).")
normalise = st.toggle("Row-normalised (share of each true class)", key="confusion_normalise")

with guard("confusion matrix"):
    view = rcl.confusion_view(test["confusion"], run.taxonomy, normalise=normalise)
    k = len(view["classes"])
    # A discrete colour scale: one band per tier index (0..3), in the Okabe-Ito palette.
    scale = []
    for i, tier in enumerate(rcl.TIERS):
        scale += [[i / 4, TIER_COLOURS[tier]], [(i + 1) / 4, TIER_COLOURS[tier]]]
    text = [[(rcl.pct(view['values'][i, j], 0) if normalise else f"{view['counts'][i, j]}") for j in range(k)]
            for i in range(k)]  # shares are of the row's n, written on its label
    per_class = view["counts"].sum(axis=1)
    rows = [f"{name} (n={n})" for name, n in zip(view["classes"], per_class)]
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
    left, right = st.columns([3, 1], gap="large")
    left.plotly_chart(fig, width="stretch")
    with right:
        st.markdown(f"**Tier totals** (of {rcl.plural(test.get('n', 0), 'test image')})")
        for row in rcl.tier_totals(test.get("tiers", {})):
            st.markdown(f"<span style='color:{TIER_COLOURS[row['key']]};font-size:1.3em'>■</span> "
                        f"{row['tier']}: **{row['count']}**", unsafe_allow_html=True)

st.subheader("Fatal misses: malignant cases the model sent home (Type II)")
with guard("Type II gallery"):
    samples = rcl.type2_samples(run)
    if not samples:
        st.success("No Type II error on the test split.")
    else:
        with_images = [s for s in samples if s["path"]]
        missed, malignant = rcl.missed_malignant(test["confusion"], run.taxonomy)
        st.write(f"{rcl.count_of(missed, malignant)} malignant test cases were called benign under the "
                 f"{rcl.decision_rule('argmax')}. Under each image: true class → predicted class, and the "
                 "probability the model gave its (wrong) answer.")
        if with_images:
            cols = st.columns(6)
            for n, sample in enumerate(with_images[:24]):
                cols[n % 6].image(sample["path"], width="stretch",
                                  caption=f"{sample['true']} → {sample['predicted']} (p = {sample['p_predicted']:.2f})")
        else:
            st.caption("The images of this run are not on this machine (sample ids relative to "
                       f"`{run.config.get('dataset', {}).get('root', '?')}`); listing them instead.")
            st.dataframe(samples, hide_index=True, width="stretch")
disclaimer()
