"""Confusion: the K × K test confusion matrix coloured by error tier, tier totals, the fatal misses."""

from __future__ import annotations

import streamlit as st

import rcl
from ui.charts import confusion_figure
from ui.common import TIER_COLOURS, disclaimer, guard, page, require_run

page("Confusion")
run = require_run("the confusion matrix")

test = run.metrics.get("test", {})
st.write(f"**{run.label}** ({rcl.start_text(run.train)}) · test split, {rcl.plural(test.get('n', 0), 'image')} · "
         f"{rcl.decision_rule('argmax')} · "
         "cells coloured by error tier (rows: true class with its number of test images n, columns: predicted class).")
normalise = st.toggle("Row-normalised (share of each true class)", key="confusion_normalise")

with guard("confusion matrix"):
    view = rcl.confusion_view(test["confusion"], run.taxonomy, normalise=normalise)
    fig = confusion_figure(view, normalise)
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
