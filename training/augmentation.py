"""Training augmentation with albumentations: named presets or a list from the config.

A list entry is `{"name": "<albumentations transform>", ...its arguments}`, e.g.
`[{"name": "HorizontalFlip", "p": 0.5}, {"name": "GaussNoise", "p": 0.2}]`.
Each sample is augmented with its own seed (from seed, epoch, step and position), so augmentation is
reproducible across resumes, DataLoader workers and ranks.
"""

import albumentations as A
import numpy as np

from faceid.registry import Registry

PRESETS = Registry("augmentation preset")


PRESETS.register("none")(list)  # list() is [], no transforms


@PRESETS.register("light")
def light() -> list:
    return [A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.95, 1.05), translate_percent=(-0.04, 0.04), rotate=(-5, 5), p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)]


@PRESETS.register("strong")
def strong() -> list:
    return light() + [A.GaussianBlur(blur_limit=(3, 5), p=0.2), A.ImageCompression(quality_range=(40, 90), p=0.3),
                      A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.25),
                                      hole_width_range=(0.1, 0.25), p=0.3),
                      A.ToGray(p=0.1)]


def _from_list(entries: list[dict]) -> list:
    transforms = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"augmentation[{position}] must be a mapping with a 'name', got {entry!r}")
        options = {k: v for k, v in entry.items() if k != "name"}
        transform = getattr(A, entry["name"], None)
        if transform is None:
            raise ValueError(f"augmentation[{position}]: albumentations has no transform {entry['name']!r}")
        try:
            transforms.append(transform(**options))
        except (TypeError, ValueError) as error:
            raise ValueError(f"augmentation[{position}] {entry['name']}: {error}") from None
    return transforms


class Augmentation:
    def __init__(self, spec: str | list[dict] = "light"):
        transforms = PRESETS.build(spec) if isinstance(spec, str) else _from_list(spec)
        self.compose = A.Compose(transforms) if transforms else None

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        if self.compose is None:
            return image
        self.compose.set_random_seed(seed)
        return self.compose(image=image)["image"]
