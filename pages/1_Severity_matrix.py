"""Severity matrix: build M from a taxonomy, α and β; edit cells; see the selected run re-decided live."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import rcl
from ui.common import (
    TIER_COLOURS,
    current_matrix,
    disclaimer,
    guard,
    page,
    run_picker,
    set_matrix,
    set_matrix_problem,
)

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
    warning_box = st.container()  # the matrix's warnings, beside the sliders that cause them

# --- per-cell editor (full width: every class column fits) ---------------------------------------
st.markdown("**Per-cell edits** (rows: true class, columns: predicted class). Type plain numbers (2.5, 1e3); "
            "moving a slider rebuilds the matrix from α and β.")
frame = pd.DataFrame([[f"{v:g}" for v in row] for row in np.asarray(start.values)], index=list(taxonomy.classes),
                     columns=list(taxonomy.classes))
digest = hashlib.sha1(np.ascontiguousarray(start.values).tobytes() + "|".join(taxonomy.classes).encode())
editor_key = f"matrix_editor_{digest.hexdigest()[:12]}"
st.session_state["matrix_editor_key"] = editor_key  # tests and scripts find the live editor by this
edited = st.data_editor(
    frame, key=editor_key, width="stretch",
    column_config={c: st.column_config.TextColumn(c, width="small") for c in taxonomy.classes},
)
matrix: rcl.SeverityMatrix | None = None
try:  # the cells as typed: "1e9" is 10⁹, "1,5" is refused, never guessed
    matrix = rcl.SeverityMatrix(taxonomy, rcl.parse_cells(edited.to_numpy(), taxonomy), alpha, beta)
except (ValueError, TypeError) as exc:
    set_matrix_problem(str(exc))
    st.error(f"This matrix cannot be used: {exc}. Train and Triage are blocked until it is fixed.")
if matrix is not None:
    set_matrix(matrix)
    st.caption(f"Current matrix: {rcl.matrix_caption(matrix)}")
    for warning in rcl.penalty_warnings(matrix.values, taxonomy):
        warning_box.warning(warning, icon=":material/warning:")

# --- save / load --------------------------------------------------------------------------------
s1, s2 = st.columns(2)
s1.download_button("Save matrix (JSON)", matrix.to_json() if matrix is not None else "",
                   file_name=f"severity_{taxonomy.name}.json", mime="application/json", disabled=matrix is None,
                   help=None if matrix is not None else "Saving is off while a cell is invalid (see the message above).")
if matrix is None:
    s1.caption("Save is off: fix the invalid cell first.")
s2.file_uploader("Load matrix (JSON)", type=["json"], key="matrix_upload", on_change=_load_uploaded)
if st.session_state.get("matrix_load_error"):
    st.error(f"That file is not a usable severity matrix: {st.session_state['matrix_load_error']}")

with right:
    if matrix is None:
        st.warning("No heatmap while a cell is invalid: it would show a matrix that is not the one typed.")
    else:
        costs = rcl.cost_matrix(matrix)
        fig = go.Figure(go.Heatmap(
            z=costs, x=list(taxonomy.classes), y=list(taxonomy.classes),
            text=[[f"{v:g}" for v in row] for row in costs], texttemplate="%{text}",
            colorscale="Oranges", colorbar={"title": "cost"},
            hovertemplate="true %{y} → predicted %{x}: cost %{z}<extra></extra>",
        ))
        fig.update_layout(title="Cost of each answer when deciding", xaxis_title="predicted", yaxis_title="true",
                          height=380, yaxis_autorange="reversed", margin={"t": 40, "b": 10, "l": 10, "r": 10})
        st.plotly_chart(fig, width="stretch")
        st.caption("A correct answer costs nothing when deciding, so the diagonal shows 0; the editor's diagonal "
                   "value is the weight the RCL loss gives a correct answer in training.")

st.subheader("Selected run, re-decided under this matrix")
if run is None:
    st.info("No finished run to re-decide yet: train one on **Home** or **Train**, then come back.")
elif matrix is None:
    st.warning("Fix the matrix to see the run re-decided.")
elif run.taxonomy.classes != taxonomy.classes:
    st.warning(f"The run {run.label!r} has other classes ({', '.join(run.taxonomy.classes)}); choose "
               "**selected run** as the classes to re-decide it.")
else:
    own_default = False
    if run.cost_sensitive:
        st.info(f"This run was trained with a cost-sensitive loss (**{run.train['loss']}**): its probabilities "
                "already carry the costs, so by default it is shown under its own default decision. Deciding "
                "under this matrix again double-counts the costs.")
        own_default = not st.toggle("Re-decide under this matrix anyway", value=False, key="matrix_redecide_anyway")
    with guard("re-deciding the run"):
        result = rcl.redecide_run(run, matrix, own_default=own_default)
        argmax = result["argmax"]
        st.caption(f"{run.label} ({rcl.initialisation(run.train)}) · {rcl.plural(result['n'], 'test image')} · "
                   f"{result['rule']}, compared with the "
                   f"{argmax['rule']}")
        m1, m2, m3 = st.columns(3)
        delta_cer = None if result["cer"] is None or argmax["cer"] is None else result["cer"] - argmax["cer"]
        m1.metric("CER", rcl.pct(result["cer"]), None if delta_cer is None else rcl.points(delta_cer),
                  delta_color="inverse", help="Critical Error Rate: malignant cases called benign (lower is safer)")
        m1.caption(f"{rcl.count_of(result['missed'], result['malignant'])} malignant cases missed"
                   + ("" if argmax["missed"] is None else f" (argmax: {argmax['missed']})"))
        m2.metric("F1-macro", rcl.num(result["f1_macro"]),
                  None if argmax["f1_macro"] is None else rcl.signed(result["f1_macro"] - argmax["f1_macro"]))
        m2.caption(f"balance over all {len(run.taxonomy.classes)} classes")
        m3.metric("Accuracy", rcl.pct(result["accuracy"]))
        m3.caption(f"of {rcl.plural(result['n'], 'test image')}")
        rows = result["tiers"]
        tiers = pd.DataFrame({"tier": [r["tier"] for r in rows], "re-decided": [r["count"] for r in rows],
                              "argmax": [r["reference"] for r in rows]})
        bar = go.Figure()
        bar.add_bar(y=tiers["tier"], x=tiers["argmax"], name="argmax (as trained)", orientation="h",
                    marker_color="#BBBBBB", text=tiers["argmax"], textposition="outside")
        bar.add_bar(y=tiers["tier"], x=tiers["re-decided"], name="re-decided", orientation="h",
                    marker_color=[TIER_COLOURS[r["key"]] for r in rows], text=tiers["re-decided"],
                    textposition="outside")
        bar.update_layout(barmode="group", height=260, xaxis_title=f"test images (of {result['n']})",
                          margin={"t": 40, "b": 10, "l": 10, "r": 30},
                          legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
                          yaxis={"automargin": True, "autorange": "reversed"})
        c1, c2 = st.columns([3, 2])
        c1.plotly_chart(bar, width="stretch")
        c2.dataframe(tiers, hide_index=True, width="stretch")

disclaimer()
