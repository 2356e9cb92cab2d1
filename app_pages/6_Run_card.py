"""Run card: a one-page summary of a run for stakeholders, shown here and downloaded as Markdown or HTML."""

from __future__ import annotations

import streamlit as st

import rcl
from ui.common import disclaimer, finished_rows, get_run, guard, page, require_run

page("Run card")
st.write("A summary of one run for people who will not open the app: the headline figures with the cases they "
         "rest on, the error tiers, its place among runs tested on the same images, the decision and the "
         "matrices used, the recipe and the data. The HTML download prints on A4 (or save it as PDF).")
run = require_run("the run card")


@st.cache_data(show_spinner="Writing the run card…", max_entries=16)
def cards(path: str, signature: tuple) -> tuple[list[dict], str, str]:
    run = get_run(path)
    others = [get_run(r["path"]) for r in finished_rows() if r["dataset"] == run.config.get("dataset", {}).get("name")]
    sections = rcl.card_sections(run, others)
    return sections, rcl.sections_markdown(sections), rcl.sections_html(sections, run.label)


with guard("run card"):
    signature = tuple((r["id"], r["cer"], r["f1_macro"]) for r in finished_rows())
    sections, markdown, html = cards(str(run.path), signature)
    c1, c2 = st.columns(2)
    c1.download_button("Download HTML (prints as PDF)", html, file_name=f"run_card_{run.id}.html", mime="text/html",
                       type="primary")
    c2.download_button("Download Markdown", markdown, file_name=f"run_card_{run.id}.md", mime="text/markdown")
    for section in sections:
        if not section["md"]:
            continue
        with st.container(border=section["box"]):
            st.markdown(rcl.beside_chart(section))
            if section["svg"]:
                st.image(section["svg"])  # an SVG string
disclaimer()
