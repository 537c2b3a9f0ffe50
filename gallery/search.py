"""From index hits to identities: each probe's best k identities (an identity scores its best template).

Templates of one identity can fill the first hits, so the search widens (4x at a time) until every probe has
k distinct identities, the index is exhausted, or the backend's result cap is reached; a cap can leave a probe
with fewer than k though more are enrolled, which is reported per probe (`cut`).
"""

import numpy as np


def top_identities(index, queries: np.ndarray, k: int, per_identity: bool, owner: dict[int, int],
                   names: dict[int, str]) -> tuple[list[list[tuple[str, float]]], list[bool]]:
    """([(name, score)] best first, per probe; whether the result cap cut that probe's list short of k)."""
    size, cap = len(index), index.capabilities.max_results
    widest = size if cap is None else min(size, cap)
    searched = min(widest, k if per_identity else max(4 * k, k + 16))
    while True:
        scores, ids = index.search(queries, searched)
        candidates = [_best_per_identity(row_scores, row_ids, k, owner, names)
                      for row_scores, row_ids in zip(scores, ids, strict=True)]
        if searched >= widest or all(len(c) >= min(k, len(names)) for c in candidates):
            break
        searched = min(widest, searched * 4)
    indexed = len(set(owner.values())) if widest < size else 0
    return candidates, [len(top) < min(k, indexed) for top in candidates]


def _best_per_identity(scores, ids, k: int, owner: dict[int, int], names: dict[int, str]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for score, template in zip(scores, ids, strict=True):
        if int(template) not in owner:  # -1 (no hit), or written since by another user of a shared index
            continue
        name = names[owner[int(template)]]
        if name not in best:
            best[name] = float(score)
        if len(best) == k:
            break
    return list(best.items())
