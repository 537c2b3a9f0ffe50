"""The Python API in one call each, with no gallery: `compare`, `represent` and `find` (also `faceid.compare`...).

    import faceid
    faceid.compare("a.jpg", "b.jpg")          # {"same": True, "score": 0.96, "threshold": 0.9351, ...}
    faceid.represent("a.jpg")                  # the subject's (main face's) unit embedding
    faceid.find("a.jpg", "photos/")            # the folder's photos, most similar first

Images are paths, encoded bytes, PIL images or numpy arrays. The model (default dlib_resnet_v1, installed with
faceid[pretrained]) and the detector load once per (model, device), on first use. The threshold is the model's
default (`faceid models info MODEL`) unless one is given; a model with none needs one. `find` caches each photo's
embedding by its content (`faceid.export.embedding_cache`), so a second search of the same folder embeds nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.analysis import FaceAnalysis, image_name
from faceid.embedder import embedding_cache_key
from faceid.face_selection import DEFAULT_SELECT
from faceid.zoo.catalog import DEFAULT_MODEL

_ANALYSERS: dict[tuple[str, str], FaceAnalysis] = {}


def analyser_for(model: str = DEFAULT_MODEL, device: str = "auto") -> FaceAnalysis:
    """The one `FaceAnalysis` of (model, device) in this process."""
    key = (str(model), device)
    if key not in _ANALYSERS:
        _ANALYSERS[key] = FaceAnalysis(model, device)
    return _ANALYSERS[key]


def model_threshold(model: str, threshold: float | None = None) -> tuple[float, dict]:
    """(threshold, where it came from): the one given, else the zoo model's default."""
    from faceid.gallery.threshold_policy import check_threshold
    from faceid.zoo import default_threshold_of

    if threshold is not None:
        return check_threshold(threshold), {"source": "request"}
    default = default_threshold_of(model)
    if default is None:
        raise ValueError(f"model {model} has no default threshold: give one (threshold=..., or --threshold T), "
                         "for example measured with `faceid gallery calibrate` on people like yours")
    return default["threshold"], {key: value for key, value in default.items() if key != "threshold"}


def represent(image, model: str = DEFAULT_MODEL, device: str = "auto") -> np.ndarray:
    """The unit embedding of the subject of `image` (`FaceAnalysis.faces` gives every face's)."""
    return analyser_for(model, device).face(image).embedding


def compare(first, second, model: str = DEFAULT_MODEL, threshold: float | None = None, device: str = "auto",
            names: tuple[str, str] | None = None) -> dict:
    """1:1 without a gallery: are the subjects of two images the same person? The score is their cosine."""
    value, source = model_threshold(model, threshold)
    analyser = analyser_for(model, device)
    labels = names or (image_name(first), image_name(second))
    faces = [analyser.face(image, label) for image, label in zip((first, second), labels, strict=True)]
    score = float(faces[0].embedding @ faces[1].embedding)
    return {"same": score >= value, "score": score, "threshold": value, "threshold_source": source, "model": model,
            "faces": [{"image": label, "box": face.to_dict()["box"], "detector_score": round(face.detector_score, 5)}
                      for label, face in zip(labels, faces, strict=True)]}


def find(probe, folder: str | Path, model: str = DEFAULT_MODEL, top: int | None = 10, threshold: float | None = None,
         device: str = "auto", cache_file: str | Path | None = None, progress: bool = True) -> dict:
    """The photos under `folder` ranked by the similarity of their subject (main face) to the probe's (at most `top`;
    None: all). Photos that cannot be read, or hold no face, are listed under `skipped` with the reason."""
    from faceid.data.folder import expand_images
    from faceid.export.embedding_cache import EmbeddingCache

    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    value, source = model_threshold(model, threshold)
    analyser = analyser_for(model, device)
    probe_face = analyser.face(probe)
    paths = expand_images([folder])
    # FaceAnalysis puts the subject first: the cache's entries are the subject rule's faces
    with EmbeddingCache(cache_file, embedding_cache_key(analyser.embedder), DEFAULT_SELECT) as cache:
        faces, skipped, embedded, cached = _folder_faces(analyser, cache, paths, progress)
    rows = [{"path": str(path), "score": float(probe_face.embedding @ face.embedding), "box": face.box}
            for path, face in faces.items()]
    rows.sort(key=lambda row: -row["score"])
    for row in rows:
        row["same"] = row["score"] >= value
    return {"probe": image_name(probe), "model": model, "threshold": value, "threshold_source": source,
            "matches": rows[:top] if top else rows, "searched": len(paths), "embedded": embedded,
            "from_cache": cached, "skipped": skipped}


def _folder_faces(analyser: FaceAnalysis, cache, paths: list[Path], progress: bool) -> tuple[dict, dict, int, int]:
    """({path: its CachedFace with an embedding}, {path: why skipped}, photos looked at now, photos found cached)."""
    from faceid.export.embedding_cache import CachedFace, content_hash

    contents, skipped = {}, {}
    for path in paths:
        try:
            contents[path] = content_hash(path.read_bytes())
        except OSError as error:
            skipped[str(path)] = f"cannot be read ({error.strerror or error})"
    known = cache.get_many(sorted(set(contents.values())))
    todo = [path for path, content in contents.items() if content not in known]
    pending: dict[str, CachedFace] = {}
    for path in tqdm(todo, desc="embedding", unit="photo", disable=not progress or not todo):
        try:
            found = analyser.faces(path)
        except ValueError as error:  # the same bytes fail the same way: remembered like a photo with no face
            pending[contents[path]] = CachedFace(None, None, str(error).removeprefix(f"{path}: "))
        else:
            pending[contents[path]] = (CachedFace(found[0].embedding, found[0].to_dict()["box"]) if found
                                       else CachedFace(None, None, "no face found"))
        if len(pending) == 64:  # committed as it goes: an interrupted search keeps what it embedded
            cache.put_many(pending)
            known.update(pending)
            pending = {}
    cache.put_many(pending)
    known.update(pending)
    faces = {}
    for path, content in contents.items():
        face = known.get(content)
        if face is None:
            continue
        if face.embedding is None:
            skipped[str(path)] = face.problem
        else:
            faces[path] = face
    return faces, skipped, len(todo), len(contents) - len(todo)
