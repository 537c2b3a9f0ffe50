"""faceid.evaluation: the field's verification and identification metrics, protocols, reports and plots.

Metrics are pure functions on numpy arrays. Imports only `faceid`.
"""

from faceid.evaluation.verification import (
    FAR_TARGETS,
    best_threshold_accuracy,
    equal_error_rate,
    kfold_accuracy,
    roc,
    roc_auc,
    tar_at_far,
    threshold_at_far,
    verification_report,
)

__all__ = [
    "FAR_TARGETS",
    "best_threshold_accuracy",
    "equal_error_rate",
    "kfold_accuracy",
    "roc",
    "roc_auc",
    "tar_at_far",
    "threshold_at_far",
    "verification_report",
]
