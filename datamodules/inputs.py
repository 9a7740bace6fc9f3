"""New files for ``medlab predict`` and ``medlab explain``: which inputs were asked for, and an image file brought to
what a classifier was trained on (size, channels, 8-bit intensities), every conversion said."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from datamodules.readers import LoadImageByType, image_suffix
from datamodules.validation import DatasetError


@dataclass(frozen=True)
class Prediction:
    """What ``medlab predict`` (and ``medlab explain``) read instead of the test split.

    Args:
        paths: files, DICOM series folders or WFDB records; a folder of other files stands for the files in it.
        output_dir: where the predictions go (default: ``predictions/`` in the checkpoint's run folder).
    """

    paths: list[str] | None = None
    output_dir: str | None = None


def expand(paths: list[str], is_input: callable = lambda path: path.is_file()) -> list[Path]:
    """The inputs ``paths`` name, folders replaced by the inputs in them (sorted; ``is_input`` says what counts); a
    missing path or a folder with no inputs is an error naming it."""
    inputs: list[Path] = []
    for text in paths:
        path = Path(text)
        if is_input(path):
            inputs.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if is_input(p) and not p.name.startswith("."))
            if not found:
                raise DatasetError(f"data.prediction.paths: {path} holds no input files")
            inputs += found
        else:
            raise FileNotFoundError(f"data.prediction.paths: {path} does not exist")
    return inputs


def is_dicom_series(path: Path) -> bool:
    """A folder of DICOM files only (a series, read as one volume)."""
    return path.is_dir() and any(path.iterdir()) and all(image_suffix(p) == ".dcm" for p in path.iterdir())


def read_image(path: Path) -> np.ndarray:
    """A file as (rows, columns[, slices], channels) values as stored: ``.npy`` as numpy holds it (no pickle),
    the rest through MONAI's readers (``datamodules.readers``), whose first spatial axis is x (the column)."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DatasetError(f"{path}: not a readable .npy array ({error})") from error
        return array[..., None] if array.ndim == 2 else array
    image = np.asarray(LoadImageByType(["image"], dtype=None)({"image": str(path)})["image"])  # (C, x, y[, z])
    image = np.moveaxis(image, 0, -1)
    return image.swapaxes(0, 1)  # (y, x, ...): rows first, as a PNG or a numpy image holds them


def as_2d(image: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C): singleton slices dropped (a NIfTI or DICOM slice); a volume is refused."""
    while image.ndim > 3 and 1 in image.shape[2:-1]:
        image = np.squeeze(image, axis=2 + image.shape[2:-1].index(1))
    if image.ndim != 3 or image.shape[-1] > 4:
        raise DatasetError(f"{path}: shape {image.shape} is not a 2D image (rows, columns[, channels <= 4])")
    return image


class ImageConformer:
    """Brings 2D images to the training images' form, (H, W, channels) uint8, counting each conversion.

    Args:
        size: the training images' (H, W).
        channels: the training images' channels (1 or 3).
    """

    def __init__(self, size: tuple[int, int], channels: int) -> None:
        self.size, self.channels = tuple(size), channels
        self.conversions: Counter[str] = Counter()

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
        done = []
        if image.shape[-1] == 4:
            image, _ = image[..., :3], done.append("alpha channel dropped")
        if image.shape[-1] == 2:
            image, _ = image[..., :1], done.append("grey + alpha: alpha dropped")
        if image.dtype != np.uint8:
            values = image.astype(np.float64)
            if np.isnan(values).any():
                raise DatasetError("holds NaN values")
            if values.min() >= 0 and values.max() <= 255 and np.array_equal(values, np.round(values)):
                done.append(f"{image.dtype} values within 0-255 kept")
            else:
                low, high = values.min(), values.max()
                values = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
                done.append(f"{image.dtype} intensities scaled per image (min-max) to 0-255")
            image = np.round(values).astype(np.uint8)
        if image.shape[-1] == 3 and self.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
            done.append("RGB to grey (ITU-R 601 luma)")
        elif image.shape[-1] == 1 and self.channels == 3:
            image = np.repeat(image, 3, axis=-1)
            done.append("grey repeated to 3 channels")
        if image.shape[:2] != self.size:
            shrink = image.shape[0] * image.shape[1] > self.size[0] * self.size[1]
            method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            resized = A.Resize(*self.size, interpolation=method)(image=image)["image"]
            done.append(f"resized from {image.shape[0]}x{image.shape[1]} to {self.size[0]}x{self.size[1]} "
                        f"({'area' if shrink else 'bilinear'} interpolation)")  # fmt: skip
            image = resized.reshape(*self.size, -1)
        self.conversions.update(done)
        return np.ascontiguousarray(image), done

    def report(self, total: int) -> list[str]:
        """Each conversion once, with how many of the ``total`` inputs needed it."""
        return [f"{count} of {total} inputs: {what}" for what, count in self.conversions.items()]
