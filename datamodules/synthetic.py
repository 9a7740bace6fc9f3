"""Synthetic "scans" generated on the fly: organs from MONAI's ``create_test_image_2d/3d``, with or without a
small bright lesion. It lets every experiment run on a machine with no data and no network."""

import numpy as np
from monai.data.synthetic import create_test_image_2d, create_test_image_3d

from datamodules.image_classification import ImageClassificationDataModule, Split
from datamodules.spec import TaskType

_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


# Per dimensionality: the MONAI organ generator, organs per scan, smallest organ radius as a fraction of the
# size, and the lesion radius range (3D lesions are larger, so that they show on a few slices).
_ANATOMY = {2: (create_test_image_2d, 4, 8, (1.0, 2.5)), 3: (create_test_image_3d, 3, 6, (2.0, 3.5))}


def make_lesion_scans(
    count: int, size: int, seed: int | list[int], contrast: float = 0.2, spatial_dims: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uint8 scans and labels (1 = lesion present), half of each, from ``seed``: 2D images as
    (N, size, size, 1), channel last like the 2D DataModules read them; 3D volumes as (N, size, size, size).

    ``contrast`` is the lesion's brightness above the organ (tissue 0.55, background 0.25, noise sd 0.06).
    """
    images, labels, _ = make_lesion_scans_with_masks(count, size, seed, contrast, spatial_dims)
    return images, labels


def make_lesion_scans_with_masks(
    count: int, size: int, seed: int | list[int], contrast: float = 0.2, spatial_dims: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``make_lesion_scans`` and the lesions' masks (N, size, ...) of bool, every pixel the lesion brightens: the
    ground truth that explanations are checked against (empty for scans without a lesion)."""
    generate, num_objects, fraction, radii = _ANATOMY[spatial_dims]
    rng = np.random.default_rng(seed)
    images = np.empty((count, *[size] * spatial_dims), dtype=np.uint8)
    masks = np.zeros(images.shape, dtype=bool)
    labels = np.arange(count) % 2
    rng.shuffle(labels)
    grid = np.stack(np.indices(images.shape[1:]), axis=-1)
    for i in range(count):
        state = np.random.RandomState(rng.integers(2**31))
        _, organs = generate(
            *[size] * spatial_dims, num_objs=num_objects, rad_max=size // 3, rad_min=size // fraction,
            num_seg_classes=1, random_state=state,
        )  # fmt: skip
        image = 0.25 + 0.3 * organs.astype(np.float32)
        if labels[i]:
            # The lesion sits inside an organ, as a hyperdense focus would.
            centre = np.argwhere(organs > 0)[rng.integers((organs > 0).sum())]
            radius = rng.uniform(*radii)
            lesion = np.clip(radius + 0.5 - np.linalg.norm(grid - centre, axis=-1), 0, 1)
            image += contrast * lesion
            masks[i] = lesion > 0
        image += rng.normal(0, 0.06, image.shape)
        images[i] = np.round(np.clip(image, 0, 1) * 255)
    return (images[..., None] if spatial_dims == 2 else images), labels.astype(np.int64), masks


class SyntheticLesions(ImageClassificationDataModule):
    """Binary lesion detection on synthetic 1-channel scans; the same ``seed`` always gives the same images.

    Args:
        image_size: image side in pixels.
        num_train: training scans (half with a lesion).
        num_val: validation scans.
        num_test: test scans.
        seed: generator seed of the data (not of training).
        lesion_contrast: how much brighter the lesion is than the organ around it.
        **loader_kwargs: ``batch_size``, ``num_workers``, transforms (``ImageClassificationDataModule``).
    """

    def __init__(
        self,
        image_size: int = 32,
        num_train: int = 2000,
        num_val: int = 400,
        num_test: int = 600,
        seed: int = 0,
        lesion_contrast: float = 0.2,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.image_size = image_size
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.lesion_contrast = lesion_contrast

    num_classes = 2
    in_channels = 1
    task: TaskType = "binary"
    class_names = ["no lesion", "lesion"]

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        return make_lesion_scans(
            self.sizes[split], self.image_size, self.seed * 3 + _SPLIT_INDEX[split], self.lesion_contrast
        )

    def lesion_masks(self, split: Split) -> np.ndarray:
        """Where each scan's lesion is (bool, N x H x W; empty without one): what an explanation of the class
        "lesion" should point at."""
        seed = self.seed * 3 + _SPLIT_INDEX[split]
        return make_lesion_scans_with_masks(self.sizes[split], self.image_size, seed, self.lesion_contrast)[2]
