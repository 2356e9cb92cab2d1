"""Triage: one image → one answer (a class, "refer: uncertain" or "refer: unfamiliar image"), the
class probabilities, Grad-CAM."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

import rcl
from ui.charts import probability_bars
from ui.common import current_matrix, finished_rows, guard, page, require_valid_matrix

ASSETS = Path(__file__).resolve().parents[1] / "assets"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "bmp", "tif", "tiff"]

page("Triage")
st.warning(rcl.DISCLAIMER, icon=":material/warning:")


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_cached(source: str, mtime: int):
    return rcl.load_model(source, device="cpu")


# --- model --------------------------------------------------------------------------------------
sources = {f"model: {p.name}": str(p) for p in rcl.exported_models()}
sources.update({f"run: {r['label']} · {r['id'][:15]}": r["path"] for r in finished_rows()})
if not sources:
    st.info("No model to triage with yet. Train one (**Home** → *Train a demo model*, or **Train**), or export "
            f"a finished run for deployment: `rcl export RUN_DIR --name NAME` (into `{rcl.models_dir()}`).")
    st.stop()

choice = st.selectbox("Model", list(sources), key="triage_model",
                      help="Exported models (rcl export) first, then finished runs.")
loaded = None
with guard("loading the model"):
    source = Path(sources[choice])
    stamp = source / ("model.json" if (source / "model.json").is_file() else "model.safetensors")
    loaded = load_cached(str(source), stamp.stat().st_mtime_ns)
if loaded is None:
    st.stop()

dataset = loaded.card.get("dataset", {})
trained_on = dataset.get("name") or "unknown data"
if loaded.synthetic:
    st.warning("### This model was trained on SYNTHETIC images\n"
               "Its output on a real photograph or dermoscopy image means **nothing**. Use it only to see how "
               "the tool works.", icon=":material/warning:")
else:
    st.caption(f"Trained on **{trained_on}** · {loaded.architecture} · {loaded.image_size} px · "
               f"classes {', '.join(loaded.taxonomy.classes)}")

# The run's own default decision is the headline; the Severity page's matrix is an explicit choice.
use_current = st.toggle("Decide under the Severity page's matrix instead of the model's default decision",
                        value=False, key="triage_use_matrix",
                        help=rcl.STACKING if loaded.cost_sensitive else None)
if use_current:
    require_valid_matrix("Triage")
matrix = current_matrix(loaded.taxonomy) if use_current else None
if use_current:
    st.caption(f"Decision: Bayes minimum-risk under {rcl.matrix_caption(matrix)} (set on **Severity matrix**)")
guarantee = rcl.stored_guarantee(loaded)
use_guarantee = guarantee is not None and st.toggle(
    "Decide by the guaranteed miss-rate rule (set on **Guarantee**)", value=False, key="triage_use_guarantee",
    disabled=use_current)
if use_guarantee:
    st.caption(f"Guarantee: {guarantee.sentence()}")

# --- image --------------------------------------------------------------------------------------
left, right = st.columns(2, gap="large")
with left:
    upload = st.file_uploader(f"Upload an image ({', '.join(UPLOAD_TYPES)}; at most {rcl.MAX_UPLOAD_BYTES // 2**20} MB)",
                              type=UPLOAD_TYPES, key="triage_upload")
    examples = {p.stem.removeprefix("synthetic_"): p for p in sorted(ASSETS.glob("*.png"))}
    example = st.selectbox("…or a bundled synthetic example", ["(none)", *examples], key="triage_example",
                           disabled=upload is not None)

image_bytes, image_name = None, None
if upload is not None:
    image_bytes, image_name = upload.getvalue(), upload.name
elif example != "(none)":
    image_bytes, image_name = examples[example].read_bytes(), examples[example].name

if image_bytes is None:
    st.info("Upload an image or pick a bundled example to triage it.")
    st.stop()

result = None
with guard(f"could not triage {image_name!r}"):
    picture = rcl.read_image(image_bytes)  # a clear ValueError for anything that is not a readable image
    result = rcl.triage_image(loaded, image_bytes, matrix, guarantee if use_guarantee else None)
if result is None:
    st.stop()

with left:
    st.image(picture, caption=f"{image_name} ({picture.width} × {picture.height})", width=300)

answer = result.answer
with right:
    if result.unfamiliar:
        st.error(f"**Refer: unfamiliar image.** {answer.reason.capitalize()}. No class is given as the answer.",
                 icon=":material/stethoscope:")
    elif answer.referred:
        st.warning(f"**Refer: uncertain.** {answer.reason}. No class is given as the answer.",
                   icon=":material/stethoscope:")
    else:
        st.success(f"**Answer: {answer.label}**, decided by {answer.reason}. Not referred under "
                   f"{result.referral_rule}.")
    c1, c2 = st.columns(2)
    c1.metric("Answer", answer.text)
    c2.metric("P(malignant)" + ("" if result.trusted else " (untrusted)"), f"{result.malignant_probability:.2f}")
    st.plotly_chart(probability_bars(result, loaded.taxonomy), width="stretch")
    if not answer.referred:
        costs = pd.DataFrame({"answer": list(result.expected_costs),
                              "expected cost": list(result.expected_costs.values())})
        costs["chosen"] = costs["answer"] == result.decision
        st.markdown(f"**Expected cost of each answer** under {result.decision_rule} (lowest is chosen):")
        st.dataframe(costs, hide_index=True, width="stretch",
                     column_config={"expected cost": st.column_config.NumberColumn(format="%.3f")})
    if rcl.STACKING in result.flags:
        st.warning(rcl.STACKING)

st.subheader("Grad-CAM: where the model looked")
with guard("Grad-CAM"):
    choices = ["most likely", *loaded.taxonomy.classes] if answer.referred else \
        ["decision", "most likely", *loaded.taxonomy.classes]
    target = st.selectbox("Explain the class", choices, key="cam_target")
    target_class = {"decision": result.decision, "most likely": result.argmax}.get(target, target)
    overlay = rcl.gradcam(loaded, image_bytes, target=target_class)
    g1, g2 = st.columns(2)
    g1.image(picture.resize((overlay.shape[1], overlay.shape[0])), caption="model input (resized)", width=300)
    g2.image(overlay, caption=f"Grad-CAM for {target_class}", width=300)

st.download_button("Download the result (JSON)",
                   json.dumps({"image": image_name, **result.to_dict()}, indent=2),
                   file_name="triage.json", mime="application/json")
st.caption(rcl.DISCLAIMER)
