"""Guarantee: a malignancy threshold with a guaranteed miss rate, its price, and whether it holds."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import rcl
from ui.common import disclaimer, get_run, guard, page, require_run

MODE_LABELS = {"high-probability": "with a confidence level (Learn-then-Test)",
               "expected": "on average (conformal risk control)"}
RESPLITS = 200


@st.cache_data(show_spinner="Re-splitting…", max_entries=16)
def _resplits(path: str, target: float, mode: str, delta: float, refer_above: float | None) -> dict:
    run = get_run(path)
    probs, labels = rcl.guarantee_pool(run)
    n_val = run.predictions("val")["labels"].size
    return rcl.resplit_check(probs, labels, run.taxonomy, target, mode, delta, refer_above,
                             n_calibration=n_val, resplits=RESPLITS)


page("Guarantee")
run = require_run("the guarantee")

left, middle, right = st.columns(3)
target = left.slider("At most this share of malignant cases called benign (%)", 1, 30, 5, key="guarantee_target") / 100
confidence = middle.slider("Confidence (%)", 50, 99, 90, key="guarantee_confidence") / 100
mode = right.radio("Guarantee", rcl.GUARANTEE_MODES, index=rcl.GUARANTEE_MODES.index("high-probability"),
                   format_func=MODE_LABELS.get, key="guarantee_mode")
refer = st.toggle(f"Refer an uncertain band to a specialist (malignant at P(malignant) ≥ {rcl.DEFAULT_REFER_ABOVE:g})",
                  key="guarantee_refer")
refer_above = rcl.DEFAULT_REFER_ABOVE if refer else None

try:
    rule, report = rcl.guarantee_for_run(run, target, mode, 1 - confidence, refer_above)
except ValueError as exc:  # too few malignant calibration cases for this target: say how many
    st.warning(f"No guarantee for this run: {exc}")
    disclaimer()
    st.stop()

with guard("guarantee"):
    st.success(rule.sentence())
    band = f", refer from {rule.refer_low:.3f}" if rule.refers else ""
    st.write(f"**Rule**: malignant iff P(malignant) ≥ **{rule.threshold:.3f}**{band} · guaranteed bound "
             f"{rule.bound:.2%} · calibrated on {rule.n_malignant} malignant of {rule.n_calibration} validation cases "
             f"({rule.misses_calibration} missed).")
    st.markdown(f"**Price on the test split** ({report['n']} cases, the rule above):")
    cols = st.columns(4)
    cols[0].metric("CER (answered)", rcl.pct(report["cer"]["value"]),
                   help=f"{report['misses']} of {report['n_answered_malignant']} answered malignant cases called benign")
    cols[1].metric("F1-macro (answered)", f"{report['f1_macro']['value']:.3f}" if report["f1_macro"]["value"] is not None
                   else "n/a")
    cols[2].metric("False alarms", rcl.pct(report["false_alarm_rate"]["value"]),
                   help=f"of {report['false_alarm_rate']['n']} benign cases")
    cols[3].metric("Referred", rcl.pct(report["referral_rate"]["value"]))
    if st.button("Use this rule for this run (stored as guarantee.json)", key="guarantee_save"):
        st.success(f"Stored {rcl.save_guarantee(rule, run.path, {'report': report})}")

    st.subheader("Does it hold on new patients?")
    check = _resplits(str(run.path), target, mode, 1 - confidence, refer_above)
    if not check["splits"]:
        st.warning(f"All {check['refused']} re-splits had too few malignant calibration cases for this target.")
    else:
        cer = check["pool_cer"] * 100
        fig = go.Figure(go.Histogram(x=cer, nbinsx=30, marker_color="#0072B2", name="re-splits"))
        fig.add_vline(x=target * 100, line_color="#D55E00", annotation_text=f"target {target:.0%}")
        fig.update_layout(xaxis_title="CER of the rule on all non-training cases (%)", yaxis_title="re-splits",
                          height=320, margin={"t": 10, "b": 10}, plot_bgcolor="white")
        st.plotly_chart(fig, width="stretch")
        over = float(np.mean(check["pool_cer"] > target))
        st.caption(f"{check['splits']} random re-splits of the {report['n'] + rule.n_calibration} non-training cases "
                   f"({check['refused']} refused): calibrate on as many as the validation split, judge the rule on "
                   f"the whole pool. CER above the target in {over:.1%} of them (allowed: "
                   f"{'on average below the target' if mode == 'expected' else f'{1 - confidence:.0%}'}).")
st.caption("An image flagged as unfamiliar is outside this guarantee: refer it.")
disclaimer()
