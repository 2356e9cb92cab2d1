"""Severity matrix: build M from a taxonomy, α and β; edit cells; see the selected run re-decided live."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import rcl
from ui.common import TIER_COLOURS, current_matrix, disclaimer, guard, page, run_picker, set_matrix

page("Severity matrix")
st.write(
    "The matrix **M[true, predicted]** says how bad each mistake is: 1 inside a superclass, **α** for a "
    "false alarm (benign called malignant), **β** for a miss (malignant called benign). Train and Triage "
    "use the matrix set here."
)

run = run_picker()


def _load_uploaded() -> None:
    """on_change of the JSON uploader: runs before the page, so sliders can take the file's α/β."""
    upload = st.session_state.get("matrix_upload")
    st.session_state.pop("matrix_load_error", None)
    if upload is None:
        return
    try:
        loaded = rcl.SeverityMatrix.from_json(upload.getvalue().decode("utf-8", errors="replace"))
    except ValueError as exc:
        st.session_state["matrix_load_error"] = str(exc)
        return
    set_matrix(loaded)
    st.session_state["taxonomy_choice"] = "from file"
    st.session_state["loaded_taxonomy"] = loaded.taxonomy
    if loaded.alpha is not None:
        st.session_state["alpha_slider"] = float(loaded.alpha)
    if loaded.beta is not None:
        st.session_state["beta_slider"] = float(loaded.beta)


# --- taxonomy -----------------------------------------------------------------------------------
left, right = st.columns([1, 1], gap="large")
with left:
    options = (["selected run"] if run is not None else []) + list(rcl.PRESETS) + ["custom"]
    if "loaded_taxonomy" in st.session_state:
        options.append("from file")
    stored = current_matrix()
    if st.session_state.get("taxonomy_choice") not in options:
        default = "selected run" if run is not None and run.taxonomy.classes == stored.taxonomy.classes else None
        if default is None:
            default = stored.taxonomy.name if stored.taxonomy.name in rcl.PRESETS else options[0]
        st.session_state["taxonomy_choice"] = default
    choice = st.selectbox("Classes (taxonomy)", options, key="taxonomy_choice",
                          help="Use the selected run's classes to see it re-decided under this matrix.")
    taxonomy: rcl.Taxonomy | None = None
    if choice == "selected run" and run is not None:
        taxonomy = run.taxonomy
    elif choice == "from file":
        taxonomy = st.session_state["loaded_taxonomy"]
    elif choice == "custom":
        names = st.text_input("Class names, comma-separated", value="benign_a, benign_b, cancer", key="custom_classes")
        classes = [n.strip() for n in names.split(",") if n.strip()]
        malignant = st.multiselect("Which are malignant (critical)?", classes, default=classes[-1:],
                                   key="custom_malignant")
        with guard("custom taxonomy"):
            taxonomy = rcl.Taxonomy.from_malignant(classes, malignant, name="custom")
    else:
        taxonomy = rcl.PRESETS[choice]
    if taxonomy is None:
        st.stop()
    st.caption(f"Malignant: {', '.join(taxonomy.malignant) or 'none'} · benign: {', '.join(taxonomy.benign) or 'none'}")

    # --- α / β ----------------------------------------------------------------------------------
    base = current_matrix(taxonomy)
    st.session_state.setdefault("alpha_slider", float(base.penalties[0]))
    st.session_state.setdefault("beta_slider", float(base.penalties[1]))
    c1, c2 = st.columns(2)
    alpha = c1.slider("α: false alarm (benign → malignant)", 0.0, 50.0, step=0.5, key="alpha_slider")
    beta = c2.slider("β: miss (malignant → benign)", 0.0, 50.0, step=0.5, key="beta_slider")
    if base.alpha == alpha and base.beta == beta:
        start = base  # keeps per-cell edits while α/β are unchanged
    else:
        start = rcl.SeverityMatrix.from_penalties(taxonomy, alpha, beta)

    # --- per-cell editor ------------------------------------------------------------------------
    st.markdown("**Per-cell edits** (rows: true class, columns: predicted class). Moving a slider rebuilds "
                "the matrix from α and β.")
    frame = pd.DataFrame(np.asarray(start.values), index=list(taxonomy.classes), columns=list(taxonomy.classes))
    digest = hashlib.sha1(np.ascontiguousarray(start.values).tobytes() + "|".join(taxonomy.classes).encode())
    editor_key = f"matrix_editor_{digest.hexdigest()[:12]}"
    st.session_state["matrix_editor_key"] = editor_key  # tests and scripts find the live editor by this
    edited = st.data_editor(
        frame,
        key=editor_key,
        width="stretch",
        column_config={c: st.column_config.NumberColumn(c, step=0.5, format="%g") for c in taxonomy.classes},
    )
    matrix: rcl.SeverityMatrix | None = None
    try:
        matrix = rcl.SeverityMatrix(taxonomy, edited.to_numpy(dtype=float, na_value=np.nan), alpha, beta)
    except (ValueError, TypeError) as exc:
        st.error(f"This matrix cannot be used: {exc}")
    if matrix is not None:
        set_matrix(matrix)
        st.caption(f"Current matrix: {rcl.matrix_caption(matrix)}")

    # --- save / load ----------------------------------------------------------------------------
    s1, s2 = st.columns(2)
    if matrix is not None:
        s1.download_button("Save matrix (JSON)", matrix.to_json(), file_name=f"severity_{taxonomy.name}.json",
                           mime="application/json")
    s2.file_uploader("Load matrix (JSON)", type=["json"], key="matrix_upload", on_change=_load_uploaded)
    if st.session_state.get("matrix_load_error"):
        st.error(f"That file is not a usable severity matrix: {st.session_state['matrix_load_error']}")

