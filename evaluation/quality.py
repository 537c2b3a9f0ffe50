"""Embedding-space quality: cluster indices on cosine geometry (Peeples et al., LACE, Table 2),
nearest-centroid accuracy (Pilarczyk and Skarbek, "On Intra-class Variance for Deep Learning of
Classifiers", Table 1), and the mean intra- and inter-class angles.

Embeddings are L2-normalised first, so Euclidean geometry on them is the cosine geometry.
"""

import numpy as np

from faceid.arrays import l2_normalize


def _unit_float64(embeddings) -> np.ndarray:
    return l2_normalize(np.asarray(embeddings, dtype=np.float64), axis=1)


def _groups(labels):
    labels = np.asarray(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("cluster indices need at least two classes")
    return classes, inverse


def silhouette_cosine(embeddings, labels) -> float:
    """Mean silhouette with cosine distance 1 − cos; samples alone in their class score 0."""
    unit = _unit_float64(embeddings)
    classes, inverse = _groups(labels)
    distance = np.clip(1.0 - unit @ unit.T, 0, None)
    values = np.zeros(len(unit))
    for i in range(len(unit)):
        own = inverse == inverse[i]
        if own.sum() == 1:
            continue
        a = distance[i, own].sum() / (own.sum() - 1)
        b = min(distance[i, inverse == k].mean() for k in range(len(classes)) if k != inverse[i])
        values[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(values.mean())


def _centroids(unit, inverse, count):
    return np.stack([unit[inverse == k].mean(0) for k in range(count)])


def davies_bouldin_cosine(embeddings, labels) -> float:
    """Davies-Bouldin index of the normalised embeddings (lower is better)."""
    unit = _unit_float64(embeddings)
    classes, inverse = _groups(labels)
    centroids = _centroids(unit, inverse, len(classes))
    spread = np.array([np.linalg.norm(unit[inverse == k] - centroids[k], axis=1).mean() for k in range(len(classes))])
    separation = np.linalg.norm(centroids[:, None] - centroids[None], axis=2)
    ratio = (spread[:, None] + spread[None]) / np.where(separation > 0, separation, np.inf)
    np.fill_diagonal(ratio, -np.inf)
    return float(ratio.max(1).mean())


def calinski_harabasz_cosine(embeddings, labels) -> float:
    """Calinski-Harabasz index of the normalised embeddings (higher is better)."""
    unit = _unit_float64(embeddings)
    classes, inverse = _groups(labels)
    centroids = _centroids(unit, inverse, len(classes))
    counts = np.bincount(inverse)
    between = (counts * ((centroids - unit.mean(0)) ** 2).sum(1)).sum()
    within = ((unit - centroids[inverse]) ** 2).sum()
    if within == 0:
        return float("inf")
    return float(between * (len(unit) - len(classes)) / (within * (len(classes) - 1)))


def nearest_centroid_accuracy(train_embeddings, train_labels, test_embeddings, test_labels) -> float:
    """Share of test samples whose nearest (cosine) class centroid from the training set is their class."""
    train, test = _unit_float64(train_embeddings), _unit_float64(test_embeddings)
    classes, inverse = np.unique(np.asarray(train_labels), return_inverse=True)
    centroids = _unit_float64(_centroids(train, inverse, len(classes)))
    predicted = classes[np.argmax(test @ centroids.T, axis=1)]
    return float((predicted == np.asarray(test_labels)).mean())


def mean_angles(embeddings, labels) -> tuple[float, float]:
    """(intra, inter): mean angle in degrees over pairs of the same class and over pairs of different classes."""
    unit = _unit_float64(embeddings)
    labels = np.asarray(labels)
    angles = np.degrees(np.arccos(np.clip(unit @ unit.T, -1, 1)))
    same = labels[:, None] == labels[None]
    upper = np.triu(np.ones_like(same), 1)
    intra_pairs, inter_pairs = same & upper, ~same & upper
    intra = float(angles[intra_pairs].mean()) if intra_pairs.any() else float("nan")
    inter = float(angles[inter_pairs].mean()) if inter_pairs.any() else float("nan")
    return intra, inter


def quality_report(embeddings, labels) -> dict:
    intra, inter = mean_angles(embeddings, labels)
    return {"silhouette": silhouette_cosine(embeddings, labels),
            "davies_bouldin": davies_bouldin_cosine(embeddings, labels),
            "calinski_harabasz": calinski_harabasz_cosine(embeddings, labels),
            "mean_intra_class_angle": intra, "mean_inter_class_angle": inter}
