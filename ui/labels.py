"""The Label quality page's figures, gallery and cached look-ups: layout only, every number from ``rcl``.

The look-ups are keyed by the run folder and its creation stamp, so a run trained again (same
folder, new ``created``) is never answered from the old cache.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import rcl
from ui.charts import error_bar
from ui.common import LOSS_COLOURS, get_run

DASHES = {"miss": "solid", "symmetric": "dash", "alarm": "dot"}
GALLERY_COLUMNS = 6


def _key(run: rcl.Run) -> tuple[str, str]:
    return str(run.path), str(run.config.get("created"))


@st.cache_data(show_spinner="Ranking the run's labels…", max_entries=16)
def _suspects(path: str, created: str) -> dict:
    return rcl.run_suspects(get_run(path))


def run_suspects(run: rcl.Run) -> dict:
    """:func:`rcl.run_suspects`, computed once per run."""
    return _suspects(*_key(run))


@st.cache_data(show_spinner="Reading the dataset's metadata…", max_entries=16)
def _columns(path: str, created: str) -> list[str]:
    return rcl.metadata_columns(get_run(path))


def metadata_columns(run: rcl.Run) -> list[str]:
    return _columns(*_key(run))


@st.cache_data(show_spinner="Bootstrapping the subgroups…", max_entries=32)
def _subgroups(path: str, created: str, by: str) -> dict:
    return rcl.run_subgroups(get_run(path), by)


def run_subgroups(run: rcl.Run, by: str) -> dict:
    return _subgroups(*_key(run), by)


@st.cache_data(show_spinner="Counting the suspects by group…", max_entries=32)
def _suspect_rates(path: str, created: str, by: str) -> dict:
    return rcl.run_suspect_rates(get_run(path), by)


def run_suspect_rates(run: rcl.Run, by: str) -> dict:
    return _suspect_rates(*_key(run), by)


@st.cache_data(show_spinner=False, max_entries=64)
def _illusion(path: str, created: str, rule: str, seed: int) -> dict:
    return rcl.illusion_of_accuracy(get_run(path), rule, seed)


def illusion(run: rcl.Run, rule: str, seed: int) -> dict:
    return _illusion(*_key(run), rule, seed)


def noise_figure(points: list[dict]) -> go.Figure:
    """CER (left) and F1-macro (right) against the training label-noise rate: one line per loss and
    noise kind (colour: loss, dash: kind), error bars from the points' intervals."""
    frame = pd.DataFrame(points)
    numbers = ["cer", "cer_low", "cer_high", "f1_macro", "f1_low", "f1_high"]
    frame[numbers] = frame[numbers].apply(pd.to_numeric, errors="coerce")  # a run with no stored interval: None
    losses = sorted(frame["loss"].unique())
    fig = make_subplots(rows=1, cols=2, subplot_titles=("CER (lower is safer)", "F1-macro (higher is better)"))
    for (loss, kind), line in frame.groupby(["loss", "kind"], sort=True):
        line = line.sort_values("rate")
        style = {"color": LOSS_COLOURS[losses.index(loss) % len(LOSS_COLOURS)], "dash": DASHES.get(kind, "dashdot")}
        hover = list(zip(line["runs"], line["interval"]))
        for col, (metric, low, high) in enumerate((("cer", "cer_low", "cer_high"), ("f1_macro", "f1_low", "f1_high")), 1):
            fig.add_scatter(x=line["rate"].tolist(), y=line[metric].tolist(), mode="lines+markers", name=f"{loss} · {kind}",
                            legendgroup=f"{loss} · {kind}", showlegend=col == 1, line=style,
                            error_y=error_bar(line, metric, low, high), customdata=hover,
                            hovertemplate=f"{loss} · {kind} noise %{{x:.0%}}<br>{metric} %{{y:.3f}} · %{{customdata[0]}} "
                                          "run(s), bars: %{customdata[1]}<extra></extra>", row=1, col=col)
    fig.update_xaxes(title_text="share of training labels flipped (of those the kind may flip)", tickformat=".0%")
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_layout(height=420, legend={"title": "loss · noise kind"}, margin={"t": 30, "b": 10, "l": 10, "r": 10})
    return fig


def suspect_grid(rows: list[dict]) -> None:
    """Thumbnails of the suspects in review order: given → suggested label, score, a badge on a miss."""
    cols = st.columns(GALLERY_COLUMNS)
    for n, row in enumerate(rows):
        with cols[n % GALLERY_COLUMNS]:
            try:
                st.image(rcl.thumbnail(row["path"]), width="stretch")
            except ValueError as exc:  # one unreadable file never hides the rest of the gallery
                st.caption(str(exc))
            st.markdown((":red-badge[:material/priority_high: miss] " if row["is_miss"] else "")
                        + rcl.suspect_caption(row))
