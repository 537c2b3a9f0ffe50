"""Embedding a list of aligned face images with any embedder, cached per model and image.

The cache is one .npz per embedder fingerprint; an entry is reused while the image's size and
modification time are unchanged, so re-running a report costs only the metrics. Unreadable
images are reported and left out, never fatal.
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.arrays import l2_normalize
from faceid.data.images import ImageReadError, read_rgb
from faceid.embedder import Embedder
from faceid.files import atomic_write

NO_FACE = "no face found"
MISSING = "no such file"


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


def _load_cache(cache_file: Path) -> dict[str, tuple[str, np.ndarray]]:
    if not cache_file.is_file():
        return {}
    with np.load(cache_file, allow_pickle=False) as data:
        return {p: (s, e) for p, s, e in zip(data["paths"], data["stamps"], data["embeddings"], strict=True)}


def _save_cache(cache_file: Path, entries: dict[str, tuple[str, np.ndarray]]) -> None:
    paths = sorted(entries)
    with atomic_write(cache_file) as temporary:
        np.savez(temporary, paths=np.array(paths), stamps=np.array([entries[p][0] for p in paths]),
                 embeddings=np.stack([entries[p][1] for p in paths]))


def embed_images(paths: list[Path], embedder: Embedder, cache_dir: Path | None = None, batch_size: int = 64,
                 progress: bool = True, preprocessor=None) -> tuple[dict[Path, np.ndarray], dict[Path, str]]:
    """({path: embedding}, {path: error}) for every path; cached entries are not recomputed.

    Images are aligned crops, or, with a `preprocessor` (the shared `FacePreprocessor`), photos that are
    detected and aligned first; an image without a face is then reported like an unreadable one."""
    key = embedder.fingerprint + ("-detect" if preprocessor is not None else "")
    cache_file = Path(cache_dir) / f"{key}.npz" if cache_dir else None
    cache = _load_cache(cache_file) if cache_file else {}
    embeddings, failures, todo = {}, {}, []
    for path in paths:
        key = str(Path(path).resolve())
        if not Path(path).is_file():
            failures[path] = f"{path}: {MISSING}"
        elif key in cache and cache[key][0] == _stamp(Path(path)):
            embeddings[path] = cache[key][1]
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
                faces = preprocessor(crop)
                if not faces:
                    failures[path] = f"{path}: {NO_FACE}"
                    continue
                crop = faces[0].crop
            crops.append(crop)
            batch_paths.append(path)
        if crops:
            for path, vector in zip(batch_paths, embedder.embed(crops), strict=True):
                embeddings[path] = vector
                cache[str(Path(path).resolve())] = (_stamp(Path(path)), vector)
        bar.update(len(todo[start:start + batch_size]))
    bar.close()
    if cache_file and todo:
        _save_cache(cache_file, cache)
    return embeddings, failures


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
    return embeddings, failures
