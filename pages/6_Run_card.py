"""Run card: a one-page summary of a run for stakeholders, as Markdown and HTML downloads."""

from __future__ import annotations

import streamlit as st

import rcl
from ui.common import disclaimer, finished_rows, get_run, guard, no_runs_message, page, run_picker

page("Run card")
st.write("A summary of one run for people who will not open the app: data, severity matrix, loss, test metrics "
         "with 95% confidence intervals, the tiered confusion matrix and where the run sits on the frontier.")
run = run_picker()
if run is None:
    no_runs_message("the run card")
    disclaimer()
    st.stop()


@st.cache_data(show_spinner="Writing the run card…", max_entries=16)
def cards(path: str, signature: tuple) -> tuple[str, str]:
    run = get_run(path)
    others = [get_run(r["path"]) for r in finished_rows() if r["dataset"] == run.config.get("dataset", {}).get("name")]
    return rcl.run_card_markdown(run, others), rcl.run_card_html(run, others)


with guard("run card"):
    signature = tuple((r["id"], r["cer"], r["f1_macro"]) for r in finished_rows())
    markdown, html = cards(str(run.path), signature)
    c1, c2 = st.columns(2)
    c1.download_button("Download Markdown", markdown, file_name=f"run_card_{run.id}.md", mime="text/markdown",
                       type="primary")
    c2.download_button("Download HTML", html, file_name=f"run_card_{run.id}.html", mime="text/html")
    with st.container(border=True):
        st.markdown(markdown)
disclaimer()
