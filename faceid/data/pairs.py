"""Verification pair protocols built from an identity-folder tree.

Folds are identity-disjoint, as in LFW's view 2: identities are shuffled by seed and dealt to
folds, and each fold's pairs use only its own identities, half genuine and half impostor.
"""

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from faceid.data.folder import LabelledImage


@dataclass(frozen=True)
class PairProtocol:
    """Pairs of indices into `images`, with genuine/impostor labels and a fold per pair."""

    images: list[LabelledImage]
    first: np.ndarray
    second: np.ndarray
    is_same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.first)


def build_verification_pairs(images: list[LabelledImage], folds: int = 10, pairs_per_fold: int = 300,
                             seed: int = 0) -> PairProtocol:
    """Balanced genuine/impostor pairs in `folds` identity-disjoint folds.

    Each fold holds up to `pairs_per_fold` pairs (half of each kind, fewer when its identities do
    not allow that many distinct pairs). Raises ValueError when there are fewer identities than folds.
    """
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[int]] = {}
    for index, item in enumerate(images):
        by_identity.setdefault(item.identity, []).append(index)
    names = sorted(by_identity)
    if len(names) < 2 * folds:
        raise ValueError(f"{len(names)} identities cannot fill {folds} identity-disjoint folds "
                         f"(at least 2 per fold are needed)")
    order = rng.permutation(len(names))
    first, second, same, fold_of = [], [], [], []
    for fold in range(folds):
        members = [names[i] for i in order[fold::folds]]
        genuine = [pair for name in members for pair in combinations(by_identity[name], 2)]
        half = pairs_per_fold // 2
        picked = rng.permutation(len(genuine))[:half]
        genuine = [genuine[i] for i in picked]
        impostor = set()
        attempts = 0
        while len(impostor) < min(half, len(genuine)) and attempts < 100 * half:
            attempts += 1
            a, b = rng.choice(len(members), size=2, replace=False)
            pair = (int(rng.choice(by_identity[members[a]])), int(rng.choice(by_identity[members[b]])))
            impostor.add(tuple(sorted(pair)))
        for pairs, label in ((genuine, True), (sorted(impostor), False)):
            for a, b in pairs:
                first.append(a)
                second.append(b)
                same.append(label)
                fold_of.append(fold)
    return PairProtocol(images, np.array(first), np.array(second), np.array(same, bool), np.array(fold_of))
