"""Label quality: the noise study across runs, the selected run's suspect labels (with the review
queue), its subgroups by a metadata column, and its test figures on clean vs noisy labels."""

from __future__ import annotations

import streamlit as st

import rcl
from ui import labels as ui
from ui.common import disclaimer, guard, no_runs_message, page, run_picker, split_rows
from ui.review import review_queue_panel

GALLERY_SIZE = 24

page("Label quality")
st.write("A wrong label is the other way a classifier learns to miss a tumour: a malignant lesion labelled benign "
         "teaches the model that such lesions are benign, and the same mistake in the test set hides it. "
         "Every figure here is computed from the runs' stored predictions; no label or image is ever changed.")
rows = split_rows()
if not rows:
    no_runs_message("label quality")
    disclaimer()
    st.stop()
run = run_picker()
argmax = rcl.decision_rule("argmax")

# --- 1. the noise study: all runs of one test split ---------------------------------------------
st.subheader("Noise study: CER and F1 against the share of wrong training labels")
groups = rcl.noise_groups(rows)
if not groups:
    st.info("No finished run was trained with label noise yet. Train the same recipe clean and with noise, "
            "e.g. `rcl train --data synthetic --loss rcl --label-noise miss:0.1` (kinds: "
            f"{', '.join(rcl.NOISE_KINDS)}; rates 0.1, 0.2; several `--seed`s and losses), or queue them with "
            "`rcl submit` and the same options; the runs without noise are each curve's starting point.")
else:
    by_key = {f"{g['dataset']}:{g['split']}": g for g in groups}
    key = st.selectbox("Runs tested on the same images", list(by_key), format_func=lambda k: by_key[k]["label"],
                       key="labels_group", help="A curve only compares runs tested on the same test split.")
    study = rcl.noise_study(rcl.comparable(rows, by_key[key]))
    st.plotly_chart(ui.noise_figure(study), width="stretch")
    st.caption(f"Test figures of each run at its {argmax}, against the share of its training labels flipped "
               "(validation and test labels untouched). Runs without noise are every curve's 0% point. Error "
               "bars: a single run's 95% bootstrap interval, or the range over the runs (seeds) at a point.")
    st.dataframe(rcl.study_display(study), hide_index=True, width="stretch")

if run is None:
    disclaimer()
    st.stop()

# --- 2. suspect labels of the selected run, or a saved ranking ----------------------------------
st.subheader("Suspect labels")
saved = {str(path): f"saved ranking: {path.parent.name}/{path.name}" for path in rcl.saved_suspects()}
sources = {"run": f"this run's validation and test labels ({run.label})", **saved}
source = st.selectbox("Ranking", list(sources), format_func=sources.get, key="labels_source",
                      help="A saved ranking is `rcl label-issues ... --json` written into the data directory's "
                           "`label_issues/` folder: out-of-fold probabilities of the train split.")
suspects, result = [], None
with guard("suspect labels"):
    result = ui.run_suspects(run) if source == "run" else rcl.read_suspects(source)
    suspects = rcl.suspect_gallery(result, run.config.get("dataset", {}).get("root"))
if result is not None:
    st.write(f"**{rcl.plural(result['flagged'], 'label')} of {result['n']} flagged**, "
             f"{rcl.plural(result['misses'], 'suspected miss', 'suspected misses')} (given benign, likely malignant) "
             "first. Under each image: given → suggested label, and the score: the out-of-sample probability of "
             "the given label (lower is more suspect).")
    st.caption(f"{result['method']}. Source: {result['source']}.")
    if "precision" in result:
        hits = result["precision"]
        st.caption(f"Against the {result['noise']['flipped']} injected flips ({result['noise']['spec']}): "
                   f"precision@{hits['k']} {rcl.num(hits['precision_at_k'])}, flagged recall "
                   f"{rcl.num(hits['flagged_recall'])}.")
    shown = [s for s in suspects if s["path"]][:GALLERY_SIZE]
    if not suspects:
        st.success("No label is flagged.")
    elif shown:
        ui.suspect_grid(shown)
        if len(suspects) > len(shown):
            st.caption(f"The first {len(shown)} with an image here; all {len(suspects)} are in the CSV.")
    else:
        st.caption("The images are not on this machine; listing the suspects instead.")
        st.dataframe(suspects, hide_index=True, width="stretch")
    st.download_button("Download suspects (CSV)", rcl.suspects_csv(suspects), file_name=f"suspects_{run.id}.csv",
                       mime="text/csv", key="labels_csv", disabled=not suspects)

