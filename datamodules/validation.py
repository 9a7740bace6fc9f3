"""Checks on image/label arrays, so bad data fails before training with the file and key named."""

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd


class DatasetError(ValueError):
    """Data (a file, or the data settings) that is not what the DataModule expects."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it was raised from or while handling, outermost first (a cycle ends it)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def as_dataset_error(error: BaseException, where: str) -> DatasetError:
    """The ``DatasetError`` behind ``error`` (MONAI wraps an error raised in a transform in RuntimeErrors), or one
    saying ``where`` the root cause happened."""
    chain = list(causes(error))
    found = next((cause for cause in chain if isinstance(cause, DatasetError)), None)
    return found or DatasetError(f"{where}: {chain[-1]}")


def check_images(images: np.ndarray, source: str, size: int | None, channels: int) -> np.ndarray:
    """Return images as uint8 (N, H, W, C), or raise naming ``source`` and what was expected.

    Floating-point images must be finite and in [0, 1]; they are scaled to uint8 like a saved PNG would be.
    """
    if images.ndim == 3:
        images = images[..., None]
    side = size or "S"
    expected = f"(N, {side}, {side}, {channels})" + (f" or (N, {side}, {side})" if channels == 1 else "")
    if images.ndim != 4 or images.shape[-1] != channels:
        raise DatasetError(f"{source}: expected images of shape {expected}, got {images.shape}")
    if size is not None and images.shape[1:3] != (size, size):
        raise DatasetError(f"{source}: expected {size}x{size} images, got {images.shape[1]}x{images.shape[2]}")
    if images.dtype == np.uint8:
        return images  # as it is: rows of a file on disk (``datamodules.arrays``) stay there
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.floating):
        raise DatasetError(f"{source}: expected uint8 (or float in [0, 1]) images, got dtype {images.dtype}")
    bad = ~np.isfinite(images)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise DatasetError(
            f"{source}: {int(bad.sum())} NaN/inf pixel values (first in image {first}); expected finite pixels"
        )
    if images.min() < 0 or images.max() > 1:
        raise DatasetError(
            f"{source}: float images must lie in [0, 1], got range [{images.min():.3g}, {images.max():.3g}]"
        )
    return np.round(images * 255).astype(np.uint8)


def check_labels(labels: np.ndarray, source: str, num_images: int, num_classes: int, multilabel: bool) -> np.ndarray:
    """Return labels as int64, (N,) for single-label tasks or (N, num_classes) for multi-label ones."""
    if len(labels) != num_images:
        raise DatasetError(f"{source}: {len(labels)} labels for {num_images} images; expected one label per image")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise DatasetError(f"{source}: expected integer labels, got dtype {labels.dtype}")
    if np.issubdtype(labels.dtype, np.floating) and not np.all(np.mod(labels, 1) == 0):
        raise DatasetError(f"{source}: expected whole-number labels, found fractional or NaN values")
    if multilabel:
        if labels.shape != (num_images, num_classes):
            raise DatasetError(
                f"{source}: expected multi-label shape ({num_images}, {num_classes}), got {labels.shape}"
            )
        if not np.isin(labels, (0, 1)).all():
            raise DatasetError(f"{source}: multi-label targets must be 0 or 1")
        return labels.astype(np.int64)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(f"{source}: expected labels of shape (N,) or (N, 1), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{source}: labels must be in [0, {num_classes - 1}], got range [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


def check_split_targets(
    targets: np.ndarray, source: str, split: str, task: str, num_classes: int, class_names: list[str] | None = None
) -> None:
    """A split must hold samples; validation and test splits must hold the classes their metrics need.

    AUC is undefined with one class (torchmetrics returns 0 with a warning, and model selection would follow that 0),
    so a validation or test split with fewer than two classes (binary: both) is an error, and a class missing from an
    otherwise valid split is a warning naming it (its per-class scores are meaningless). Regression needs no classes.
    """
    if len(targets) == 0:
        raise DatasetError(f"{source}: the {split} split is empty; expected at least one sample")
    if split == "train" or task in ("regression", "segmentation"):
        return
    names = class_names or [str(i) for i in range(num_classes)]
    if task == "multilabel":
        targets = np.asarray(targets).reshape(len(targets), -1)
        both = [(targets[:, j].min() == 0) and (targets[:, j].max() == 1) for j in range(targets.shape[1])]
        if not any(both):
            raise DatasetError(f"{source}: no label of the {split} split has both positive and negative samples")
        missing = [names[j] for j, ok in enumerate(both) if not ok]
    else:
        present = set(np.unique(np.asarray(targets)).tolist())
        missing = [names[c] for c in range(num_classes) if c not in present]
        if len(present) < 2 or (task == "binary" and missing):
            raise DatasetError(
                f"{source}: the {split} split holds only class {[names[c] for c in sorted(present)]}; AUC and "
                f"model selection need at least two classes (expected samples of {names})"
            )
    if missing:
        message = f"{source}: the {split} split has no samples of {missing}; their per-class scores are undefined"
        warnings.warn(message, stacklevel=2)


def check_case_table(frame: pd.DataFrame, source: str, key: str, columns: list[str]) -> pd.DataFrame:
    """A table of one row per case: every named column present, the key read as text and on one row only."""
    absent = [c for c in [key, *columns] if c not in frame.columns]
    if absent:
        raise DatasetError(f"{source}: no column {absent}; it has {list(frame.columns)}")
    frame[key] = frame[key].astype(str)
    doubled = frame[key][frame[key].duplicated()].tolist()
    if doubled:
        raise DatasetError(f"{source}: the keys {doubled[:5]} are on more than one row")
    return frame
