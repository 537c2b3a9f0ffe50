"""Opening a gallery together with the model it was enrolled with, for the CLI and the service.

A gallery made by `open_gallery(..., model=...)` remembers the model path and whether its images
are aligned crops (no detection) or photos (detect + align with the shared FacePreprocessor), so
later commands only name the gallery.
"""

import shutil
from contextlib import contextmanager
from pathlib import Path

from faceid.export.embedder import load_embedder
from faceid.face_selection import DEFAULT_SELECT
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.index.backend import DEFAULT_BACKEND
from faceid.gallery.samples.enrolment_check import EnrolmentCheck
from faceid.gallery.samples.kept_images import SETTING as KEEP_IMAGES
from faceid.gallery.store.database import MetadataStore
from faceid.gallery.transfer import reembed_gallery
from faceid.zoo import default_threshold_of


def open_gallery(path: str | Path, model: str | None = None, aligned: bool | None = None, device: str = "auto",
                 index_factory: str = "Flat", template_policy: str = "all", create: bool = False,
                 keep_images: bool = False, backend: str | None = None, backend_options: dict | None = None,
                 select: str | None = None, allow_low_quality: bool = False) -> Gallery:
    """The gallery at `path` with the model it was enrolled with (or `model`); with `create`, a new one if there is
    none, with these settings (`backend` None: the default backend). Photos' faces are chosen by `select` (None:
    the subject rule); an enrolment checks each photo (`EnrolmentCheck.from_options(select, allow_low_quality)`)."""
    path = Path(path)
    exists = (path / "gallery.db").exists()
    if not exists and not create:
        raise GalleryError(f"{path} is not a gallery (create one with `faceid enroll {path} --model MODEL ...`)")
    if exists:
        store = MetadataStore(path / "gallery.db")
        try:
            stored = store.get("model")
            if model is not None and stored is not None and _model_reference(model) != stored:
                raise GalleryError(_other_model(path, stored, model, store))  # before anything is loaded or fetched
            model = stored or model
            aligned = store.get("aligned", False) if aligned is None else aligned
        finally:
            store.close()
    if model is None:
        raise GalleryError(f"{path}: name the embedding model with --model (`faceid models list` shows the known ones)")
    embedder = load_embedder(model, device)
    preprocessor = preprocessor_for(embedder, aligned, device, select or DEFAULT_SELECT)
    if exists:
        gallery = Gallery(path, embedder, preprocessor)
        gallery.enrolment_check = EnrolmentCheck.from_options(select, allow_low_quality)
        return gallery
    gallery = Gallery.create(path, embedder, index_factory=index_factory, template_policy=template_policy,
                             preprocessor=preprocessor, backend=backend or DEFAULT_BACKEND,
                             backend_options=backend_options)
    gallery.enrolment_check = EnrolmentCheck.from_options(select, allow_low_quality)
    with gallery.writing() as write:
        write.set("model", _model_reference(model))
        write.set("aligned", bool(aligned))
        write.set(KEEP_IMAGES, bool(keep_images))
        write.set("threshold", default_threshold_of(model))  # None: calibrate before identifying
    return gallery


class NewGallery:
    """What `removed_unless_kept` yields: call `keep()` once the new gallery holds what it was made for."""

    def __init__(self):
        self.kept = False

    def keep(self) -> None:
        self.kept = True


@contextmanager
def removed_unless_kept(path: str | Path):
    """A gallery that the block creates at `path` is removed again, with every file it added, unless the block
    calls `keep()`: a failed enrolment leaves nothing half-made. An existing gallery is never touched."""
    path = Path(path)
    new = NewGallery()
    if (path / "gallery.db").exists():
        new.keep()
    before = set(path.iterdir()) if path.is_dir() else None
    try:
        yield new
    finally:
        if not new.kept:
            _remove_new_files(path, before)


def _remove_new_files(path: Path, before: set | None) -> None:
    if before is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    for entry in set(path.iterdir()) - before if path.is_dir() else ():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _other_model(path: Path, stored: str, model: str, store: MetadataStore) -> str:
    """Why `model` cannot open a gallery enrolled with `stored`, and what will work."""
    sources = store.template_sources()
    missing = sum(1 for _, source in sources if not source or not Path(source).is_file())
    head = (f"{path} was enrolled with model {stored}; --model {model} is another model, whose embeddings cannot be "
            f"compared with the gallery's. Leave --model out to use {stored}")
    if not sources or missing == 0:
        return (f"{head}, or move the gallery to {model} with `faceid gallery reembed {path} --model {model}` "
                f"(every one of its {len(sources)} templates still has its image)")
    return (f"{head}. It cannot be moved to {model}: {missing} of its {len(sources)} templates have no image left "
            f"to embed again (the gallery keeps no copies). Enroll into a new gallery with --model {model} "
            "--keep-images, so that a later move works")


def reembed_to(path: str | Path, model: str, device: str = "auto") -> dict:
    """`faceid gallery reembed`: migrate the gallery at `path` to `model`, every template embedded again from
    its image (kept inside the gallery, or its original file); the old model is not needed."""
    path = Path(path)
    if not (path / "gallery.db").exists():
        raise GalleryError(f"{path} is not a gallery")
    with Gallery(path) as gallery:
        embedder = load_embedder(model, device)
        preprocessor = preprocessor_for(embedder, gallery.setting("aligned", False), device)
        result = reembed_gallery(gallery, embedder, preprocessor)
        with gallery.writing() as write:
            write.set("model", _model_reference(model))
            if (default := default_threshold_of(model)) is not None:
                write.set("threshold", default)
                result["threshold"] = default
    return result


def _model_reference(model: str) -> str:
    return str(Path(model).resolve()) if Path(model).exists() else model


def preprocessor_for(embedder, aligned: bool, device: str, select: str = DEFAULT_SELECT):
    """The shared FacePreprocessor for photos, keeping the face `select` names; None for aligned crops."""
    if aligned:
        return None
    from faceid.preprocessing import FacePreprocessor

    return FacePreprocessor(select=select, size=embedder.model_input.crop_template(), device=device)
