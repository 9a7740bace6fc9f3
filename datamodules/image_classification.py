"""In-memory image classification: a dataset over uint8 arrays and the DataModule the concrete sets share."""

import contextlib
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.data_root import data_path
from datamodules.inputs import Conformer, Prediction, read_image, read_inputs
from datamodules.loaders import SplitDataModule
from datamodules.spec import DataSpec, TaskType, inverse_frequencies
from datamodules.transforms import TransformPreset, build_transform
from datamodules.validation import DatasetError, check_case_table, check_split_targets

Split = Literal["train", "val", "test"]


class ArrayDataset(Dataset):
    """(image, label) pairs from a uint8 (N, H, W, C) array through an albumentations pipeline."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: A.Compose) -> None:
        self.images = images
        self.targets = torch.from_numpy(labels)
        self.transform = transform
        # Albumentations keeps its own RNG: seed it from torch's (set by seed_everything) so runs repeat.
        self.reseed(int(torch.randint(2**31, ())))

    def reseed(self, seed: int) -> None:
        self.transform.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(image=self.images[index])["image"], self.targets[index]


class ImageClassificationDataModule(SplitDataModule, ABC):
    """Train/val/test loaders over arrays; subclasses say how to read a split and what the labels mean.

    ``medlab predict`` predicts the test split, or the image files of ``prediction.paths`` (PNG, JPEG, TIFF, DICOM,
    NIfTI, ``.npy``) brought to the training images' size, channels and 8-bit range (``datamodules.inputs``), then
    through the evaluation transform: a file that cannot be read is reported and left out, the rest predicted.

    Args:
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0: load in the training process).
        train_transform: albumentations preset for training images (``normalize``: no augmentation; ``flip_rotate``,
            ``shift_flip``).
        eval_transform: preset for validation, test and predict images.
        pin_memory: pin batches in page-locked memory (faster host-to-GPU copies).
        balanced: draw training batches class-balanced (with replacement; single-label tasks), against imbalance.
        prediction: the files ``medlab predict`` and ``medlab explain`` read instead of the test split (``paths``).
    """

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        train_transform: TransformPreset = "normalize",
        eval_transform: TransformPreset = "normalize",
        pin_memory: bool = False,
        balanced: bool = False,
        prediction: Prediction = Prediction(),
    ) -> None:
        super().__init__()
        self.prediction, self.balanced = prediction, balanced
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.pin_memory = pin_memory
        self.arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # checked images and labels of each split

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes (or of labels, for multi-label tasks)."""

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Image channels."""

    @property
    @abstractmethod
    def task(self) -> TaskType:
        """``binary``, ``multiclass`` or ``multilabel``: decides the loss and the metrics."""

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Human-readable class names, in label order."""

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, int]:
        """The training images' (H, W): new files are resized to it."""

    @property
    def spec(self) -> DataSpec:
        """Single-label tasks read the training labels (kept for ``setup``) for the class weights: inverse training
        class frequencies, for ``ImageClassifier(class_weighting=true)``; none where the training split cannot be
        read (predicting on a machine without it), and ``setup`` then says why."""
        weights = None
        if self.task in ("binary", "multiclass"):
            with contextlib.suppress(DatasetError, FileNotFoundError):
                weights = inverse_frequencies(self.read_split("train")[1], self.num_classes)
        return DataSpec(self.task, self.num_classes, self.in_channels, 2, list(self.class_names), class_weights=weights)

    def read_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """A split's checked images and labels, read once."""
        if split not in self.arrays:
            images, labels = self.load_split(split)
            check_split_targets(labels, self.split_source(split), split, self.task, self.num_classes,
                                self.class_names)  # fmt: skip
            self.arrays[split] = (images, labels)
        return self.arrays[split]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8 (H, W, C) images at the training size", "normalize": "(x / 255 - 0.5) / 0.5",
                "layout": "float32 (batch, C, H, W)"}  # fmt: skip

    @abstractmethod
    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """Validated uint8 (N, H, W, C) images and int64 labels of one split."""

    def split_source(self, split: Split) -> str:
        """Where a split's labels come from, for error messages (a file and key where there is one)."""
        return f"{type(self).__name__} {split} split"

    def setup_predict(self) -> None:
        """Reads every file of ``prediction.paths`` (``datamodules.inputs.read_inputs``): one that cannot be read is
        named with the reason (in ``unreadable``), the others are predicted."""
        images, self.predicted_inputs = read_inputs(self.prediction.paths, self.input_size, self.in_channels,
                                                    self.unreadable)  # fmt: skip
        labels = np.full(len(images), -1, dtype=np.int64)  # unknown
        self.datasets["predict"] = ArrayDataset(images, labels, build_transform(self.eval_transform))

    def setup(self, stage: str | None = None) -> None:
        """Reads and checks every split (fit checks the test split too, so a bad test set stops the run before
        training, not after it); builds datasets only for the splits ``stage`` serves."""
        serves: tuple[Split, ...] = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
        }.get(stage, ("train", "val", "test"))
        if stage == "predict" and self.prediction.paths:
            if "predict" not in self.datasets:
                self.setup_predict()
            return
        checks = ("train", "val", "test") if stage in (None, "fit") else serves
        for split in checks:
            self.read_split(split)
        for split in serves:
            if split not in self.datasets:
                preset = self.train_transform if split == "train" else self.eval_transform
                self.datasets[split] = ArrayDataset(*self.arrays[split], build_transform(preset))

    def split_size(self, split: str) -> int:
        return len(self.arrays[split][1]) if split in self.arrays else super().split_size(split)

    def loader_options(self, split: str) -> dict:
        return {"pin_memory": self.pin_memory}


