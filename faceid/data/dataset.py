"""Training datasets of aligned faces: identity-folder trees (or their prepared crop cache) and
insightface RecordIO packs.

Both yield (RGB uint8 crop, label) and expose `labels` (one int per sample) so samplers can group
by identity. A sample that cannot be decoded is logged once and replaced by another sample of the
same identity (or the next sample), so one corrupt file never stops a training run.
"""

import logging
from pathlib import Path

import numpy as np

from faceid.data.crop_cache import CropCache, is_crop_cache
from faceid.data.folder import LabelledImage, list_identity_folder
from faceid.data.images import ImageReadError, read_rgb
from faceid.data.recordio import RecordIOReader

log = logging.getLogger(__name__)


def split_identities(images: list[LabelledImage], validation_fraction: float, seed: int = 0
                     ) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Identity-disjoint (train, validation) split: a seeded share of identities goes to validation."""
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction}")
    identities = sorted({item.identity for item in images})
    rng = np.random.default_rng(seed)
    count = int(round(validation_fraction * len(identities)))
    held_out = {identities[i] for i in rng.permutation(len(identities))[:count]}
    return ([i for i in images if i.identity not in held_out], [i for i in images if i.identity in held_out])


class FaceDataset:
    """Base: subclasses provide `labels` and `read(index)`; this adds corrupt-sample replacement."""

    labels: np.ndarray
    num_classes: int

    def __init__(self):
        self.corrupt: set[int] = set()

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return f"sample {index}"

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """(crop, label); a corrupt sample is replaced by another of its identity, or the next one."""
        label = int(self.labels[index])
        for candidate in self._candidates(index, label):
            if candidate in self.corrupt:
                continue
            try:
                return self.read(candidate), label
            except (ImageReadError, ValueError) as error:
                self.corrupt.add(candidate)
                log.warning("skipping corrupt training sample %s: %s", self.describe(candidate), error)
        raise RuntimeError("every sample of the dataset is unreadable")

    def _candidates(self, index: int, label: int):
        """`index`, then the other samples of its identity, then every other sample. Lazy: the
        identity's samples are only looked up once `index` has failed, so a good read costs O(1)."""
        yield index
        yield from (int(i) for i in np.flatnonzero(self.labels == label) if i != index)
        yield from ((index + step) % len(self) for step in range(1, len(self)))


def identity_images(root: str | Path) -> tuple[list[LabelledImage], CropCache | None]:
    """The images of an identity-folder tree, or of a prepared crop cache together with that cache."""
    if is_crop_cache(root):
        cache = CropCache(root)
        return cache.images, cache
    return list_identity_folder(root), None


class FolderDataset(FaceDataset):
    """Images of an identity-folder tree, decoded from their files or read from a prepared `cache`."""

    def __init__(self, images: list[LabelledImage], class_names: list[str] | None = None,
                 cache: CropCache | None = None):
        super().__init__()
        self.images, self.cache = images, cache
        self.class_names = class_names or sorted({i.identity for i in images})
        index = {name: k for k, name in enumerate(self.class_names)}
        self.labels = np.array([index[i.identity] for i in images], dtype=np.int64)
        self.num_classes = len(self.class_names)

    def read(self, index: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache.crop(self.cache.rows[self.images[index].path])
        return read_rgb(self.images[index].path)

    def describe(self, index: int) -> str:
        return str(self.images[index].path)


class RecordIODataset(FaceDataset):
    """insightface's `train.rec` + `train.idx` (MS1M, Glint360K, WebFace packs), read without mxnet."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        super().__init__()
        self.reader = RecordIOReader(rec_path, idx_path)
        self.keys = self.reader.image_keys()
        self.labels = np.array([self.reader.label(key) for key in self.keys], dtype=np.int64)
        self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0

    def read(self, index: int) -> np.ndarray:
        return self.reader.image(self.keys[index])

    def describe(self, index: int) -> str:
        return f"{self.reader.rec_path} record {self.keys[index]}"