# --- the review queue: a specialist reads the suspects, misses first --------------------------------
st.subheader("Review queue")
if result is not None and suspects:
    st.caption("Keep the label, correct it, or ask for a second reader: each verdict is stored with who, when and why "
               "in the dataset's review file (the data itself is never edited); a second reader confirms or "
               "overrules. Train on the reviewed labels from the Train page or with `rcl train --label-corrections`.")
    with guard("review queue"):
        review_queue_panel(run.train["data"], result, taxonomy=run.config["taxonomy"])  # the run's own classes
else:
    st.caption("No suspects to review.")

# --- 3. subgroups by a metadata column -----------------------------------------------------------
st.subheader("Subgroups")
with guard("subgroups"):
    columns = ui.metadata_columns(run)
    if not columns:
        st.info(f"The dataset of this run ({run.train['data']}) has no metadata columns. HAM10000 has `dx_type` "
                "(how the label was confirmed), `age`, `sex` and `localization`; a CSV layout keeps any extra column.")
    else:
        by = st.selectbox("Metadata column", columns, key="labels_by")
        groups_of = ui.run_subgroups(run, by)
        st.caption(f"Test split ({groups_of['n']} cases) by `{groups_of['by']}`, at the {argmax}. 95% bootstrap "
                   "intervals; a gap is flagged when the interval of (group − all other cases) excludes 0. Groups "
                   f"under {groups_of['min_cases']} cases, or under {groups_of['min_malignant']} malignant cases "
                   "for CER and sensitivity, are not estimated.")
        st.dataframe(rcl.subgroup_display(groups_of), hide_index=True, width="stretch")
        rates = ui.run_suspect_rates(run, by)
        st.write(f"**Suspect labels by `{rates['by']}`**: the share of this run's {rates['n']} validation and test "
                 "labels the finder flags (the ranking of this run, whichever ranking is chosen above), over all "
                 "labels and within each given class.")
        st.caption(f"{rates['method']}. 95% intervals (Jeffreys); a gap: the interval of (group − rest) excludes 0. "
                   "Compare within a class: a column such as `dx_type` goes with the class (follow-up confirms only "
                   "nevi), and some classes are flagged far more than others. For the train split's labels: "
                   f"`rcl label-issues --data ... --by {rates['by']}`.")
        st.dataframe(rcl.suspect_rate_display(rates), hide_index=True, width="stretch")

# --- 4. the illusion of accuracy ------------------------------------------------------------------
st.subheader("Clean vs noisy test labels: the illusion of accuracy")
st.write("The same predictions scored against the test labels as stored and against the same labels with a "
         "noise rule applied: how much a test set carrying the training set's mistakes moves the figures.")
c1, c2, c3 = st.columns(3)
kinds = list(rcl.NOISE_KINDS)
kind = c1.selectbox("Noise kind", kinds, index=kinds.index("miss"), key="labels_kind",
                    format_func=lambda k: f"{k}: {rcl.NOISE_KINDS[k][0]}")
rate = c2.slider("Share of eligible test labels flipped", 0.05, 0.5, 0.1, 0.05, key="labels_rate")
seed = int(c3.number_input("Seed (which labels flip)", min_value=0, value=0, step=1, key="labels_seed"))
with guard("clean vs noisy test"):
    compared = ui.illusion(run, f"{kind}:{rate:g}", seed)
    noise = compared["noise"]
    st.dataframe(rcl.illusion_display(compared), hide_index=True, width="stretch")
    st.caption(f"{compared['n']} test cases at the {argmax}; {rcl.count_of(noise['flipped'], noise['eligible'])} "
               f"eligible labels flipped ({noise['rule']}, seed {noise['seed']}); 95% bootstrap intervals.")
disclaimer()
