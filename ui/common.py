"""Shared widgets and state for the app's pages (layout only: every number comes from ``rcl``)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import streamlit as st

import rcl
from ui.state import get_param, set_param

DEFAULT_TAXONOMY = "isic2018"  # the synthetic default data set's classes

TIER_COLOURS = rcl.TIER_COLOURS  # Okabe-Ito, colour-blind safe; the run card's charts use the same
LOSS_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

log = logging.getLogger("rcl.app")


def page(title: str, icon: str = ":material/health_and_safety:") -> None:
    """Page config and title; every page starts with this."""
    with contextlib.suppress(st.errors.StreamlitAPIException):
        st.set_page_config(page_title=f"{title} · RCL explorer", page_icon=icon, layout="wide")
    st.title(title)


def disclaimer() -> None:
    st.caption(f":material/warning: {rcl.DISCLAIMER}")


@contextlib.contextmanager
def guard(what: str = ""):
    """Show any failure inside the block as the library's one plain line, never a traceback box."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the app's error boundary: a user never sees a traceback
        if rcl.debug_enabled():
            raise
        message = rcl.explain_error(exc)
        if rcl.user_message(exc) is None:
            log.exception("unexpected error in %s", what or "action")
        else:
            log.warning("%s failed: %r", what or "action", exc)
        st.error(f"{what + ': ' if what else ''}{message}")


# --- runs ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def _rows_cached(root: str, signature: tuple) -> list[dict]:
    return rcl.run_rows(root)


def finished_rows() -> list[dict]:
    """Summaries of every finished run in the data directory, cached until a folder changes."""
    root = rcl.home()
    return _rows_cached(str(root), rcl.folder_signature(root))


@st.cache_resource(show_spinner=False, max_entries=32)
def _load_run_cached(path: str, mtime: int) -> rcl.Run:
    return rcl.load_run(path)


def run_version(path: str | Path) -> int:
    """A cache key part that changes when a run folder is rewritten (its metrics.json's mtime)."""
    try:
        return (Path(path) / "metrics.json").stat().st_mtime_ns
    except OSError:
        return 0


def get_run(path: str | Path) -> rcl.Run:
    return _load_run_cached(str(path), run_version(path))


def selected_run_id(ids: list[str]) -> str | None:
    """The run the user chose (this session's, else the URL's ``?run=``), else the newest of ``ids``.

    Kept once chosen: a run finishing later never replaces it; only a choice in the picker does.
    """
    if not ids:
        return None
    current = st.session_state.get("selected_run") or get_param("run")
    if current not in ids:
        current = ids[0]
    select_run(current)
    return current


def select_run(run_id: str) -> None:
    st.session_state["selected_run"] = run_id
    set_param("run", run_id)


def run_picker(label: str = "Run", key: str = "run_picker", sidebar: bool = True) -> rcl.Run | None:
    """The selected finished run (shared across pages and kept in the URL), or None when there is none."""
    rows = finished_rows()
    where = st.sidebar if sidebar else st
    if not rows:
        return None
    ids = [r["id"] for r in rows]
    labels = {r["id"]: f"{r['label']} · {r['dataset']} · {r['id'][:15]}" for r in rows}
    current = selected_run_id(ids)
    choice = where.selectbox(label, ids, index=ids.index(current), format_func=labels.get, key=key,
                             help="The run every page shows; its full name is written below.")
    where.caption(labels[choice])  # the full name, wrapped: the box above cuts long names
    select_run(choice)
    path = next(r["path"] for r in rows if r["id"] == choice)
    try:
        return get_run(path)
    except ValueError as exc:
        st.error(f"run {choice} cannot be read: {exc}")
        return None


def require_run(what: str) -> rcl.Run:
    """The selected run (sidebar picker); with none, say how to get one and stop the page."""
    run = run_picker()
    if run is None:
        no_runs_message(what)
        disclaimer()
        st.stop()
    return run


@st.cache_data(show_spinner=False, max_entries=8)
def _split_rows_cached(root: str, signature: tuple) -> list[dict]:
    return rcl.with_splits(rcl.run_rows(root))


