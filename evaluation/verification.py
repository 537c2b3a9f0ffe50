"""Verification (1:1) metrics from pair scores and genuine/impostor labels.

Convention: a higher score means more similar, and a pair is accepted when score >= threshold.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

FAR_TARGETS = ("1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6")


def _check(scores, is_same) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_same = np.asarray(is_same).ravel()
    if scores.shape != is_same.shape:
        raise ValueError(f"scores and is_same must have the same length, got {scores.shape} and {is_same.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite values")
    if is_same.dtype != bool:
        if not np.isin(is_same, (0, 1)).all():
            raise ValueError("is_same must hold booleans or 0/1")
        is_same = is_same.astype(bool)
    if is_same.all() or not is_same.any():
        raise ValueError("verification needs at least one genuine and one impostor pair")
    return scores, is_same


@dataclass(frozen=True)
class RocCurve:
    """The ROC of one set of pair scores: FAR, TAR and threshold at every distinct score, thresholds
    descending, starting at (0, 0, +inf). Every figure below reads this one curve."""

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    max_score: float
    genuine: int
    impostors: int

    @classmethod
    def of(cls, scores, is_same) -> "RocCurve":
        scores, is_same = _check(scores, is_same)
        order = np.argsort(-scores, kind="mergesort")
        sorted_scores, sorted_same = scores[order], is_same[order]
        last_of_run = np.r_[np.diff(sorted_scores) != 0, True]
        true_accepts = np.cumsum(sorted_same)[last_of_run]
        false_accepts = np.cumsum(~sorted_same)[last_of_run]
        genuine, impostors = int(is_same.sum()), int((~is_same).sum())
        return cls(far=np.r_[0.0, false_accepts / impostors], tar=np.r_[0.0, true_accepts / genuine],
                   thresholds=np.r_[np.inf, sorted_scores[last_of_run]], max_score=float(sorted_scores[0]),
                   genuine=genuine, impostors=impostors)

    def _finite(self, threshold: float) -> float:
        """+inf (reject everything) as a usable number: just above the highest score."""
        return float(threshold) if np.isfinite(threshold) else self.max_score + 1e-6

    def auc(self) -> float:
        """Area under the ROC (trapezoidal rule; ties count one half, as in the Mann-Whitney statistic)."""
        return float(np.trapezoid(self.tar, self.far))

    def eer(self) -> float:
        """The rate where FAR equals FRR (1 - TAR), interpolated linearly between ROC points."""
        gap = self.far - (1.0 - self.tar)  # rises from -1 to +1 along the ROC
        crossing = int(np.argmax(gap >= 0))
        if gap[crossing] == 0 or crossing == 0:
            return float(self.far[crossing])
        before, after = crossing - 1, crossing
        weight = -gap[before] / (gap[after] - gap[before])
        return float(self.far[before] + weight * (self.far[after] - self.far[before]))

    def operating_point(self, target_far: float) -> dict:
        """The most permissive threshold whose empirical FAR is <= `target_far` (no interpolation), with
        the FAR and TAR it achieves; NaN everywhere when the target is below 1 / impostor pairs."""
        if target_far * self.impostors < 1:
            return {"threshold": float("nan"), "far": float("nan"), "tar": float("nan"), "target_far": target_far}
        best = np.flatnonzero(self.far <= target_far + 1e-12)[-1]
        return {"threshold": self._finite(self.thresholds[best]), "far": float(self.far[best]),
                "tar": float(self.tar[best]), "target_far": target_far}

    def best_accuracy(self) -> tuple[float, float]:
        """(accuracy, threshold) maximising accuracy over every threshold of the curve."""
        accuracy = (self.tar * self.genuine + (1 - self.far) * self.impostors) / (self.genuine + self.impostors)
        best = int(np.argmax(accuracy))
        return float(accuracy[best]), self._finite(self.thresholds[best])


def roc(scores, is_same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds) at every distinct score, thresholds descending, starting at (0, 0, +inf)."""
    curve = RocCurve.of(scores, is_same)
    return curve.far, curve.tar, curve.thresholds


