"""Running an evaluation end to end: protocol -> embeddings -> metrics -> report and plots."""

from pathlib import Path

import numpy as np

from faceid.data.protocols import IdentificationProtocol, PairProtocol
from faceid.embedder import Embedder
from faceid.evaluation.embeddings import embed_images, failure_counts, load_external_embeddings, remark_counts
from faceid.evaluation.identification import identification_report
from faceid.evaluation.quality import quality_report
from faceid.evaluation.report import plot_cmc, plot_roc, plot_score_histograms, write_report
from faceid.evaluation.verification import verification_report


def _embeddings(paths, embedder, embeddings_file, root, cache_dir, progress, preprocessor, no_face):
    if embeddings_file is not None:
        return load_external_embeddings(embeddings_file, paths, root)
    return embed_images(paths, embedder, cache_dir=cache_dir, progress=progress, preprocessor=preprocessor,
                        no_face=no_face)


def _image_counts(embeddings: dict, failures: dict, remarks: dict, preprocessor) -> dict:
    """What the report says of its images: embedded, failed (by reason) and, for photos, the remarks."""
    counts = {"images_embedded": len(embeddings), "images_failed": len(failures),
              "images_failed_by_reason": failure_counts(failures), "failures": sorted(failures.values())}
    if preprocessor is not None:
        counts["face_selection"] = preprocessor.detector.select
        counts["photos"] = remark_counts(remarks)
    return counts


def evaluate_pairs(protocol: PairProtocol, out: Path, model_name: str, data: Path, embedder=None,
                   embeddings_file=None, cache_dir=None, progress: bool = True, seed: int = 0,
                   preprocessor=None, no_face: str = "center", num_folds: int = 10) -> dict:
    """Verification on `protocol`; pairs with an image that failed are dropped and counted. A protocol
    without folds of its own is scored with `num_folds` stratified folds."""
    embeddings, failures, remarks = _embeddings(protocol.paths, embedder, embeddings_file, data, cache_dir, progress,
                                                preprocessor, no_face)
    keep = np.array([protocol.paths[a] in embeddings and protocol.paths[b] in embeddings
                     for a, b in zip(protocol.first, protocol.second, strict=True)], dtype=bool)
    if not keep.any():
        example = next(iter(failures.values()), "")
        raise ValueError(f"no pair could be scored: {len(failures)} image(s) failed, e.g. {example}")
    first = np.stack([embeddings[protocol.paths[a]] for a in protocol.first[keep]])
    second = np.stack([embeddings[protocol.paths[b]] for b in protocol.second[keep]])
    scores, is_same = (first * second).sum(1), protocol.is_same[keep]
    folds = protocol.fold[keep] if protocol.fold is not None else None
    verification = verification_report(scores, is_same, folds=folds, seed=seed, num_folds=num_folds)
    report = {"protocol": "verification", "model": model_name, "data": str(data),
              **_image_counts(embeddings, failures, remarks, preprocessor),
              "pairs_skipped": int((~keep).sum()) + len(protocol.skipped), "verification": verification}
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(scores, is_same, out / "roc.png", f"ROC: {model_name}")
    plot_score_histograms(scores, is_same, verification["best_threshold"], out / "score_histogram.png",
                          f"scores: {model_name}")
    write_report(report, out)
    return report


def evaluate_identification(protocol: IdentificationProtocol, out: Path, model_name: str, data: Path,
                            embedder=None, embeddings_file=None, cache_dir=None, progress: bool = True,
                            preprocessor=None, no_face: str = "center") -> dict:
    items = protocol.gallery + protocol.probes
    embeddings, failures, remarks = _embeddings([i.path for i in items], embedder, embeddings_file, data, cache_dir,
                                                progress, preprocessor, no_face)
    gallery = [i for i in protocol.gallery if i.path in embeddings]
    probes = [i for i in protocol.probes if i.path in embeddings]
    gallery_matrix = np.stack([embeddings[i.path] for i in gallery])
    probe_matrix = np.stack([embeddings[i.path] for i in probes])
    identification = identification_report(probe_matrix @ gallery_matrix.T, [i.identity for i in gallery],
                                           [i.identity for i in probes])
    everything = gallery + probes
    report = {"protocol": "identification", "model": model_name, "data": str(data),
              **_image_counts(embeddings, failures, remarks, preprocessor), "identification": identification,
              "quality": quality_report(np.stack([embeddings[i.path] for i in everything]),
                                        [i.identity for i in everything])}
    out.mkdir(parents=True, exist_ok=True)
    plot_cmc(identification["cmc"], out / "cmc.png", f"CMC: {model_name}")
    write_report(report, out)
    return report


def compare_embedders(protocol: PairProtocol, embedders: dict[str, Embedder], out_dir: Path, data: Path) -> list[dict]:
    """Verification accuracy of each embedder on one protocol, the first being the baseline of `change`.

    Each embedder's report goes to `out_dir / evaluation-<name>`. Rows hold `model`, `accuracy` and `change`
    (10-fold accuracy and its difference to the first, in percentage points) and `auc`."""
    rows = []
    for name, embedder in embedders.items():
        report = evaluate_pairs(protocol, out_dir / f"evaluation-{name}", name, data, embedder=embedder,
                                progress=False)["verification"]
        accuracy = 100 * report["accuracy_10fold_mean"]
        change = accuracy - rows[0]["accuracy"] if rows else 0.0
        rows.append({"model": name, "accuracy": accuracy, "change": change, "auc": report["auc"]})
    return rows
