"""Identity-folder trees: `root/<identity>/<image>`, the layout every faceid stage reads and writes."""

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    identity: str

    @property
    def relative(self) -> str:
        return f"{self.identity}/{self.path.name}"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def expand_images(inputs) -> list[Path]:
    """Image files and folders -> image files: a folder gives every image beneath it, sorted. A missing input or
    a folder with no image in it is an error that names it (a file is kept as given: reading it checks it)."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_image_file(p))
            if not found:
                raise ValueError(f"folder {item} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif item.exists():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist (give image files or folders of images)")
    return paths


def list_identity_folder(root: str | Path) -> list[LabelledImage]:
    """All images under `root/<identity>/`, sorted by identity then file name.

    Raises ValueError naming `root` when it is missing or holds no identity folder with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"identity-folder root {root} is not a directory")
    items = [
        LabelledImage(path, folder.name)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if is_image_file(path)
    ]
    if not items:
        raise ValueError(f"{root} holds no images in <identity>/<image> sub-folders")
    return items
