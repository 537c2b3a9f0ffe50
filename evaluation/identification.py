"""Identification (1:N) metrics: closed-set rank-k and CMC, open-set DIR at FPIR (FNIR as in IJB).

Inputs are a probe x gallery-sample similarity matrix and the identity of every gallery sample
and probe. An identity's score is its best gallery sample's. A probe whose identity has no
gallery sample is non-mated (an open-set impostor).
"""

import numpy as np

FPIR_TARGETS = ("1e-1", "1e-2", "1e-3")


def identity_scores(similarity: np.ndarray, gallery_labels) -> tuple[np.ndarray, np.ndarray]:
    """(scores (P, I), identities (I,)): each probe's best score against each enrolled identity."""
    similarity = np.asarray(similarity, dtype=np.float64)
    gallery_labels = np.asarray(gallery_labels)
    if similarity.ndim != 2 or similarity.shape[1] != len(gallery_labels):
        raise ValueError(f"similarity must be (probes, {len(gallery_labels)}) to match the gallery, "
                         f"got {similarity.shape}")
    identities, column = np.unique(gallery_labels, return_inverse=True)
    scores = np.full((similarity.shape[0], len(identities)), -np.inf)
    for index in range(len(identities)):
        scores[:, index] = similarity[:, column == index].max(1)
    return scores, identities


def true_ranks(scores: np.ndarray, identities: np.ndarray, probe_labels) -> np.ndarray:
    """1-based rank of each probe's true identity (ties resolved in the probe's favour); 0 when non-mated."""
    probe_labels = np.asarray(probe_labels)
    position = {identity: index for index, identity in enumerate(identities)}
    ranks = np.zeros(len(probe_labels), dtype=np.int64)
    for probe, label in enumerate(probe_labels):
        if label in position:
            true_score = scores[probe, position[label]]
            ranks[probe] = 1 + int((scores[probe] > true_score).sum())
    return ranks


def cmc(similarity, gallery_labels, probe_labels, max_rank: int | None = None) -> np.ndarray:
    """Closed-set cumulative match characteristic over mated probes: cmc[k-1] = P(rank <= k)."""
    scores, identities = identity_scores(similarity, gallery_labels)
    ranks = true_ranks(scores, identities, probe_labels)
    mated = ranks > 0
    if not mated.any():
        raise ValueError("no probe has an enrolled identity; closed-set metrics are undefined")
    max_rank = max_rank or len(identities)
    return np.array([(ranks[mated] <= k).mean() for k in range(1, max_rank + 1)])


def rank_k_accuracy(similarity, gallery_labels, probe_labels, ks=(1, 5)) -> dict[str, float]:
    curve = cmc(similarity, gallery_labels, probe_labels)
    return {f"rank{k}": float(curve[min(k, len(curve)) - 1]) for k in ks}


def dir_at_fpir(similarity, gallery_labels, probe_labels, target_fpir: float) -> float:
    """Detection and identification rate at a false-positive identification rate.

    The threshold is the most permissive one whose FPIR (share of non-mated probes whose best
    score is >= threshold) does not exceed the target; DIR is the share of mated probes whose
    true identity is ranked first with a score above it. NaN when the target is below
    1 / number of non-mated probes, or when there is no mated probe.
    """
    scores, identities = identity_scores(similarity, gallery_labels)
    ranks = true_ranks(scores, identities, probe_labels)
    mated = ranks > 0
    non_mated_best = np.sort(scores[~mated].max(1))[::-1]
    if not mated.any() or target_fpir * len(non_mated_best) < 1:
        return float("nan")
    allowed = int(np.floor(target_fpir * len(non_mated_best) + 1e-9))
    best = scores[mated].max(1)
    if allowed >= len(non_mated_best):
        accepted = np.ones(mated.sum(), dtype=bool)
    else:
        accepted = best > non_mated_best[allowed]
    return float(((ranks[mated] == 1) & accepted).mean())


def identification_report(similarity, gallery_labels, probe_labels) -> dict:
    """rank-1/rank-5, CMC, DIR and FNIR at FPIR 1e-1..1e-3, and the probe counts."""
    scores, identities = identity_scores(similarity, gallery_labels)
    ranks = true_ranks(scores, identities, probe_labels)
    report = {"num_gallery_identities": int(len(identities)), "num_mated_probes": int((ranks > 0).sum()),
              "num_non_mated_probes": int((ranks == 0).sum())}
    report.update(rank_k_accuracy(similarity, gallery_labels, probe_labels))
    report["cmc"] = cmc(similarity, gallery_labels, probe_labels).tolist()
    dirs = {key: dir_at_fpir(similarity, gallery_labels, probe_labels, float(key)) for key in FPIR_TARGETS}
    report["dir_at_fpir"] = dirs
    report["fnir_at_fpir"] = {key: 1 - value for key, value in dirs.items()}
    return report
