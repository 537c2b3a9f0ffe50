"""Moving galleries: export to one .npz, import (merge) an export, and re-embed under another embedder.

Clients of the gallery's public API. Re-embedding is one unit of work (`Gallery.writing(embedder=...)`): it holds
the writer lock throughout, so no enrolment can slip in between reading the templates and writing their new
vectors, and it changes nothing (database, fingerprint, embedder, index) unless every template was embedded again
and the transaction committed. The calibrated threshold and the real probes
stored by `gallery tune` belong to the old model: both are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faceid.gallery.gallery import Gallery
from faceid.gallery.records import GalleryError, Sample
from faceid.gallery.samples.resolver import SampleResolver

SETTINGS = ("embedder", "template_policy", "index_factory", "threshold")


def export_gallery(gallery: Gallery, file: str | Path) -> Path:
    """Every identity and template (embeddings included) and the gallery's settings, in one .npz."""
    with gallery.reading() as store:
        rows = store.export_rows()
        settings = {key: store.get(key) for key in SETTINGS}
    file = Path(file)
    np.savez(file, identities=np.array([r[0] for r in rows], dtype=str),
             metadata=np.array([r[1] for r in rows], dtype=str),
             sources=np.array([r[2] or "" for r in rows], dtype=str),
             hashes=np.array([r[3] or "" for r in rows], dtype=str),
             qualities=np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
             embeddings=(np.stack([np.frombuffer(r[5], np.float32) for r in rows]) if rows
                         else np.zeros((0, gallery.dim))),
             settings=np.array(json.dumps(settings)))
    return file


def import_gallery(gallery: Gallery, file: str | Path) -> dict[str, dict]:
    """Merge an exported gallery into `gallery` (same embedder fingerprint); duplicates are skipped."""
    with np.load(file, allow_pickle=False) as data:
        settings = json.loads(str(data["settings"]))
        if settings["embedder"] != gallery.fingerprint:
            raise GalleryError(f"{file} was made with embedder {settings['embedder']['fingerprint']}, this gallery "
                               f"uses {gallery.fingerprint['fingerprint']}")
        batches: dict[str, list] = {}
        metadata: dict[str, dict] = {}
        for name, meta, source, file_hash, quality, vector in zip(
                data["identities"], data["metadata"], data["sources"], data["hashes"], data["qualities"],
                data["embeddings"], strict=True):
            embedding = gallery.resolver.embedding(vector, f"{file}: {name}")
            batches.setdefault(str(name), []).append(Sample(embedding, str(source) or None, str(file_hash) or None,
                                                            None if np.isnan(quality) else float(quality)))
            metadata[str(name)] = json.loads(str(meta))
    return gallery.enroll_many(batches, metadata) if batches else {}


def reembed_gallery(gallery: Gallery, embedder, preprocessor=None) -> dict:
    """Migrate `gallery` to another embedder: every template is embedded again from its source image, and
    the gallery takes the new fingerprint. Refused, changing nothing, if any source is unreadable; any
    error before the commit (a bad image, the embedder failing) also leaves everything as it was."""
    resolver = SampleResolver(int(embedder.embedding_dim), embedder, preprocessor)
    with gallery.writing(embedder, preprocessor) as write:
        rows = write.store.template_sources()
        missing = [f"template {i}" if not source else source for i, source in rows
                   if not source or not Path(source).is_file()]
        if missing:
            raise GalleryError(f"{len(missing)} template(s) cannot be migrated: no readable source image to re-embed "
                               f"(e.g. {missing[:3]}); the gallery is unchanged. Enroll them again, and turn on "
                               "`faceid gallery keep-images GALLERY on` so that enrolled images are kept")
        updated = [(i, resolver.image(source, source).embedding) for i, source in rows]
        write.replace_embeddings(updated)
        write.set("threshold", None)
        write.set_tuning_probes(np.zeros((0, resolver.dim), np.float32))
        write.audit("reembed", None, {"templates": len(updated), "embedder": embedder.fingerprint})
    return {"templates": len(updated), "embedder": embedder.fingerprint, "threshold": "cleared: calibrate again"}
