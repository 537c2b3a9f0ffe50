"""Evaluation protocols: verification pairs and identification gallery/probe splits.

Built from any identity-folder tree with a seed, or read from LFW's `pairs.txt` and a generic
`path1,path2,label` CSV. Folds are identity-disjoint when faceid builds them, as in LFW's view 2.
"""

import csv
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from faceid.data.folder import LabelledImage


class ProtocolError(ValueError):
    """A protocol file that cannot be read, or that names images which do not exist."""


@dataclass(frozen=True)
class PairProtocol:
    """Pairs of indices into `paths`, with genuine/impostor labels and a fold per pair (or None)."""

    paths: list[Path]
    first: np.ndarray
    second: np.ndarray
    is_same: np.ndarray
    fold: np.ndarray | None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.first)


@dataclass(frozen=True)
class IdentificationProtocol:
    """Gallery and probe images; probes of identities absent from the gallery are open-set impostors."""

    gallery: list[LabelledImage]
    probes: list[LabelledImage]

    @property
    def enrolled(self) -> set[str]:
        return {item.identity for item in self.gallery}


def build_verification_pairs(images: list[LabelledImage], folds: int = 10, pairs_per_fold: int = 300,
                             seed: int = 0) -> PairProtocol:
    """Balanced genuine/impostor pairs in `folds` identity-disjoint folds.

    Each fold holds up to `pairs_per_fold` pairs (half of each kind, fewer when its identities do
    not allow that many distinct pairs). Raises ValueError when there are fewer than 2 identities per fold.
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
        genuine = [genuine[i] for i in rng.permutation(len(genuine))[:half]]
        impostor = set()
        attempts = 0
        while len(impostor) < min(half, max(len(genuine), 1)) and attempts < 100 * half:
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
    return PairProtocol([item.path for item in images], np.array(first, dtype=np.int64),
                        np.array(second, dtype=np.int64), np.array(same, bool), np.array(fold_of))


def build_all_pairs(images: list[LabelledImage], seed: int = 0, max_genuine: int = 3000) -> PairProtocol:
    """Every genuine pair (up to `max_genuine`, seeded) and as many random impostor pairs, without
    folds (metrics then use stratified folds): for evaluation sets too small for identity-disjoint folds."""
    rng = np.random.default_rng(seed)
    identities = np.array([item.identity for item in images])
    genuine = [(a, b) for a, b in combinations(range(len(images)), 2) if identities[a] == identities[b]]
    genuine = [genuine[i] for i in np.sort(rng.permutation(len(genuine))[:max_genuine])]
    if not genuine or len(set(identities)) < 2:
        raise ValueError("all-pairs protocol needs at least two identities, one of them with two images")
    impostor: set[tuple[int, int]] = set()
    while len(impostor) < len(genuine):
        a, b = (int(i) for i in rng.choice(len(images), size=2, replace=False))
        if identities[a] != identities[b]:
            impostor.add((min(a, b), max(a, b)))
    pairs = genuine + sorted(impostor)
    return PairProtocol([item.path for item in images], np.array([a for a, _ in pairs], dtype=np.int64),
                        np.array([b for _, b in pairs], dtype=np.int64),
                        np.array([True] * len(genuine) + [False] * len(impostor)), None)


def build_pair_protocol(images: list[LabelledImage], folds: int = 10, pairs_per_fold: int = 300,
                           seed: int = 0) -> PairProtocol:
    """Identity-disjoint folds when there are enough identities (2 per fold), else all pairs."""
    if len({item.identity for item in images}) >= 2 * folds:
        return build_verification_pairs(images, folds, pairs_per_fold, seed)
    return build_all_pairs(images, seed, max_genuine=folds * pairs_per_fold // 2)


def build_identification_split(images: list[LabelledImage], unknown_fraction: float = 0.3,
                               gallery_per_identity: int = 1, seed: int = 0) -> IdentificationProtocol:
    """Enroll `gallery_per_identity` images of each of (1 − unknown_fraction) of the identities;
    every other image is a probe. Identities with too few images to leave a probe are not enrolled."""
    if not 0 <= unknown_fraction < 1:
        raise ValueError(f"unknown_fraction must lie in [0, 1), got {unknown_fraction}")
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[LabelledImage]] = {}
    for item in images:
        by_identity.setdefault(item.identity, []).append(item)
    names = sorted(by_identity)
    names = [names[i] for i in rng.permutation(len(names))]
    unknown = set(names[: int(round(unknown_fraction * len(names)))])
    gallery, probes = [], []
    for name in sorted(by_identity):
        items = [by_identity[name][i] for i in rng.permutation(len(by_identity[name]))]
        if name in unknown or len(items) <= gallery_per_identity:
            probes.extend(items)
        else:
            gallery.extend(items[:gallery_per_identity])
            probes.extend(items[gallery_per_identity:])
    if not gallery:
        raise ValueError("no identity has enough images to be enrolled and still leave a probe")
    return IdentificationProtocol(gallery, probes)


def _resolve(root: Path, relatives: list[tuple[str, str, bool, int | None]], skip_missing: bool, source: str,
             line_numbers: list[int]) -> PairProtocol:
    paths: dict[Path, int] = {}
    first, second, same, fold_of, missing, skipped = [], [], [], [], [], []
    for (a, b, label, fold), line in zip(relatives, line_numbers, strict=True):
        absent = [p for p in (a, b) if not (root / p).is_file()]
        if absent:
            missing.extend(f"{source}:{line}: {root / p}" for p in absent)
            skipped.append(f"{source}:{line}")
            continue
        indices = [paths.setdefault(root / p, len(paths)) for p in (a, b)]
        first.append(indices[0])
        second.append(indices[1])
        same.append(label)
        fold_of.append(fold)
    if missing and not skip_missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise ProtocolError(f"{len(missing)} image(s) named by {source} do not exist (use --skip-missing to skip "
                            f"those pairs):\n  {shown}")
    has_folds = bool(fold_of) and fold_of[0] is not None
    return PairProtocol(list(paths), np.array(first, dtype=np.int64), np.array(second, dtype=np.int64),
                        np.array(same, bool), np.array(fold_of) if has_folds else None, skipped)


def read_lfw_pairs(pairs_file: str | Path, root: str | Path, skip_missing: bool = False,
                   extension: str = "jpg") -> PairProtocol:
    """LFW `pairs.txt`: a header `folds n`, then per fold n lines `name n1 n2` (same person) and
    n lines `name1 n1 name2 n2` (different people); images are `root/name/name_0001.jpg`."""
    pairs_file, root = Path(pairs_file), Path(root)
    lines = pairs_file.read_text().splitlines()
    if not lines:
        raise ProtocolError(f"{pairs_file} is empty")
    try:
        folds, per_half = (int(v) for v in lines[0].split())
    except ValueError:
        raise ProtocolError(f"{pairs_file}:1: header must be 'folds pairs_per_half', got {lines[0]!r}") from None

    def image(name: str, number: str, line: int) -> str:
        if not number.isdigit():
            raise ProtocolError(f"{pairs_file}:{line}: image number must be an integer, got {number!r}")
        return f"{name}/{name}_{int(number):04d}.{extension}"

    entries, numbers = [], []
    for line_number, text in enumerate(lines[1:], start=2):
        fields = text.split()
        if not fields:
            continue
        index = len(entries)
        fold = index // (2 * per_half)
        if len(fields) == 3:
            first, second = image(fields[0], fields[1], line_number), image(fields[0], fields[2], line_number)
            entries.append((first, second, True, fold))
        elif len(fields) == 4:
            first, second = image(fields[0], fields[1], line_number), image(fields[2], fields[3], line_number)
            entries.append((first, second, False, fold))
        else:
            raise ProtocolError(f"{pairs_file}:{line_number}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                                f"got {len(fields)} fields: {text!r}")
        numbers.append(line_number)
    if len(entries) != folds * 2 * per_half:
        raise ProtocolError(f"{pairs_file}: header announces {folds} folds x {2 * per_half} pairs, "
                            f"found {len(entries)} pair lines")
    return _resolve(root, entries, skip_missing, str(pairs_file), numbers)


def read_csv_pairs(pairs_file: str | Path, root: str | Path, skip_missing: bool = False) -> PairProtocol:
    """A CSV with header `path1,path2,label` (label 1 same, 0 different; paths relative to `root`)."""
    pairs_file, root = Path(pairs_file), Path(root)
    entries, numbers = [], []
    with open(pairs_file, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path1", "path2", "label"} <= set(reader.fieldnames):
            raise ProtocolError(f"{pairs_file}:1: header must hold path1,path2,label, got {reader.fieldnames}")
        for line_number, row in enumerate(reader, start=2):
            if row["label"] not in ("0", "1"):
                raise ProtocolError(f"{pairs_file}:{line_number}: label must be 0 or 1, got {row['label']!r}")
            entries.append((row["path1"], row["path2"], row["label"] == "1", None))
            numbers.append(line_number)
    return _resolve(root, entries, skip_missing, str(pairs_file), numbers)
