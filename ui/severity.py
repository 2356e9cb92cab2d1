"""The Severity matrix page's parts: the classes, the α/β sliders, the per-cell editor, save/load,
the decision-cost heatmap and the selected run re-decided. Layout and session state only: the
matrix, its checks and every figure come from ``rcl``; the matrix set here is the one Train and
Triage use (``ui.common.set_matrix``), kept in the URL.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

import rcl
from ui.charts import cost_heatmap, tier_bars
from ui.common import current_matrix, guard, set_matrix, set_matrix_problem

SELECTED_RUN, CUSTOM, FROM_FILE = "selected run", "custom", "from file"


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
    st.session_state["taxonomy_choice"] = FROM_FILE
    st.session_state["loaded_taxonomy"] = loaded.taxonomy
    if loaded.alpha is not None:
        st.session_state["alpha_slider"] = float(loaded.alpha)
    if loaded.beta is not None:
        st.session_state["beta_slider"] = float(loaded.beta)


def _choice_text(choice: str) -> str:
    if choice in rcl.PRESETS:
        taxonomy = rcl.PRESETS[choice]
        return f"{choice} (preset: {len(taxonomy.classes)} diagnoses, malignant: {', '.join(taxonomy.malignant)})"
    return {SELECTED_RUN: "the selected run's diagnoses", CUSTOM: "custom: type your own diagnoses",
            FROM_FILE: "from the loaded file"}.get(choice, choice)


def taxonomy_picker(run: rcl.Run | None) -> rcl.Taxonomy | None:
    """The diagnoses (classes) the matrix is for, and which are malignant; None while a custom list is invalid."""
    options = ([SELECTED_RUN] if run is not None else []) + list(rcl.PRESETS) + [CUSTOM]
    if "loaded_taxonomy" in st.session_state:
        options.append(FROM_FILE)
    stored = current_matrix()
    if st.session_state.get("taxonomy_choice") not in options:
        default = SELECTED_RUN if run is not None and run.taxonomy.classes == stored.taxonomy.classes else None
        if default is None:
            default = stored.taxonomy.name if stored.taxonomy.name in rcl.PRESETS else options[0]
        st.session_state["taxonomy_choice"] = default
    choice = st.selectbox("Diagnoses (classes) and which are malignant", options, key="taxonomy_choice",
                          format_func=_choice_text,
                          help="A preset is a built-in list of a public dataset's diagnoses with the malignant ones "
                               "marked (isic2018 is the HAM10000 skin-lesion set). Choose the selected run's "
                               "diagnoses to see that run re-decided below.")
    taxonomy = None
    if choice == SELECTED_RUN and run is not None:
        taxonomy = run.taxonomy
    elif choice == FROM_FILE:
        taxonomy = st.session_state["loaded_taxonomy"]
    elif choice == CUSTOM:
        names = st.text_input("Diagnoses, comma-separated", value="benign_a, benign_b, cancer", key="custom_classes")
        classes = [n.strip() for n in names.split(",") if n.strip()]
        malignant = st.multiselect("Which are malignant?", classes, default=classes[-1:], key="custom_malignant")
        with guard("custom taxonomy"):
            taxonomy = rcl.Taxonomy.from_malignant(classes, malignant, name="custom")
    else:
        taxonomy = rcl.PRESETS[choice]
    if taxonomy is not None:
        st.caption(f"Malignant: {', '.join(taxonomy.malignant) or 'none'} · "
                   f"benign: {', '.join(taxonomy.benign) or 'none'}")
    return taxonomy


def penalty_sliders(taxonomy: rcl.Taxonomy) -> tuple[rcl.SeverityMatrix, float, float]:
    """α and β, in a clinician's question each; the matrix they give (keeping per-cell edits while unchanged)."""
    base = current_matrix(taxonomy)
    st.session_state.setdefault("alpha_slider", float(base.penalties[0]))
    st.session_state.setdefault("beta_slider", float(base.penalties[1]))
    c1, c2 = st.columns(2)
    alpha = c1.slider("α · cost of a false alarm (benign called malignant)", 0.0, 50.0, step=0.5, key="alpha_slider",
                      help="How much worse is a false alarm (an unneeded referral or biopsy) than mixing up two "
                           "diagnoses of the same kind, which costs 1? The paper uses 5.")
    beta = c2.slider("β · cost of a missed malignancy (malignant called benign)", 0.0, 50.0, step=0.5,
                     key="beta_slider",
                     help="How much worse is a missed malignancy than a false alarm? A miss sends a patient with "
                          "cancer home, so keep β well above α: the paper uses 20, four times its α.")
    if base.alpha == alpha and base.beta == beta:
        return base, alpha, beta
    return rcl.SeverityMatrix.from_penalties(taxonomy, alpha, beta), alpha, beta


