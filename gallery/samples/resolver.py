"""`SampleResolver`: enrollment samples and probes -> validated unit embeddings (`Sample`s).

An input is an image (a path, or an RGB array run through the shared `FacePreprocessor` when there
is one, then through the embedder) or an embedding (checked for dimension, finite values and a
non-zero norm). Images are decoded, detected and embedded in batches (`prepare_faces`, then
`SampleResolver.embed_prepared`); a bad image is its own error, naming it, never its batch's. A photo's sample
carries its face (`face_summary`: box, detector score, quality, ambiguity); an enrolment passes each photo through
an `EnrolmentCheck` first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceid.arrays import NORM_EPS, l2_normalize
from faceid.data.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_rgb, read_bytes
from faceid.face_selection import rounded_box
from faceid.gallery.records import GalleryError, Sample
from faceid.gallery.samples.enrolment_check import EnrolmentCheck

IMAGE_BATCH = 32  # images decoded and detected together: bounds the memory of decoded photos


def embedder_fingerprint(embedder) -> dict:
    """What a gallery records about its embedder: vectors from embedders with different fingerprints never mix."""
    return {"fingerprint": embedder.fingerprint, "embedding_dim": int(embedder.embedding_dim),
            "preprocessing": embedder.model_input.fingerprint_text()}


@dataclass(frozen=True)
class PreparedFace:
    """An image decoded and its face detected and aligned: the crop waiting for the embedder."""

    crop: np.ndarray
    name: str
    source: str | None
    file_hash: str
    quality: float | None = None
    face: dict | None = None  # face_summary of a detected face


def is_image(item) -> bool:
    return isinstance(item, (str, Path, bytes)) or (isinstance(item, np.ndarray) and item.ndim == 3)


def read_image(image, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str | None, str]:
    """An image file path, encoded bytes or array -> (RGB uint8, source path or None, content hash).
    Raises GalleryError naming `name` when the file is missing, unreadable, over `max_pixels` (checked
    from the header, before decoding) or not an image."""
    try:
        if isinstance(image, (str, Path)):
            data = read_bytes(image)
            return decode_rgb(data, name, max_pixels), str(image), hashlib.sha256(data).hexdigest()
        if isinstance(image, bytes):
            return decode_rgb(image, name, max_pixels), None, hashlib.sha256(image).hexdigest()
        from faceid.detection import to_rgb_array  # here: it imports torch, which embeddings-only galleries skip

        array = np.asarray(image)
        return to_rgb_array(array), None, hashlib.sha256(array.tobytes()).hexdigest()
    except ImageReadError as error:
        raise GalleryError(f"{name}: {error.reason}") from None
    except FileNotFoundError:
        raise GalleryError(f"{name}: no such file") from None
    except (OSError, ValueError) as error:  # PermissionError, a directory, a bad array shape
        raise GalleryError(f"{name}: cannot be read ({getattr(error, 'strerror', None) or error})") from None


def _find_faces(preprocessor, rgbs: list[np.ndarray], names: list[str]) -> list:
    """Each image's aligned faces, detected in one batch; when the batch fails, image by image, so
    that only the image at fault (say, one too small for the detector) is reported."""
    try:
        return preprocessor.many(rgbs)
    except Exception:  # retried image by image, so that each error stays with its image
        return [_faces_of_one(preprocessor, rgb, name) for rgb, name in zip(rgbs, names, strict=True)]


def _faces_of_one(preprocessor, rgb: np.ndarray, name: str):
    try:
        return preprocessor.many([rgb])[0]
    except Exception as error:  # one odd image never stops a bulk run
        return GalleryError(f"{name}: face detection failed ({error})")


def face_summary(face, quality) -> dict:
    """What an answer says of the photo's face: box, detector score, quality measures, and whether it was ambiguous
    (with the rival's box)."""
    summary = {"box": rounded_box(face.box), "detector_score": round(float(face.score), 4),
               "quality": quality.to_dict(), "ambiguous": face.ambiguous}
    if face.ambiguous:
        summary["other_box"] = rounded_box(face.rival)
    return summary


def prepare_faces(images: list, names: list[str], preprocessor=None, max_pixels: int = DEFAULT_MAX_PIXELS,
                  check: EnrolmentCheck | None = None) -> list[PreparedFace | GalleryError]:
    """Decode each image and, with a preprocessor, detect (in one batch) and align its selected face; one entry per
    image: its `PreparedFace`, or the error naming it (with `check`, also a photo it refuses). Runs in `faceid
    enroll` workers."""
    from faceid.face_quality import measure_quality
    results: list = [None] * len(images)
    decoded = []
    for position, (image, name) in enumerate(zip(images, names, strict=True)):
        try:
            decoded.append((position, name, *read_image(image, name, max_pixels)))
        except GalleryError as error:
            results[position] = error
    rgbs = [rgb for _, _, rgb, _, _ in decoded]
    found = _find_faces(preprocessor, rgbs, [d[1] for d in decoded]) if preprocessor is not None else rgbs
    for (position, name, rgb, source, file_hash), faces in zip(decoded, found, strict=True):
        if preprocessor is None:
            results[position] = PreparedFace(rgb, name, source, file_hash)
        elif isinstance(faces, GalleryError):
            results[position] = faces
        elif not faces:
            results[position] = GalleryError(f"{name}: no face found")
        else:
            face = faces[0].face
            quality = measure_quality(face.landmarks, faces[0].crop, face.score)
            problem = check.problem(name, face, quality) if check else None
            results[position] = GalleryError(problem) if problem else PreparedFace(
                faces[0].crop, name, source, file_hash, float(face.score), face_summary(face, quality))
    return results


class SampleResolver:
    """Resolves images or embeddings of dimension `dim` to `Sample`s, with an optional embedder and preprocessor."""

    def __init__(self, dim: int, embedder=None, preprocessor=None, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.dim, self.embedder, self.preprocessor, self.max_pixels = int(dim), embedder, preprocessor, max_pixels

    def selecting(self, select: str | None) -> SampleResolver:
        """This resolver with its preprocessor keeping the face `select` names (None: as it is)."""
        if select is None or self.preprocessor is None:
            return self
        return SampleResolver(self.dim, self.embedder, self.preprocessor.selecting(select), self.max_pixels)

    def resolve(self, items, names: list[str] | None = None, check: EnrolmentCheck | None = None) -> list[Sample]:
        """Images (paths or RGB arrays) or embeddings -> validated samples; the first bad one raises (with `check`,
        also the first photo it refuses)."""
        items = list(items)
        labels = [(names[position] if names else None)
                  or (str(item) if isinstance(item, (str, Path)) else f"input {position}")
                  for position, item in enumerate(items)]
        positions = [position for position, item in enumerate(items) if is_image(item)]
        images = dict(zip(positions, self.images([items[p] for p in positions], [labels[p] for p in positions],
                                                  check), strict=True))
        samples = []
        for position, item in enumerate(items):
            if isinstance(item, Sample):
                samples.append(item)
            elif position in images:
                if isinstance(images[position], GalleryError):
                    raise images[position]
                samples.append(images[position])
            else:
                vector = self.embedding(item, labels[position])
                samples.append(Sample(vector, None, hashlib.sha256(vector.tobytes()).hexdigest()))
        return samples

    def embedding(self, vector, name: str) -> np.ndarray:
        """`vector` as a unit float32 embedding of the gallery's dimension."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise GalleryError(f"{name}: embedding has dimension {vector.size}, the gallery holds {self.dim}")
        if not np.isfinite(vector).all():
            raise GalleryError(f"{name}: embedding contains NaN or infinite values")
        norm = float(np.linalg.norm(vector))
        if norm < NORM_EPS:
            raise GalleryError(f"{name}: embedding is all zeros" if norm == 0 else
                               f"{name}: embedding has norm {norm:.3g}, too small to normalise")
        return l2_normalize(vector)

    def images(self, images: list, names: list[str],
               check: EnrolmentCheck | None = None) -> list[Sample | GalleryError]:
        """Image paths, bytes or RGB arrays -> each one's sample or the error naming it, in batches."""
        if self.embedder is None:
            return [GalleryError(f"{name}: images need the gallery to be opened with an embedder") for name in names]
        results = []
        for start in range(0, len(images), IMAGE_BATCH):
            end = start + IMAGE_BATCH
            prepared = prepare_faces(images[start:end], names[start:end], self.preprocessor, self.max_pixels, check)
            results.extend(self.embed_each(prepared))
        return results

    def image(self, image, name: str) -> Sample:
        """One image path or RGB array -> its sample: file hash, face quality (with a preprocessor), embedding."""
        result = self.images([image], [name])[0]
        if isinstance(result, GalleryError):
            raise result
        return result

    def prepare(self, image, name: str, check: EnrolmentCheck | None = None) -> PreparedFace:
        """One image path, encoded bytes (an upload) or RGB array -> its face crop, not yet embedded
        (`embed_prepared` embeds many in one batch); raises GalleryError naming `name` (or `check`'s refusal)."""
        if self.embedder is None:
            raise GalleryError(f"{name}: images need the gallery to be opened with an embedder")
        prepared = prepare_faces([image], [name], self.preprocessor, self.max_pixels, check)[0]
        if isinstance(prepared, GalleryError):
            raise prepared
        return prepared

    def embed_prepared(self, prepared: list[PreparedFace]) -> list[Sample]:
        """Embed prepared crops in one call; the first bad embedding raises."""
        samples = self.embed_each(prepared)
        for sample in samples:
            if isinstance(sample, GalleryError):
                raise sample
        return samples

    def embed_each(self, prepared: list[PreparedFace | GalleryError]) -> list[Sample | GalleryError]:
        """Embed the crops of `prepare_faces` in one call; errors pass through in their places."""
        faces = [face for face in prepared if isinstance(face, PreparedFace)]
        vectors = iter(self.embedder.embed([face.crop for face in faces]) if faces else [])
        results = []
        for face in prepared:
            if isinstance(face, GalleryError):
                results.append(face)
                continue
            try:
                embedding = self.embedding(next(vectors), face.name)
            except GalleryError as error:
                results.append(error)
            else:
                results.append(Sample(embedding, face.source, face.file_hash, face.quality, face.face))
        return results
