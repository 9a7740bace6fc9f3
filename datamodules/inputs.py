"""New files for ``medlab predict`` and ``medlab explain``: which inputs were asked for, and an image file brought to
what a classifier was trained on (size, channels, 8-bit intensities), every conversion said."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.transforms import Resize

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


def read_image(path: Path, spatial_dims: int) -> np.ndarray:
    """A file or DICOM series as ([slices,] rows, columns, channels) values as stored: ``.npy`` as numpy holds it
    (no pickle; an array of ``spatial_dims`` axes has one channel), the rest through MONAI's readers
    (``datamodules.readers``), whose spatial axes are (x, y[, z]): reversed here, so rows come before columns as in a
    PNG or a numpy image."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DatasetError(f"{path}: not a readable .npy array ({error})") from error
        return array[..., None] if array.ndim == spatial_dims else array
    image = np.asarray(LoadImageByType(["image"], dtype=None)({"image": str(path)})["image"])  # (C, x, y[, z])
    return image.transpose(*range(image.ndim - 1, 0, -1), 0)


class Conformer:
    """Brings an image or volume to the training data's form, uint8 (*size, channels), counting each conversion:
    singleton slices dropped (a NIfTI or DICOM slice for a 2D model), alpha dropped, RGB to grey (ITU-R 601 luma) or
    grey repeated, values outside 0-255 scaled per image (min-max), resized (MONAI ``Resize``: area interpolation to
    shrink, linear to enlarge).

    Args:
        size: the training data's spatial size.
        channels: the training data's channels (1 or 3).
    """

    def __init__(self, size: tuple[int, ...], channels: int) -> None:
        self.size, self.channels = tuple(size), channels
        self.conversions: Counter[str] = Counter()

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
        dims, done = len(self.size), []
        spatial = list(image.shape[:-1])
        while len(spatial) > dims and 1 in spatial:
            spatial.remove(1)
        if len(spatial) != dims or image.shape[-1] > 4:
            kind = "2D image" if dims == 2 else "3D volume"
            raise DatasetError(f"shape {image.shape[:-1]} with {image.shape[-1]} channels is not a {kind} "
                               f"({dims} spatial axes, at most 4 channels)")  # fmt: skip
        image = image.reshape(*spatial, image.shape[-1])
        if image.shape[-1] in (2, 4):
            image = image[..., :-1]
            done.append("alpha channel dropped")
        values = image.astype(np.float64)
        if np.isnan(values).any():
            raise DatasetError("holds NaN values")
        if image.dtype != np.uint8:
            if values.min() >= 0 and values.max() <= 255 and np.array_equal(values, np.round(values)):
                done.append(f"{image.dtype} values within 0-255 kept")
            else:
                low, high = values.min(), values.max()
                values = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
                done.append(f"{image.dtype} intensities scaled per image (min-max) to 0-255")
        if values.shape[-1] == 3 and self.channels == 1:
            values = values @ np.array([[0.299], [0.587], [0.114]])
            done.append("RGB to grey (ITU-R 601 luma)")
        elif values.shape[-1] == 1 and self.channels == 3:
            values = np.repeat(values, 3, axis=-1)
            done.append("grey repeated to 3 channels")
        if values.shape[:-1] != self.size:
            shrink = np.prod(values.shape[:-1]) > np.prod(self.size)
            mode = "area" if shrink else ("bilinear" if dims == 2 else "trilinear")
            before = "x".join(str(n) for n in values.shape[:-1])
            channels_first = np.moveaxis(values, -1, 0)
            values = np.moveaxis(np.asarray(Resize(self.size, mode=mode)(channels_first)), 0, -1)
            done.append(f"resized from {before} to {'x'.join(str(n) for n in self.size)} ({mode} interpolation)")
        self.conversions.update(done)
        return np.clip(np.round(values), 0, 255).astype(np.uint8), done

    def report(self, total: int) -> list[str]:
        """Each conversion once, with how many of the ``total`` inputs needed it."""
        return [f"{count} of {total} inputs: {what}" for what, count in self.conversions.items()]


def note_unreadable(unreadable: dict[str, str], path: Path, error: Exception) -> None:
    """An input that cannot be read: its reason (without the path the message starts with) into ``unreadable``, and
    said on stdout; the others are still predicted."""
    message = str(error.args[0] if error.args else error)
    unreadable[str(path)] = message.removeprefix(f"{path}: ")
    print(f"medlab: cannot read {path}: {unreadable[str(path)]}")


def read_inputs(
    paths: list[str], size: tuple[int, ...], channels: int, unreadable: dict[str, str]
) -> tuple[np.ndarray, list[dict[str, str]]]:
    """The images of ``paths`` (files, folders of files, DICOM series folders for volumes), conformed to the
    training data: uint8 (N, *size, channels) and a row per image (``input``, ``conversions``). An input that cannot
    be read goes into ``unreadable`` with the reason and is said on stdout; the conversions are said once each."""
    volumes = len(size) == 3
    inputs = expand(paths, lambda p: p.is_file() or volumes and is_dicom_series(p))
    conform = Conformer(size, channels)
    images, rows = [], []
    for path in inputs:
        try:
            image, done = conform(read_image(path, len(size)))
        except DatasetError as error:
            note_unreadable(unreadable, path, error)
            continue
        images.append(image)
        rows.append({"input": str(path), "conversions": "; ".join(done)})
    for line in conform.report(len(inputs)):
        print(f"medlab: {line}")
    if not images:
        raise DatasetError(f"data.prediction.paths: none of the {len(inputs)} inputs could be read")
    return np.stack(images), rows