def cell_editor(start: rcl.SeverityMatrix, alpha: float, beta: float) -> rcl.SeverityMatrix | None:
    """The per-cell editor over ``start``; the matrix as typed (set for Train and Triage), or None
    with a visible reason while a cell is invalid (Train and Triage are then blocked)."""
    taxonomy = start.taxonomy
    st.markdown("**Per-cell edits** (rows: true diagnosis, columns: the model's answer). Type plain numbers "
                "(2.5, 1e3); moving a slider rebuilds the matrix from α and β.")
    frame = pd.DataFrame([[f"{v:g}" for v in row] for row in np.asarray(start.values)],
                         index=list(taxonomy.classes), columns=list(taxonomy.classes))
    digest = hashlib.sha1(np.ascontiguousarray(start.values).tobytes() + "|".join(taxonomy.classes).encode())
    editor_key = f"matrix_editor_{digest.hexdigest()[:12]}"
    st.session_state["matrix_editor_key"] = editor_key  # tests and scripts find the live editor by this
    edited = st.data_editor(frame, key=editor_key, width="stretch",
                            column_config={c: st.column_config.TextColumn(c, width="small") for c in taxonomy.classes})
    try:  # the cells as typed: "1e9" is 10⁹, "1,5" is refused, never guessed
        matrix = rcl.SeverityMatrix(taxonomy, rcl.parse_cells(edited.to_numpy(), taxonomy), alpha, beta)
    except (ValueError, TypeError) as exc:
        set_matrix_problem(str(exc))
        st.error(f"This matrix cannot be used: {exc}. Train and Triage are blocked until it is fixed.")
        return None
    set_matrix(matrix)
    st.caption(f"Current matrix: {rcl.matrix_caption(matrix)}")
    return matrix


def save_and_load(matrix: rcl.SeverityMatrix | None, taxonomy: rcl.Taxonomy) -> None:
    """Download the matrix as JSON (off while a cell is invalid, saying so); load one."""
    s1, s2 = st.columns(2)
    s1.download_button("Save matrix (JSON)", matrix.to_json() if matrix is not None else "",
                       file_name=f"severity_{taxonomy.name}.json", mime="application/json", disabled=matrix is None,
                       help=None if matrix is not None else "Saving is off while a cell is invalid (see above).")
    if matrix is None:
        s1.caption("Save is off: fix the invalid cell first.")
    s2.file_uploader("Load matrix (JSON)", type=["json"], key="matrix_upload", on_change=_load_uploaded)
    if st.session_state.get("matrix_load_error"):
        st.error(f"That file is not a usable severity matrix: {st.session_state['matrix_load_error']}")


def cost_panel(matrix: rcl.SeverityMatrix | None) -> None:
    """The heatmap of decision costs, or why there is none."""
    if matrix is None:
        st.warning("No heatmap while a cell is invalid: it would show a matrix that is not the one typed.")
        return
    st.plotly_chart(cost_heatmap(matrix), width="stretch")
    st.caption("A correct answer costs nothing when deciding, so the diagonal shows 0; the editor's diagonal "
               "value is the weight the RCL loss gives a correct answer in training.")


def redecided_panel(run: rcl.Run | None, matrix: rcl.SeverityMatrix | None, taxonomy: rcl.Taxonomy) -> None:
    """The selected run's test split decided under ``matrix``, against its argmax decision."""
    if run is None:
        st.info("No finished run to re-decide yet: train one on **Home** or **Train**, then come back.")
        return
    if matrix is None:
        st.warning("Fix the matrix to see the run re-decided.")
        return
    if run.taxonomy.classes != taxonomy.classes:
        st.warning(f"The run {run.label!r} has other classes ({', '.join(run.taxonomy.classes)}); choose "
                   f"**{_choice_text(SELECTED_RUN)}** as the diagnoses to re-decide it.")
        return
    own_default = False
    if run.cost_sensitive:
        st.info(f"This run was trained with a cost-sensitive loss (**{run.train['loss']}**): its probabilities "
                "already carry the costs, so by default it is shown under its own default decision. Deciding "
                "under this matrix again double-counts the costs.")
        own_default = not st.toggle("Re-decide under this matrix anyway", value=False, key="matrix_redecide_anyway")
    with guard("re-deciding the run"):
        result = rcl.redecide_run(run, matrix, own_default=own_default)
        argmax = result["argmax"]
        st.caption(f"{run.label} ({rcl.start_text(run.train)}) · {rcl.plural(result['n'], 'test image')} · "
                   f"{result['rule']}, compared with the {argmax['rule']}")
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
        c1, c2 = st.columns([3, 2])
        c1.plotly_chart(tier_bars(rows, result["n"]), width="stretch")
        c2.dataframe(pd.DataFrame({"tier": [r["tier"] for r in rows], "re-decided": [r["count"] for r in rows],
                                   "argmax": [r["reference"] for r in rows]}), hide_index=True, width="stretch")
