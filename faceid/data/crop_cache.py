"""A pre-decoded, memory-mapped cache of aligned crops (`faceid prepare SRC OUT`).

PNG decoding dominates the input pipeline of small models; a prepared cache is read with one memory
copy per crop. OUT holds `crops-<id>.u8` (N x H x W x 3 uint8, row-major, no header) and `index.json`
(shape, labels, class names, source paths, the files that were skipped and why). Both are written
atomically and the index is written last and names its crops file, so a reader sees the old cache or
the new one, never a mix. A file that cannot be decoded, or whose size differs from the first crop's,
is skipped and reported, never fatal.
"""

import json
import uuid
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.data.folder import LabelledImage, list_identity_folder
from faceid.data.images import ImageReadError, read_rgb
from faceid.files import atomic_write

INDEX = "index.json"
FORMAT = "faceid-crop-cache"


def is_crop_cache(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


def _decode(path: Path) -> np.ndarray | str:
    """The crop, or the reason it cannot be read (returned, so a worker pool keeps going)."""
    try:
        return read_rgb(path)
    except ImageReadError as error:
        return str(error)


def prepare_cache(source: str | Path, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Decode every crop of the identity-folder tree `source` into the cache `out`; returns a summary."""
    source, out = Path(source), Path(out)
    images = list_identity_folder(source)
    if out.exists() and not out.is_dir():
        raise ValueError(f"cache directory {out} is an existing file")
    out.mkdir(parents=True, exist_ok=True)
    old = json.loads((out / INDEX).read_text())["crops"] if is_crop_cache(out) else None
    crops_name = f"crops-{uuid.uuid4().hex[:12]}.u8"
    kept: list[LabelledImage] = []
    skipped: list[dict] = []
    shape = None
    with atomic_write(out / crops_name) as temporary, open(temporary, "wb") as handle, \
            tqdm(total=len(images), desc="prepare", unit="img", disable=not progress) as bar:
        pool = get_context("spawn").Pool(workers) if workers > 1 else None
        try:
            decoded = pool.imap(_decode, [i.path for i in images], chunksize=16) if pool else map(
                _decode, (i.path for i in images))
            for item, crop in zip(images, decoded, strict=True):
                bar.update(1)
                if isinstance(crop, str):
                    skipped.append({"path": str(item.path), "reason": crop})
                    continue
                shape = shape or crop.shape
                if crop.shape != shape:
                    skipped.append({"path": str(item.path), "reason": f"{item.path}: size {crop.shape[1]}x"
                                    f"{crop.shape[0]} differs from the cache's {shape[1]}x{shape[0]}"})
                    continue
                handle.write(np.ascontiguousarray(crop).tobytes())
                kept.append(item)
        finally:
            if pool:
                pool.terminate()
    if not kept:
        (out / crops_name).unlink(missing_ok=True)
        raise ValueError(f"{source}: no readable image to cache ({len(skipped)} skipped)")
    class_names = sorted({i.identity for i in kept})
    classes = {name: k for k, name in enumerate(class_names)}
    index = {"format": FORMAT, "version": 1, "crops": crops_name, "shape": [len(kept), *shape],
             "class_names": class_names, "labels": [classes[i.identity] for i in kept],
             "sources": [str(i.path.resolve()) for i in kept], "identities": [i.identity for i in kept],
             "skipped": skipped}
    with atomic_write(out / INDEX) as temporary:
        temporary.write_text(json.dumps(index))
    if old and old != crops_name:
        (out / old).unlink(missing_ok=True)
    return {"source": str(source), "cache": str(out), "images": len(kept), "identities": len(class_names),
            "crop_size": f"{shape[1]}x{shape[0]}", "skipped": skipped,
            "bytes": int(np.prod(index["shape"]))}


class CropCache:
    """A prepared cache: `images` (LabelledImage of each row's source) and `crop(row)`.

    The memory map is opened lazily and left out of pickles, so DataLoader workers each map the file
    instead of receiving a copy of it.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not is_crop_cache(self.root):
            raise ValueError(f"{self.root} is not a crop cache (no {INDEX}); make one with `faceid prepare`")
        index = json.loads((self.root / INDEX).read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{self.root / INDEX} is not a faceid crop-cache index")
        self.path = self.root / index["crops"]
        self.shape = tuple(index["shape"])
        expected = int(np.prod(self.shape))
        if not self.path.is_file() or self.path.stat().st_size != expected:
            raise ValueError(f"crop cache {self.root}: {self.path.name} is missing or not {expected} bytes")
        self.class_names: list[str] = index["class_names"]
        self.labels = np.array(index["labels"], dtype=np.int64)
        self.images = [LabelledImage(Path(p), name) for p, name in zip(index["sources"], index["identities"],
                                                                         strict=True)]
        self.skipped: list[dict] = index["skipped"]
        self.rows = {item.path: row for row, item in enumerate(self.images)}
        self._crops = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {**self.__dict__, "_crops": None}

    def crop(self, row: int) -> np.ndarray:
        """A writable (H, W, 3) uint8 copy of row `row`."""
        if self._crops is None:
            self._crops = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return np.array(self._crops[row])
