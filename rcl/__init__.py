"""rcl: risk-calibrated medical image classification.

The public API lives here; the app's pages import nothing else. Names that need torch are
imported on first use, so that light commands (``rcl jobs``, ``rcl runs``) and numpy-only callers
start fast.
"""

from importlib import import_module

from rcl.answers import Answer, abstention_report, default_decision_name, default_matrix
from rcl.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from rcl.card_charts import TIER_COLOURS
from rcl.decision import decide, expected_costs, frontier, redecide, sweep
from rcl.decision_scale import scaled_matrix, tune_decision_scale
from rcl.errors import debug_enabled, user_message
from rcl.errors import explain as explain_error
from rcl.metrics import TIERS, Evaluation, evaluate, expected_cer, pareto_front
from rcl.paper import PAPER_RESULTS
from rcl.paths import home, models_dir, save_weights_file
from rcl.referral import ReferralRule, apply_referral, fit_referral, referral_report
from rcl.severity import SeverityMatrix, cost_matrix, parse_cells, penalty_warnings, severity_matrix
from rcl.taxonomy import PRESETS, Taxonomy, preset
from rcl.text import (
    DECISION_RULES,
    DISCLAIMER,
    TIER_LABELS,
    count_of,
    decision_rule,
    initialisation,
    matrix_caption,
    num,
    pct,
    plural,
    points,
    rate_with_count,
    signed,
)
from rcl.uncertainty import bootstrap_ci, expected_cer_ci, paired_difference

__version__ = "0.1.0"