def split_rows() -> list[dict]:
    """``finished_rows`` with each run's test split fingerprint (what makes runs comparable)."""
    root = rcl.home()
    return _split_rows_cached(str(root), rcl.folder_signature(root))


def no_runs_message(what: str = "this page") -> None:
    st.info(
        f"No finished runs yet, so {what} has nothing to show. On **Home**, press *Train a demo model* "
        "(a minute on a laptop CPU), or launch one on **Train**, or from a terminal: "
        "`rcl train --data synthetic --epochs 3`."
    )


# --- the current severity matrix ----------------------------------------------------------------


def default_taxonomy() -> rcl.Taxonomy:
    return rcl.preset(DEFAULT_TAXONOMY)


def current_taxonomy() -> rcl.Taxonomy:
    taxonomy = st.session_state.get("taxonomy")
    if isinstance(taxonomy, rcl.Taxonomy):
        return taxonomy
    name = get_param("taxonomy", None)
    return rcl.PRESETS[name] if name in rcl.PRESETS else default_taxonomy()


def _matrix_from_url(taxonomy: rcl.Taxonomy) -> rcl.SeverityMatrix | None:
    """The matrix the URL keeps (α, β and edited cells), for a new session after a refresh."""
    alpha, beta = get_param("alpha", None, float), get_param("beta", None, float)
    cells = get_param("cells", None, json.loads)
    if alpha is None and beta is None and cells is None:
        return None
    alpha = rcl.SeverityMatrix.from_penalties(taxonomy).alpha if alpha is None else alpha
    beta = rcl.SeverityMatrix.from_penalties(taxonomy).beta if beta is None else beta
    try:
        base = rcl.SeverityMatrix.from_penalties(taxonomy, alpha, beta)
        return base if cells is None else base.with_values(cells)
    except (ValueError, TypeError):  # a hand-edited URL: ignore it
        return None


def current_matrix(taxonomy: rcl.Taxonomy | None = None) -> rcl.SeverityMatrix:
    """The matrix set on the Severity matrix page (kept in the URL, so a refresh keeps it; the
    paper's proposed one until then), for ``taxonomy`` when given (see
    :meth:`rcl.SeverityMatrix.for_taxonomy`)."""
    matrix = st.session_state.get("matrix")
    if not isinstance(matrix, rcl.SeverityMatrix):
        matrix = _matrix_from_url(current_taxonomy()) or rcl.SeverityMatrix.from_penalties(current_taxonomy())
        st.session_state["matrix"] = matrix
    else:
        remember_matrix(matrix)  # the URL is cleared on a page switch: write it back
    return matrix if taxonomy is None else matrix.for_taxonomy(taxonomy)


def remember_matrix(matrix: rcl.SeverityMatrix) -> None:
    """Keep α, β and (when edited) the cells in the URL."""
    set_param("taxonomy", matrix.taxonomy.name if matrix.taxonomy.name in rcl.PRESETS else None)
    set_param("alpha", matrix.alpha, "{:g}".format)
    set_param("beta", matrix.beta, "{:g}".format)
    set_param("cells", None if matrix.is_standard else json.dumps(matrix.values.tolist()))


def set_matrix(matrix: rcl.SeverityMatrix) -> None:
    st.session_state["matrix"] = matrix
    st.session_state["taxonomy"] = matrix.taxonomy
    st.session_state.pop("matrix_problem", None)
    remember_matrix(matrix)


def set_matrix_problem(reason: str) -> None:
    """The matrix being edited is invalid: Train and Triage refuse to run until it is fixed."""
    st.session_state["matrix_problem"] = reason


def require_valid_matrix(what: str) -> None:
    """Stop the page with a visible reason while the Severity page's matrix is invalid."""
    reason = st.session_state.get("matrix_problem")
    if reason:
        st.error(f"{what} is blocked: the matrix on the **Severity matrix** page cannot be used ({reason}). "
                 "Fix it there; until then nothing runs with the last valid matrix.")
        st.stop()