class ImageList(ImageClassificationDataModule):
    """Images listed in a CSV, one row per case (its key, image file, label and split), as a clinical study keeps
    them. Files in any format medlab reads (PNG, JPEG, TIFF, DICOM, NIfTI, MHA/NRRD, ``.npy``; paths relative to the
    CSV's folder) are brought to one size, channel count and 8-bit range as ``medlab predict`` brings new files
    (``datamodules.inputs.Conformer``). A file that cannot be read, a label that is not a class, a split other than
    train/val/test, a key on two rows: an error naming the table and the row, before any step. Items are named by
    their key, so ``test_predictions.csv`` and ``datamodules.Multimodal`` use it.

    Args:
        table: the CSV, relative to the data root or absolute.
        class_names: the classes in label order; the label column holds their names or their indices.
        image_size: side in pixels the images are brought to.
        in_channels: 1 (grey) or 3 (RGB).
        key: column naming each case.
        image: column of image paths.
        label: column of labels.
        split: column saying ``train``, ``val`` or ``test``.
        root: data root for ``table`` (default: ``$MEDLAB_DATA``, else ``../shared/data``).
        **loader_kwargs: ``batch_size``, ``num_workers``, transforms (``ImageClassificationDataModule``).
    """

    def __init__(
        self,
        table: str,
        class_names: list[str],
        image_size: int,
        in_channels: int = 1,
        key: str = "case",
        image: str = "image",
        label: str = "label",
        split: str = "split",
        root: str | None = None,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**loader_kwargs)
        if len(class_names) < 2:
            raise ValueError(f"data.class_names: expected at least two classes, got {class_names}")
        self.table, self.names, self.image_size, self.channels = table, list(class_names), image_size, in_channels
        self.columns = {"key": key, "image": image, "label": label, "split": split}
        self.root = root

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def task(self) -> TaskType:
        return "binary" if self.num_classes == 2 else "multiclass"

    @property
    def class_names(self) -> list[str]:
        return self.names

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)

    @property
    def table_path(self) -> Path:
        return data_path(self.table, self.root)

    @cached_property
    def cases(self) -> list[dict[str, str]]:
        """The table's rows (read and checked once, for every split): the columns present, one row per key, every
        split train, val or test."""
        path, columns = self.table_path, self.columns
        if not path.is_file():
            raise DatasetError(f"{path}: no such table (data.table)")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # text as written, empty cells ""
        check_case_table(frame, str(path), columns["key"], [columns[c] for c in ("image", "label", "split")])
        if frame.empty:
            raise DatasetError(f"{path}: the table has no rows")
        splits = sorted(set(frame[columns["split"]]) - {"train", "val", "test"})
        if splits:
            raise DatasetError(f"{path}: column {columns['split']!r} holds {splits}; expected train, val or test")
        return frame.to_dict("records")

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        path, columns = self.table_path, self.columns
        rows = [row for row in self.cases if row[columns["split"]] == split]
        conform, images, labels = Conformer(self.input_size, self.channels), [], []
        for row in rows:
            value = row[columns["label"]].strip()
            label = self.names.index(value) if value in self.names else int(value) if value.isdigit() else -1
            if not 0 <= label < self.num_classes:
                raise DatasetError(f"{path}: case {row[columns['key']]!r} has label {value!r}; expected one of "
                                   f"{self.names} or 0..{self.num_classes - 1}")  # fmt: skip
            file = path.parent / row[columns["image"]]
            try:
                images.append(conform(read_image(file, 2))[0])
            except (DatasetError, FileNotFoundError, RuntimeError, ValueError) as error:
                raise DatasetError(f"{path}: case {row[columns['key']]!r}: cannot read {file} ({error})") from error
            labels.append(label)
        self.item_names[split] = [row[columns["key"]] for row in rows]
        shape = (0, *self.input_size, self.channels)
        return (np.stack(images) if images else np.zeros(shape, np.uint8)), np.array(labels, dtype=np.int64)

    def split_source(self, split: Split) -> str:
        return f"{self.table_path} ({split} rows)"
