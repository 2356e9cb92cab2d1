"""The review queue as a widget: one suspect at a time, misses first, a verdict per click.

``review_queue_panel`` is laid out by the Label quality page; every verdict is recorded by
``rcl.record_verdict`` in the dataset's review file, which ``rcl train --label-corrections`` and
the Train page's "train on reviewed labels" read.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import rcl
from ui.common import guard

UPCOMING = 5  # suspects listed after the one being read


@st.cache_resource(show_spinner=False, max_entries=8)
def _target(data: str, preset: str | None, reviews: str | None, malignant: str | None,
            taxonomy: str | None) -> rcl.ReviewTarget:
    return rcl.review_target(data, preset, reviews, malignant, None if taxonomy is None else json.loads(taxonomy))


def _facts(item: dict, given: str) -> str:
    lines = [f"**{item['id']}** · given label **{given}**"]
    if item.get("suggested") is not None:
        lines.append(f"suggested **{item['suggested']}** · score {rcl.num(item['score'])} (the out-of-sample "
                     f"probability of the given label) · P(malignant) {rcl.num(item['p_malignant'])}")
    if item.get("given") not in (None, given):
        lines.append(f"the ranking saw the label {item['given']} (injected noise), the dataset says {given}")
    if item.get("is_miss"):
        lines.append(":red[**suspected miss**: labelled benign, the model says malignant]")
    earlier = item.get("earlier")
    if earlier is not None:
        change = f" → {earlier['label']}" if earlier["label"] else ""
        lines.append(f"first reader **{earlier['reviewer']}**: {earlier['verdict']}{change}"
                     + (f" (“{earlier['reason']}”)" if earlier["reason"] else "") + f", {earlier['time']}")
    return "  \n".join(lines)


def _buttons(item: dict, given: str, classes: list[str], second: bool, key: str) -> tuple[str | None, str | None]:
    """The verdict clicked (and its class), or (None, None)."""
    others = [c for c in classes if c != given]
    suggested = item.get("suggested")
    right = st.selectbox("Right class (for Correct)", others, key=f"{key}_class_{item['id']}",
                         index=others.index(suggested) if suggested in others else 0)
    columns = st.columns(3)
    if second:
        earlier = item["earlier"]
        if columns[0].button("Confirm", key=f"{key}_confirm", disabled=earlier["verdict"] == "unsure",
                             help="the first reader's verdict stands"):
            return earlier["verdict"], earlier["label"]
    elif columns[0].button("Unsure: needs a second reader", key=f"{key}_unsure"):
        return "unsure", None
    if columns[1].button(f"Keep {given}", key=f"{key}_keep"):
        return "keep", None
    if columns[2].button(f"Correct to {right}", key=f"{key}_correct", type="primary"):
        return "correct", right
    return None, None


def review_queue_panel(data: str, issues, *, preset: str | None = None, malignant: str | None = None,
                       taxonomy: dict | None = None,
                       reviews: str | None = None, key: str = "review") -> dict:
    """Read the suspects of ``issues`` (a ``rank_label_issues`` result or its rows) of dataset
    ``data``: the next one with its thumbnail and facts, a verdict per click, stored in the review
    file (``reviews`` or the dataset's default). Returns the file's summary counts."""
    target = _target(str(data), preset, None if reviews is None else str(reviews), malignant,
                     None if taxonomy is None else json.dumps(taxonomy, sort_keys=True))
    rows = issues["rows"] if isinstance(issues, dict) else list(issues or [])
    history = rcl.read_reviews(target.path)
    summary = rcl.review_summary(history)
    reviewer = st.text_input("Reviewer", key=f"{key}_reviewer", placeholder="your name: stored with each verdict")
    second = st.toggle("Second reader: confirm or overrule the first verdicts", key=f"{key}_second")
    queue = rcl.review_queue(rows, history, second=second)
    st.caption(f"{len(queue)} to read{' as a second reader' if second else ', suspected misses first'} · "
               f"{summary['kept']} kept, {summary['corrected']} corrected, {summary['unsure']} waiting for a "
               f"second reader, {summary['second_read']} read twice · verdicts in `{target.path}`")
    if not queue:
        st.success("Nothing left to read here." if rows or second else "No suspects given to review.")
        return summary
    item = queue[0]
    given = rcl.label_of(target, item["id"])
    picture, facts = st.columns([1, 3])
    image = target.image_path(item["id"])
    if image.is_file():
        picture.image(str(image), width=160)
    with facts:
        st.markdown(_facts(item, given))
        reason = st.text_input("Reason (optional)", key=f"{key}_reason_{item['id']}")
        verdict, label = _buttons(item, given, list(target.taxonomy.classes), second, key)
    if verdict is not None:
        with guard("verdict not saved"):
            rcl.record_verdict(target.path, item["id"], verdict, reviewer=reviewer, given=given,
                               taxonomy=target.taxonomy, label=label, reason=reason, second=second, ids=target.labels)
            st.rerun()
    if len(queue) > 1:
        st.caption("Next:")
        st.dataframe(pd.DataFrame([{k: r.get(k) for k in ("id", "given", "suggested", "score", "is_miss")}
                                   for r in queue[1: 1 + UPCOMING]]), hide_index=True)
    return summary
