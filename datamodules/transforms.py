"""Named 2D transform presets (albumentations): augmentation for training, normalisation for all.

Every preset takes a uint8 (H, W, C) image and returns a float (C, H, W) tensor in [-1, 1], the
normalisation MedMNIST v2 and the classic CIFAR example use.
"""

from collections.abc import Callable
from typing import Literal

import albumentations as A
from albumentations.pytorch import ToTensorV2

_AUGMENTATIONS: dict[str, Callable[[], list[A.BasicTransform]]] = {
    # No augmentation: the MedMNIST v2 recipe and the classic CIFAR example.
    "normalize": list,
    # Mild geometry for scans without a canonical left/right (ultrasound, dermoscopy, pathology).
    "flip_rotate": lambda: [
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-15, 15), scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), p=0.7),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
    ],
    # The CIFAR standard: up to 4 px shifts (as pad-and-crop) and horizontal flips.
    "shift_flip": lambda: [
        A.Affine(translate_px=(-4, 4), p=1.0),
        A.HorizontalFlip(p=0.5),
    ],
}

TransformPreset = Literal["normalize", "flip_rotate", "shift_flip"]
PRESETS: tuple[str, ...] = tuple(_AUGMENTATIONS)


def build_transform(preset: str) -> A.Compose:
    """The albumentations pipeline named ``preset``, ending in normalisation and a CHW tensor."""
    if preset not in _AUGMENTATIONS:
        raise ValueError(f"Unknown transform preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return A.Compose([*_AUGMENTATIONS[preset](), A.Normalize(mean=0.5, std=0.5), ToTensorV2()])