# name -> (module, attribute), imported on first use: the run-folder modules reach torch through
# the unfamiliar-image detector. ``rcl.triage`` is a module, so its function of that name is
# ``triage_image`` here; the job functions read ``submit_jobs``, ``cancel_jobs`` and ``job_*``
# (``rcl.jobs.view``'s ``fraction``, ``status_text``, ``table_row``, ``failure_reason``).
_LAZY = {
    # the guarantee is post-hoc analysis: loaded on first use, so light commands never load rcl.posthoc
    **{name: ("rcl.posthoc.guarantee", name) for name in ("DEFAULT_REFER_ABOVE", "GUARANTEE_MODES", "GuaranteedRule",
                                                         "apply_guarantee", "fit_guarantee", "load_guarantee",
                                                         "save_guarantee")},
    **{name: ("rcl.posthoc.guarantee_report", name) for name in ("guarantee_for_run", "guarantee_pool",
                                                                "guarantee_report", "resplit_check")},
    **{name: ("rcl.runs", name) for name in ("LoadedModel", "Run", "load_model", "load_run")},
    **{name: ("rcl.listing", name) for name in ("abstention_rows", "decision_frontier", "exported_models", "folder_signature",
                                                "front_flags", "run_ci", "run_rows", "with_ci")},
    **{name: ("rcl.confusion", name) for name in ("confusion_view", "missed_malignant", "tier_comparison",
                                                  "tier_totals", "type2_samples")},
    **{name: ("rcl.run_card", name) for name in ("beside_chart", "card_sections", "run_card_html", "run_card_markdown",
                                                 "sections_html", "sections_markdown")},
    **{name: ("rcl.comparison", name) for name in ("FRONTIER_COLUMNS", "axis_range", "comparable", "frontier_csv", "frontier_display",
                                                   "pick_group", "split_fingerprint", "split_groups", "with_splits")},
    **{name: ("rcl.redecision", name) for name in ("redecide_run", "redecision_text")},
    "make_loss": ("rcl.losses", "make_loss"),
    **{name: ("rcl.loss_registry", name) for name in ("LOSSES", "loss_spec", "canonical_loss", "carries_costs")},
    "run_training": ("rcl.train", "run_training"),
    **{name: ("rcl.fine_tune", name) for name in ("FINE_TUNE", "fine_tune_fields", "start_text")},
    "analyse": ("rcl.posthoc", "analyse"),
    "evaluate_external": ("rcl.external", "evaluate_external"),
    "TrainConfig": ("rcl.config", "TrainConfig"),
    "AUTO": ("rcl.config", "AUTO"),
    "auto_choice": ("rcl.config", "auto_choice"),
    "demo_config": ("rcl.demo", "demo_config"),
    "example_images": ("rcl.demo", "example_images"),
    "MAX_UPLOAD_BYTES": ("rcl.triage", "MAX_UPLOAD_BYTES"),
    "STACKING": ("rcl.triage", "STACKING"),
    "gradcam": ("rcl.triage", "gradcam"),
    "read_image": ("rcl.triage", "read_image"),
    "triage_image": ("rcl.triage", "triage"),
    "stored_guarantee": ("rcl.triage", "stored_guarantee"),
    **{name: ("rcl.grid", name) for name in ("EXECUTORS", "ablation_methods", "custom_methods", "grid_configs",
                                              "grid_rows", "launch_sweep", "number_list", "run_sweep", "sweep_configs",
                                              "trial_rows")},
    "default_ray_address": ("rcl.ray_executor", "default_address"),
    "JobStore": ("rcl.jobs", "JobStore"),
    **{name: ("rcl.jobs", name) for name in ("WORKER_IDLE_MINUTES", "ensure_worker", "job_history", "job_logs",
                                             "stop_worker", "worker_status")},
    "cancel_jobs": ("rcl.jobs", "cancel"),
    "submit_jobs": ("rcl.jobs", "submit"),
    **{f"job_{name}": ("rcl.jobs.view", name) for name in ("fraction", "failure_reason", "status_text", "table_row")},
    "ablation_configs": ("rcl.ablation", "ablation_configs"),
    # the review queue (rcl.labels.review); its ``corrections`` reads ``review_corrections`` here
    **{name: ("rcl.labels.review", name) for name in ("VERDICTS", "ReviewTarget", "current_labels", "label_of",
                                                      "read_issues", "read_reviews", "record_verdict",
                                                      "review_queue", "review_summary", "review_target")},
    "review_corrections": ("rcl.labels.review", "corrections"),
    # --- label quality (the Label quality page) ---
    "NOISE_KINDS": ("rcl.labels.noise", "NOISE_KINDS"),
    **{name: ("rcl.labels.study", name) for name in ("noise_groups", "noise_study", "study_display")},
    **{name: ("rcl.labels.suspects", name) for name in ("read_suspects", "run_suspects", "saved_suspects",
                                                        "suspect_caption", "suspect_gallery", "suspects_csv")},
    **{name: ("rcl.labels.subgroups", name) for name in ("metadata_columns", "run_subgroups", "subgroup_display",
                                                        "run_suspect_rates", "suspect_rate_display")},
    **{name: ("rcl.labels.illusion", name) for name in ("illusion_display", "illusion_of_accuracy")},
    "thumbnail": ("rcl.data.images", "thumbnail"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(f"module 'rcl' has no attribute {name!r}")


__all__ = [
    "Answer",
    "DECISION_RULES",
    "DISCLAIMER",
    "PAPER_RESULTS",
    "PRESETS",
    "TIERS",
    "TIER_COLOURS",
    "TIER_LABELS",
    "Evaluation",
    "ReferralRule",
    "SeverityMatrix",
    "Taxonomy",
    "abstention_report",
    "default_decision_name",
    "default_matrix",
    "apply_referral",
    "apply_temperature",
    "bootstrap_ci",
    "cost_matrix",
    "count_of",
    "debug_enabled",
    "explain_error",
    "user_message",
    "decide",
    "decision_rule",
    "evaluate",
    "expected_calibration_error",
    "expected_cer",
    "expected_cer_ci",
    "expected_costs",
    "fit_referral",
    "fit_temperature",
    "frontier",
    "home",
    "initialisation",
    "matrix_caption",
    "models_dir",
    "num",
    "paired_difference",
    "parse_cells",
    "pareto_front",
    "penalty_warnings",
    "pct",
    "plural",
    "points",
    "preset",
    "rate_with_count",
    "redecide",
    "referral_report",
    "save_weights_file",
    "reliability_diagram",
    "scaled_matrix",
    "severity_matrix",
    "signed",
    "sweep",
    "tune_decision_scale",
    *_LAZY,
]
