"""Shared widgets and state for the app's pages (layout only: every number comes from ``rcl``)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import streamlit as st

from rcl import paths
from rcl.errors import debug_enabled, explain, user_message
from rcl.report import folder_signature, run_rows
from rcl.runs import Run, load_run
from rcl.severity import PROPOSED_ALPHA, PROPOSED_BETA, SeverityMatrix
from rcl.taxonomy import Taxonomy, preset

try:  # one wording everywhere: the library's
    from rcl.triage import DISCLAIMER
except ImportError:  # the inference stack failed to import; the rest of the app still works
    DISCLAIMER = "Research tool, not a diagnostic device: never use it to make a clinical decision."
DEFAULT_TAXONOMY = "isic2018"  # the synthetic default data set's classes

# Okabe-Ito, colour-blind safe: correct, visual ambiguity, Type I, Type II.
TIER_COLOURS = {
    "correct": "#009E73",
    "visual_ambiguity": "#56B4E9",
    "type_1": "#E69F00",
    "type_2": "#D55E00",
}
LOSS_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

log = logging.getLogger("rcl.app")


def page(title: str, icon: str = "⚕️") -> None:
    """Page config and title; every page starts with this."""
    with contextlib.suppress(st.errors.StreamlitAPIException):
        st.set_page_config(page_title=f"{title} · RCL explorer", page_icon=icon, layout="wide")
    st.title(title)


def disclaimer() -> None:
    st.caption(f"⚠️ {DISCLAIMER}")


@contextlib.contextmanager
def guard(what: str = ""):
    """Show any failure inside the block as the library's one plain line, never a traceback box."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the app's error boundary: a user never sees a traceback
        if debug_enabled():
            raise
        message = explain(exc)
        if user_message(exc) is None:
            log.exception("unexpected error in %s", what or "action")
        else:
            log.warning("%s failed: %r", what or "action", exc)
        st.error(f"{what + ': ' if what else ''}{message}")


# --- runs ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def _rows_cached(root: str, signature: tuple) -> list[dict]:
    return run_rows(root)


def finished_rows() -> list[dict]:
    """Summaries of every finished run in the data directory, cached until a folder changes."""
    root = paths.home()
    return _rows_cached(str(root), folder_signature(root))


@st.cache_resource(show_spinner=False, max_entries=32)
def _load_run_cached(path: str, mtime: int) -> Run:
    return load_run(path)


def get_run(path: str | Path) -> Run:
    path = Path(path)
    try:
        mtime = (path / "metrics.json").stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _load_run_cached(str(path), mtime)


def run_picker(label: str = "Run", key: str = "run_picker", sidebar: bool = True) -> Run | None:
    """The selected finished run (shared across pages), or None when there is none."""
    rows = finished_rows()
    where = st.sidebar if sidebar else st
    if not rows:
        return None
    ids = [r["id"] for r in rows]
    labels = {r["id"]: f"{r['label']} · {r['dataset']} · {r['id'][:15]}" for r in rows}
    current = st.session_state.get("selected_run")
    if current not in ids:
        current = ids[0]
    choice = where.selectbox(label, ids, index=ids.index(current), format_func=labels.get, key=key)
    st.session_state["selected_run"] = choice
    path = next(r["path"] for r in rows if r["id"] == choice)
    try:
        return get_run(path)
    except ValueError as exc:
        st.error(f"run {choice} cannot be read: {exc}")
        return None


def no_runs_message(what: str = "this page") -> None:
    st.info(
        f"No finished runs yet, so {what} has nothing to show. On **Home**, press *Train a demo model* "
        "(a minute on a laptop CPU), or launch one on **Train**, or from a terminal: "
        "`rcl train --data synthetic --epochs 3`."
    )


# --- the current severity matrix ----------------------------------------------------------------


def default_taxonomy() -> Taxonomy:
    return preset(DEFAULT_TAXONOMY)


def current_taxonomy() -> Taxonomy:
    taxonomy = st.session_state.get("taxonomy")
    return taxonomy if isinstance(taxonomy, Taxonomy) else default_taxonomy()


def current_matrix(taxonomy: Taxonomy | None = None) -> SeverityMatrix:
    """The matrix set on the Severity matrix page, fitted to ``taxonomy`` when given.

    When the stored matrix belongs to other classes, the same α/β are applied to ``taxonomy``
    (per-cell edits cannot carry over to other classes).
    """
    matrix = st.session_state.get("matrix")
    if not isinstance(matrix, SeverityMatrix):
        matrix = SeverityMatrix.from_penalties(current_taxonomy(), PROPOSED_ALPHA, PROPOSED_BETA)
    if taxonomy is not None and matrix.taxonomy.classes != taxonomy.classes:
        alpha = matrix.alpha if matrix.alpha is not None else PROPOSED_ALPHA
        beta = matrix.beta if matrix.beta is not None else PROPOSED_BETA
        return SeverityMatrix.from_penalties(taxonomy, alpha, beta)
    return matrix


def set_matrix(matrix: SeverityMatrix) -> None:
    st.session_state["matrix"] = matrix
    st.session_state["taxonomy"] = matrix.taxonomy


def matrix_caption(matrix: SeverityMatrix) -> str:
    if matrix.is_standard:
        return f"α = {matrix.alpha:g} (false alarm), β = {matrix.beta:g} (miss) on {matrix.taxonomy.name}"
    return f"custom per-cell matrix on {matrix.taxonomy.name}"


def fmt_pct(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
