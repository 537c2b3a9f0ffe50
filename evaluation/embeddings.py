"""Embedding a list of aligned face images with any embedder, cached per model and image.

The cache is one .npz per embedder fingerprint (and, for photos, face selection and no-face rule); an entry is
reused while the image's size and modification time are unchanged, so re-running a report costs only the metrics.
Unreadable images are reported and left out, never fatal. For photos, each image may carry remarks: the face chosen
was ambiguous (`AMBIGUOUS`), or no face was found and the photo's centre was embedded (`CENTRED`).
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.arrays import l2_normalize
from faceid.data.images import ImageReadError, read_rgb
from faceid.embedder import Embedder, embedding_cache_key
from faceid.files import atomic_write

NO_FACE = "no face found"
MISSING = "no such file"
CENTRED = "no face found (scored from the centre)"
AMBIGUOUS = "ambiguous"
NO_FACE_RULES = ("center", "skip")


def failure_counts(failures: dict) -> dict:
    """How many images failed for each reason: no face found, missing, or unreadable (anything else)."""
    counts = {NO_FACE: 0, "missing": 0, "unreadable": 0}
    for message in failures.values():
        kind = NO_FACE if message.endswith(NO_FACE) else "missing" if message.endswith(MISSING) else "unreadable"
        counts[kind] += 1
    return counts


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _load_cache(cache_file: Path) -> dict[str, tuple[str, np.ndarray, str]]:
    if not cache_file.is_file():
        return {}
    with np.load(cache_file, allow_pickle=False) as data:
        remarks = data["remarks"] if "remarks" in data else [""] * len(data["paths"])
        return {p: (s, e, str(r)) for p, s, e, r in zip(data["paths"], data["stamps"], data["embeddings"], remarks,
                                                          strict=True)}


def _save_cache(cache_file: Path, entries: dict[str, tuple[str, np.ndarray, str]]) -> None:
    paths = sorted(entries)
    with atomic_write(cache_file) as temporary:
        np.savez(temporary, paths=np.array(paths), stamps=np.array([entries[p][0] for p in paths]),
                 embeddings=np.stack([entries[p][1] for p in paths]), remarks=np.array([entries[p][2] for p in paths]))


def cache_key(embedder: Embedder, preprocessor=None, no_face: str = "center") -> str:
    """The cache file's name: the embedder, and for photos the crop, the face selection and the no-face rule."""
    if preprocessor is None:
        return embedder.fingerprint
    return f"{embedding_cache_key(embedder)}-detect-{preprocessor.detector.select}-{no_face}"


def embed_images(paths: list[Path], embedder: Embedder, cache_dir: Path | None = None, batch_size: int = 64,
                 progress: bool = True, preprocessor=None,
                 no_face: str = "center") -> tuple[dict[Path, np.ndarray], dict[Path, str], dict[Path, str]]:
    """({path: embedding}, {path: error}, {path: remark}) for every path; cached entries are not recomputed.

    Images are aligned crops, or, with a `preprocessor` (the shared `FacePreprocessor`), photos that are detected
    and aligned first. A photo without a face is then embedded from its centre (`no_face="center"`, remark
    `CENTRED`) or reported like an unreadable one (`"skip"`); a photo whose chosen face is ambiguous is remarked
    `AMBIGUOUS`."""
    if no_face not in NO_FACE_RULES:
        raise ValueError(f"no_face must be one of {', '.join(NO_FACE_RULES)}, got {no_face!r}")
    cache_file = Path(cache_dir) / f"{cache_key(embedder, preprocessor, no_face)}.npz" if cache_dir else None
    cache = _load_cache(cache_file) if cache_file else {}
    embeddings, failures, remarks, todo = {}, {}, {}, []
    for path in paths:
        key = str(Path(path).resolve())
        if not Path(path).is_file():
            failures[path] = f"{path}: {MISSING}"
        elif key in cache and cache[key][0] == _stamp(Path(path)):
            embeddings[path] = cache[key][1]
            if cache[key][2]:
                remarks[path] = cache[key][2]
        else:
            todo.append(path)
    bar = tqdm(total=len(todo), desc="embedding", unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch_size):
        batch_paths, crops = [], []
        for path in todo[start:start + batch_size]:
            try:
                crop = read_rgb(path)
            except ImageReadError as error:
                failures[path] = str(error)
                continue
            if preprocessor is not None:
                crop = _photo_crop(preprocessor, crop, path, no_face, failures, remarks)
                if crop is None:
                    continue
            crops.append(crop)
            batch_paths.append(path)
        if crops:
            for path, vector in zip(batch_paths, embedder.embed(crops), strict=True):
                embeddings[path] = vector
                cache[str(Path(path).resolve())] = (_stamp(Path(path)), vector, remarks.get(path, ""))
        bar.update(len(todo[start:start + batch_size]))
    bar.close()
    if cache_file and todo:
        _save_cache(cache_file, cache)
    return embeddings, failures, remarks


def _photo_crop(preprocessor, rgb: np.ndarray, path: Path, no_face: str, failures: dict, remarks: dict):
    """The crop of the photo's chosen face (or of its centre), recording a failure or a remark; None when skipped."""
    faces = preprocessor.many([rgb])[0]
    if faces:
        if faces[0].face.ambiguous:
            remarks[path] = AMBIGUOUS
        return faces[0].crop
    if no_face == "skip":
        failures[path] = f"{path}: {NO_FACE}"
        return None
    remarks[path] = CENTRED
    return preprocessor.centred(rgb).crop


def remark_counts(remarks: dict) -> dict:
    """How many photos were scored from the centre and how many had an ambiguous face, with the latter's names."""
    ambiguous = sorted(str(path) for path, remark in remarks.items() if remark == AMBIGUOUS)
    return {"no_face_scored_from_centre": sum(1 for remark in remarks.values() if remark == CENTRED),
            "ambiguous": len(ambiguous), "ambiguous_photos": ambiguous}


def load_external_embeddings(npz_file: str | Path, paths: list[Path], root: Path) -> tuple[dict, dict]:
    """Embeddings made by another system: an .npz with arrays `paths` and `embeddings`.

    Its paths may be absolute or relative to `root`. Returns ({path: unit embedding}, {path: error}).
    """
    with np.load(npz_file, allow_pickle=False) as data:
        if "paths" not in data or "embeddings" not in data:
            raise ValueError(f"{npz_file} must hold arrays 'paths' and 'embeddings', has {sorted(data.files)}")
        given_paths, vectors = data["paths"], data["embeddings"].astype(np.float32)
    if vectors.ndim != 2 or len(vectors) != len(given_paths):
        raise ValueError(f"{npz_file}: embeddings must be (N, d) with N = len(paths) = {len(given_paths)}, "
                         f"got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{npz_file}: embeddings contain NaN or infinite values")
    lookup = {}
    for given, vector in zip(given_paths, vectors, strict=True):
        given = Path(str(given))
        lookup[str((given if given.is_absolute() else root / given).resolve())] = l2_normalize(vector)
    embeddings, failures = {}, {}
    for path in paths:
        key = str(Path(path).resolve())
        if key in lookup:
            embeddings[path] = lookup[key]
        else:
            failures[path] = f"{path}: not in {npz_file}"
    return embeddings, failures, {}
