"""Severity matrix: build M from a taxonomy, α and β; edit cells; see the selected run re-decided live."""

from __future__ import annotations

import streamlit as st

import rcl
from ui.common import disclaimer, page, run_picker
from ui.severity import (
    cell_editor,
    cost_panel,
    penalty_sliders,
    redecided_panel,
    save_and_load,
    taxonomy_picker,
)

page("Severity matrix")
st.write(
    "The matrix **M[true, predicted]** says how bad each mistake is: mixing up two diagnoses of the same kind "
    "costs 1, a **false alarm** (benign called malignant) costs **α**, a **missed malignancy** (malignant called "
    "benign) costs **β**. Train and Triage use the matrix set here."
)
run = run_picker()

left, right = st.columns([1, 1], gap="large")
with left:
    taxonomy = taxonomy_picker(run)
    if taxonomy is None:
        st.stop()
    start, alpha, beta = penalty_sliders(taxonomy)
    warning_box = st.container()  # the matrix's warnings, beside the sliders that cause them

matrix = cell_editor(start, alpha, beta)  # full width: every class column fits
if matrix is not None:
    for warning in rcl.penalty_warnings(matrix.values, taxonomy):
        warning_box.warning(warning, icon=":material/warning:")
save_and_load(matrix, taxonomy)
with right:
    cost_panel(matrix)

st.subheader("Selected run, re-decided under this matrix")
redecided_panel(run, matrix, taxonomy)
disclaimer()
