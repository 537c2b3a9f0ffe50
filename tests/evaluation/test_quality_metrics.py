"""Embedding-quality metrics against scikit-learn on cosine geometry."""

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.neighbors import NearestCentroid

from faceid.evaluation.quality import (
    calinski_harabasz_cosine,
    davies_bouldin_cosine,
    mean_angles,
    nearest_centroid_accuracy,
    silhouette_cosine,
)


def _data(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 120)
    centres = rng.normal(0, 1, (5, 8))
    return centres[labels] + rng.normal(0, 0.8, (120, 8)), labels


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_cluster_indices_match_sklearn(seed):
    x, labels = _data(seed)
    assert silhouette_cosine(x, labels) == pytest.approx(silhouette_score(x, labels, metric="cosine"), rel=1e-9)
    assert davies_bouldin_cosine(x, labels) == pytest.approx(davies_bouldin_score(_unit(x), labels), rel=1e-9)
    assert calinski_harabasz_cosine(x, labels) == pytest.approx(calinski_harabasz_score(_unit(x), labels), rel=1e-9)


def test_nearest_centroid_matches_sklearn_on_the_sphere():
    x, labels = _data(2)
    train, test = slice(0, 80), slice(80, None)
    oracle = NearestCentroid().fit(_unit(x[train]), labels[train])
    expected = (oracle.predict(_unit(x[test])) == labels[test]).mean()
    # nearest cosine centroid == nearest Euclidean centroid only after normalising the centroids,
    # so compare against a naive loop as well as sklearn's (unnormalised-centroid) figure
    centroids = {k: _unit(x[train][labels[train] == k].mean(0, keepdims=True))[0] for k in set(labels[train])}
    naive = np.mean([max(centroids, key=lambda k: _unit(x[test][i:i + 1])[0] @ centroids[k]) == labels[test][i]
                     for i in range(40)])
    assert nearest_centroid_accuracy(x[train], labels[train], x[test], labels[test]) == pytest.approx(naive)
    assert abs(naive - expected) <= 0.05


def test_mean_angles_naive():
    x, labels = _data(3)
    u = _unit(x)
    intra, inter = [], []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            angle = np.degrees(np.arccos(np.clip(u[i] @ u[j], -1, 1)))
            (intra if labels[i] == labels[j] else inter).append(angle)
    assert mean_angles(x, labels) == pytest.approx((np.mean(intra), np.mean(inter)))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="two classes"):
        silhouette_cosine(np.eye(3), [0, 0, 0])
