"""Opening a gallery together with the model it was enrolled with, for the CLI and the service.

A gallery made by `open_gallery(..., model=...)` remembers the model path and whether its images
are aligned crops (no detection) or photos (detect + align with the shared FacePreprocessor), so
later commands only name the gallery.
"""

from pathlib import Path

from faceid.export.embedder import load_embedder
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.index.backend import DEFAULT_BACKEND
from faceid.gallery.samples.kept_images import SETTING as KEEP_IMAGES
from faceid.gallery.store.database import MetadataStore
from faceid.gallery.transfer import reembed_gallery


def open_gallery(path: str | Path, model: str | None = None, aligned: bool | None = None, device: str = "auto",
                 index_factory: str = "Flat", template_policy: str = "all", create: bool = False,
                 keep_images: bool = False, backend: str | None = None,
                 backend_options: dict | None = None) -> Gallery:
    """The gallery at `path` with the model it was enrolled with (or `model`); with `create`, a new one if there is
    none, with these settings (`backend` None: the default backend)."""
    path = Path(path)
    exists = (path / "gallery.db").exists()
    if not exists and not create:
        raise GalleryError(f"{path} is not a gallery (create one with `faceid enroll {path} --model MODEL ...`)")
    if exists:
        store = MetadataStore(path / "gallery.db")
        model = model or store.get("model")
        aligned = store.get("aligned", False) if aligned is None else aligned
        store.close()
    if model is None:
        raise GalleryError(f"{path}: name the embedding model with --model")
    embedder = load_embedder(model, device)
    preprocessor = preprocessor_for(embedder, aligned, device)
    if exists:
        return Gallery(path, embedder, preprocessor)
    gallery = Gallery.create(path, embedder, index_factory=index_factory, template_policy=template_policy,
                             preprocessor=preprocessor, backend=backend or DEFAULT_BACKEND,
                             backend_options=backend_options)
    with gallery.writing() as write:
        write.set("model", _model_reference(model))
        write.set("aligned", bool(aligned))
        write.set(KEEP_IMAGES, bool(keep_images))
    return gallery


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
    return result


def _model_reference(model: str) -> str:
    return str(Path(model).resolve()) if Path(model).exists() else model


def preprocessor_for(embedder, aligned: bool, device: str):
    """The shared FacePreprocessor for photos; None for aligned crops."""
    if aligned:
        return None
    from faceid.preprocessing import FacePreprocessor

    return FacePreprocessor(select="largest", size=embedder.model_input.crop_template(), device=device)
