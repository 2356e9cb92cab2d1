"""A trained run on another dataset (e.g. the official ISIC 2018 test set, or MRI shown to a
dermoscopy model to see how much of it the unfamiliar-image detector flags)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from rcl import data as rdata
from rcl.answers import ARGMAX, abstention_report, run_answers
from rcl.engine import infer
from rcl.labels.illusion import illusion_scores
from rcl.labels.noise import parse_noise
from rcl.metrics import argmax_metrics, evaluate
from rcl.ood import image_gate
from rcl.severity import cost_matrix


def evaluate_external(run_dir: str | Path, data: str, preset: str | None = None, batch_size: int = 64,
                      ood_only: bool = False, malignant=None, taxonomy=None, seed: int = 0,
                      label_noise: str | None = None) -> dict:
    """Every readable sample of ``data`` predicted by the run at ``run_dir``.

    Labels are read through the run's own taxonomy, so class names must match it (aliases
    allowed); ``malignant`` or ``taxonomy`` say how to read a folder whose classes the run's
    taxonomy does not name. Returns the argmax figures (``"test"``, the labelled comparison), the
    run's default decision (``"decision"``, the headline), the figures with abstention
    (``"abstention"``: coverage, answered-case CER/F1, CER if referred cases were sent home, with
    bootstrap intervals seeded by ``seed``) and the share of images flagged as unfamiliar (the
    image gate and the run's detector). With ``ood_only`` the data may have any classes: only the
    unfamiliar share is reported. With ``label_noise`` (``"miss:0.1"``), ``"illusion"`` scores the
    argmax answers against the data's labels and the same labels noised with ``seed``
    (:func:`rcl.labels.illusion.illusion_scores`): how much an external test set's own label
    errors could move its figures.
    """
    from rcl.runs import load_model

    parse_noise(label_noise)  # a bad rule fails before any inference
    if ood_only and label_noise is not None:
        raise ValueError("--label-noise needs the data's labels; --ood-only reads none")
    if not Path(data).expanduser().exists():
        raise ValueError(f"dataset {str(data)!r} does not exist")
    loaded = load_model(run_dir)
    if ood_only and loaded.ood is None:
        raise ValueError(f"{run_dir} has no unfamiliar-image detector (ood.npz): retrain it with this version")
    try:
        if ood_only or (malignant is None and taxonomy is None):
            table = rdata.load_dataset(data, preset=preset, taxonomy=None if ood_only else loaded.taxonomy)
        else:
            table = rdata.load_dataset(data, preset=preset, taxonomy=taxonomy, malignant=malignant)
            if table.taxonomy.classes != loaded.taxonomy.classes:
                raise ValueError(f"the data's classes ({', '.join(table.taxonomy.classes)}) are not the run's "
                                 f"({', '.join(loaded.taxonomy.classes)})")
    except ValueError as exc:
        if not ood_only:
            raise ValueError(f"{exc} (to measure only how unfamiliar the images are to this model, add --ood-only)") from exc
        # The labels play no part in an unfamiliarity score: any class names will do.
        table = rdata.load_dataset(data, malignant=[])
    prepared = rdata.prepare(table, loaded.image_size)
    labels = prepared.samples["label"].to_numpy().astype(np.int64)
    loader = DataLoader(rdata.ImageArrayDataset(prepared.images, labels, train=False), batch_size=batch_size,
                        shuffle=False)
    logits, features = infer(loaded.model, loader, torch.device("cpu"), features=loaded.ood is not None)
    result = {"run": str(loaded.source), "data": str(data), "n": int(len(labels)),
              "skipped_files": [list(s) for s in (table.skipped + prepared.skipped)][:200]}
    gated = np.array([image_gate(image) is not None for image in prepared.images], dtype=bool)
    flagged = gated.copy()
    if loaded.ood is not None:
        flagged |= loaded.ood.flag(features.astype(np.float64))
        result["ood"] = {"method": "image gate + mahalanobis", "flagged_share": float(flagged.mean()),
                         "flagged": int(flagged.sum()), "gate_flagged": int(gated.sum()), "n": int(flagged.size),
                         "expected_share_in_distribution": loaded.ood.flag_rate}
    if not ood_only:
        extras = loaded.card.get("extras", {})
        answers = run_answers(extras, loaded.matrix, loaded.taxonomy, logits, flagged)
        result["test"] = argmax_metrics(logits, labels, loaded.taxonomy, cost_matrix(loaded.matrix)) | {"decision": ARGMAX}
        result["decision"] = {"rule": answers.decision,
                              "test": evaluate(labels, answers.decisions, loaded.taxonomy).to_dict()}
        result["abstention"] = abstention_report(labels, answers.codes, loaded.taxonomy, answers.decision, seed=seed)
        if label_noise is not None:
            result["illusion"] = {"decision_rule": ARGMAX,
                                  **illusion_scores(labels, logits.argmax(axis=1), loaded.taxonomy, label_noise, seed)}
    return result
