"""`faceid gallery tune GALLERY --probes PATH`: tune an approximate index again with real probe faces.

The tuner's own queries are enrolled vectors plus noise (`gallery.index.tuning`); real probes — other photos of
enrolled people, embedded with the gallery's own embedder — say how real queries fall between the lists.
PATH is a folder of images (searched recursively; each detected, aligned and embedded like a probe of
`faceid identify`; unreadable or faceless images are reported and skipped) or the `.npz` / `.npy` written by
`faceid embed`. The new record must reach recall@1 0.99 on the self-queries and on the probes each; it is
stored in gallery.db and shown by `gallery stats`. The tune bumps the gallery's generation: a process that already
has the gallery open (`faceid serve`) applies the new record at its next query, as it sees writes, and never writes
its older record back (records are versioned, `gallery.index.tuning`). The probe embeddings are stored too (at most
`STORED_PROBES`: more are subsampled, seeded, with a note), and every later rebuild (the gallery grown past its size
band, a missing or damaged snapshot) tunes with them again; `gallery stats` shows how many are stored, and the
record's `real_queries` how many it used. Re-embedding the gallery drops them (they are of the old model).
"""

from pathlib import Path

import numpy as np

from faceid.gallery.index import tuning
from faceid.gallery.records import GalleryError

SHOWN_ERRORS = 10  # skipped images listed by name (the count is always given)
STORED_PROBES = 2_000  # probes kept for later rebuilds (4 MB at 512-d), as many as the tuner's own queries


def probe_embeddings(gallery, probes: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """(unit embeddings (n, gallery dim), {image: why it was skipped}) of the probes at `probes`."""
    probes = Path(probes)
    if probes.is_file() and probes.suffix in (".npz", ".npy"):
        return _stored_embeddings(gallery, probes), {}
    if not probes.is_dir():
        raise GalleryError(f"{probes}: not a folder of probe images nor a .npz/.npy of embeddings")
    from faceid.data.folder import expand_images

    paths = expand_images([probes])
    if gallery.resolver.embedder is None:
        raise GalleryError(f"{gallery.path}: probe images need the gallery's model (open it with --model)")
    results = gallery.resolver.images(paths, [str(path) for path in paths])
    skipped = {str(path): str(result) for path, result in zip(paths, results, strict=True)
               if isinstance(result, GalleryError)}
    vectors = [result.embedding for result in results if not isinstance(result, GalleryError)]
    if not vectors:
        raise GalleryError(f"{probes}: no face found in any of its {len(paths)} images "
                           f"(e.g. {next(iter(skipped.values()))})")
    return np.stack(vectors), skipped


def _stored_embeddings(gallery, file: Path) -> np.ndarray:
    """The embeddings of a `faceid embed` output, each checked like an enrolled embedding."""
    if file.suffix == ".npz":
        with np.load(file) as loaded:
            if "embeddings" not in loaded:
                raise GalleryError(f"{file}: no 'embeddings' array (write it with `faceid embed --out X.npz`)")
            vectors = loaded["embeddings"]
    else:
        vectors = np.load(file)
    if vectors.ndim != 2 or vectors.shape[1] != gallery.dim or not len(vectors):
        raise GalleryError(f"{file}: probe embeddings have shape {vectors.shape}, the gallery holds "
                           f"{gallery.dim}-d vectors")
    return np.stack([gallery.resolver.embedding(vector, f"{file} row {row}") for row, vector in enumerate(vectors)])


def tune_with_probes(gallery, probes: str | Path) -> dict:
    """Embed the probes at `probes`, tune the gallery's index with them (under the writer lock), store the
    probes and the record (a newer version, in a new generation) and return it with the probes used and skipped."""
    if not gallery.index.capabilities.tunes_search:
        raise GalleryError(f"{gallery.path}: the {gallery.backend['name']} backend tunes its own index; "
                           "nothing to tune here")
    _refuse_untunable(gallery)  # before embedding every probe image; again under the lock, where it counts
    queries, skipped = probe_embeddings(gallery, probes)
    note = None
    if len(queries) > STORED_PROBES:
        note = (f"{len(queries)} probes given: a seeded sample of {STORED_PROBES} tunes the index and is stored "
                "for later rebuilds")
        queries = queries[np.sort(np.random.default_rng(0).choice(len(queries), STORED_PROBES, replace=False))]
    with gallery.writing() as write:  # the new generation: other processes take the record at their next replay
        index = _refuse_untunable(gallery)
        record = index.retune(write.store.index_vectors(gallery.policy == "mean")[1], queries)
        write.set_tuning_probes(queries)
        tuning.save_record(write, record)
        write.audit("tune", None, {"probes": len(queries), "parameter": record["parameter"],
                                   "value": record["value"], "version": record["version"]})
        write.bump()
    shown = dict(list(skipped.items())[:SHOWN_ERRORS])
    return {"tuning": record, "probes": len(queries), "skipped": len(skipped), "skipped_images": shown,
            **({"note": note} if note else {})}


def _refuse_untunable(gallery):
    """The gallery's index, if it has a search parameter for the tuner to choose; else a GalleryError saying why."""
    index = gallery.index
    if index.search_parameters:
        raise GalleryError(f"{gallery.path}: its search parameters are set explicitly "
                           f"({index.search_parameters}); nothing to tune")
    if not index.tunable:
        limit = f" (`auto` stays exact up to {tuning.EXACT_MAX_FLOATS // index.dim:,} {index.dim}-d templates)"
        raise GalleryError(f"{gallery.path}: the index is exact ({index.built_factory}); nothing to tune"
                           + (limit if index.factory == tuning.AUTO else ""))
    return index