with right:
    shown = matrix if matrix is not None else start
    fig = go.Figure(go.Heatmap(
        z=np.asarray(shown.values), x=list(taxonomy.classes), y=list(taxonomy.classes),
        text=[[f"{v:g}" for v in row] for row in np.asarray(shown.values)], texttemplate="%{text}",
        colorscale="Oranges", colorbar={"title": "penalty"},
        hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>",
    ))
    fig.update_layout(title="Severity heatmap", xaxis_title="predicted", yaxis_title="true", height=380,
                      yaxis_autorange="reversed", margin={"t": 40, "b": 10, "l": 10, "r": 10})
    st.plotly_chart(fig, width="stretch")

    st.subheader("Selected run, re-decided under this matrix")
    if run is None:
        st.info("No finished run to re-decide yet: train one on **Home** or **Train**, then come back.")
    elif matrix is None:
        st.warning("Fix the matrix to see the run re-decided.")
    elif run.taxonomy.classes != taxonomy.classes:
        st.warning(f"The run {run.label!r} has other classes ({', '.join(run.taxonomy.classes)}); choose "
                   "**selected run** as the classes to re-decide it.")
    else:
        redecide = True
        if run.cost_sensitive:
            st.info(f"This run was trained with a cost-sensitive loss (**{run.train['loss']}**): its probabilities "
                    "already carry the costs, so by default it is shown under its own default decision. Deciding "
                    "under this matrix again double-counts the costs.")
            redecide = st.toggle("Re-decide under this matrix anyway", value=False, key="matrix_redecide_anyway")
        with guard("re-deciding the run"):
            pred = run.predictions("test")
            decision_matrix, rule = (matrix, "Bayes minimum-risk under this matrix") if redecide else \
                rcl.default_matrix(run.metrics, run.matrix)
            result = rcl.redecide(run.calibrated_probs("test"), pred["labels"], run.taxonomy, decision_matrix)
            stored = run.metrics.get("test", {})
            missed, malignant = rcl.missed_malignant(result.confusion, run.taxonomy)
            st.caption(f"{run.label} · {result.n} test images · {rule}, compared with the model's argmax · "
                       f"{rcl.count_of(missed, malignant)} malignant cases called benign")
            m1, m2, m3 = st.columns(3)
            delta_cer = None if result.cer is None or stored.get("cer") is None else result.cer - stored["cer"]
            m1.metric("CER", rcl.pct(result.cer), None if delta_cer is None else rcl.points(delta_cer),
                      delta_color="inverse", help="Critical Error Rate: malignant cases called benign (lower is safer)")
            m2.metric("F1-macro", rcl.num(result.f1_macro),
                      None if stored.get("f1_macro") is None else rcl.signed(result.f1_macro - stored["f1_macro"]))
            m3.metric("Accuracy", rcl.pct(result.accuracy))
            rows = rcl.tier_comparison(result.tiers, stored.get("tiers", {}))
            tiers = pd.DataFrame({"tier": [r["tier"] for r in rows], "re-decided": [r["count"] for r in rows],
                                  "argmax": [r["reference"] for r in rows]})
            bar = go.Figure()
            bar.add_bar(y=tiers["tier"], x=tiers["argmax"], name="argmax (as trained)", orientation="h",
                        marker_color="#BBBBBB")
            bar.add_bar(y=tiers["tier"], x=tiers["re-decided"], name="re-decided", orientation="h",
                        marker_color=[TIER_COLOURS[r["key"]] for r in rows])
            bar.update_layout(barmode="group", height=240, margin={"t": 10, "b": 10, "l": 10, "r": 10},
                              legend={"orientation": "h"})
            st.plotly_chart(bar, width="stretch")
            st.dataframe(tiers, hide_index=True, width="stretch")

disclaimer()