def roc_auc(scores, is_same) -> float:
    """Area under the ROC (trapezoidal rule; ties count one half, as in the Mann-Whitney statistic)."""
    return RocCurve.of(scores, is_same).auc()


def equal_error_rate(scores, is_same) -> float:
    """The rate where FAR equals FRR (1 - TAR), interpolated linearly between ROC points."""
    return RocCurve.of(scores, is_same).eer()


def tar_at_far(scores, is_same, target_far: float) -> float:
    """TAR at the most permissive threshold whose empirical FAR is <= `target_far` (no interpolation).

    Returns NaN when `target_far` < 1 / number of impostor pairs: the data cannot measure it.
    """
    return RocCurve.of(scores, is_same).operating_point(target_far)["tar"]


def threshold_at_far(scores, is_same, target_far: float) -> dict:
    """The most permissive threshold whose empirical FAR is <= `target_far`, with the FAR and TAR it
    achieves. NaN threshold when the target is below 1 / number of impostor pairs."""
    return RocCurve.of(scores, is_same).operating_point(target_far)


def best_threshold_accuracy(scores, is_same) -> tuple[float, float]:
    """(accuracy, threshold) maximising accuracy over every ROC threshold."""
    return RocCurve.of(scores, is_same).best_accuracy()


def make_folds(is_same, folds: int = 10, seed: int = 0) -> np.ndarray:
    """A fold index per pair, stratified by label."""
    is_same = np.asarray(is_same, bool)
    genuine, impostor = int(is_same.sum()), int((~is_same).sum())
    if min(genuine, impostor) < folds:
        raise ValueError(f"{genuine} genuine and {impostor} impostor pairs are too few for {folds} folds: "
                         "ask for fewer folds (--folds) or give more images")
    fold_of = np.empty(len(is_same), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(is_same)), is_same)):
        fold_of[test] = fold
    return fold_of


def kfold_accuracy(scores, is_same, folds=None, num_folds: int = 10, seed: int = 0) -> tuple[float, float, list[float]]:
    """LFW-protocol accuracy: for each fold, the threshold is chosen on the other folds and applied to it.

    `folds` gives a fold index per pair (the protocol's own folds); None makes stratified folds by
    seed. Returns (mean, std, per-fold accuracies); std is the population standard deviation.
    """
    scores, is_same = _check(scores, is_same)
    fold_of = make_folds(is_same, num_folds, seed) if folds is None else np.asarray(folds)
    if fold_of.shape != scores.shape:
        raise ValueError(f"folds must give one fold per pair, got {fold_of.shape} for {scores.shape}")
    accuracies = []
    for fold in np.unique(fold_of):
        held_out = fold_of == fold
        _, threshold = RocCurve.of(scores[~held_out], is_same[~held_out]).best_accuracy()
        accepted = scores[held_out] >= threshold
        accuracies.append(float((accepted == is_same[held_out]).mean()))
    return float(np.mean(accuracies)), float(np.std(accuracies)), accuracies


def verification_report(scores, is_same, folds=None, seed: int = 0, num_folds: int = 10) -> dict:
    """Every verification figure in one dict (the keys of `report.json`); `num_folds` when `folds` is None."""
    scores, is_same = _check(scores, is_same)
    mean, std, _ = kfold_accuracy(scores, is_same, folds=folds, num_folds=num_folds, seed=seed)
    curve = RocCurve.of(scores, is_same)
    return {
        "accuracy_10fold_mean": mean,
        "accuracy_10fold_std": std,
        "best_threshold": curve.best_accuracy()[1],
        "auc": curve.auc(),
        "eer": curve.eer(),
        "tar_at_far": {key: curve.operating_point(float(key))["tar"] for key in FAR_TARGETS},
        "num_genuine": int(is_same.sum()),
        "num_impostor": int((~is_same).sum()),
    }
