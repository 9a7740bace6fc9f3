"""In-memory image classification: a dataset over uint8 arrays and the DataModule the concrete sets share."""

from abc import ABC, abstractmethod
from typing import Any, Literal

import albumentations as A
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.inputs import Prediction, read_inputs
from datamodules.loaders import SplitDataModule
from datamodules.spec import DataSpec, TaskType
from datamodules.transforms import TransformPreset, build_transform
from datamodules.validation import check_split_targets

Split = Literal["train", "val", "test"]


class ArrayDataset(Dataset):
    """(image, label) pairs from a uint8 (N, H, W, C) array through an albumentations pipeline."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: A.Compose) -> None:
        self.images = images
        self.labels = torch.from_numpy(labels)
        self.transform = transform
        # Albumentations keeps its own RNG: seed it from torch's (set by seed_everything) so runs repeat.
        self.reseed(int(torch.randint(2**31, ())))

    def reseed(self, seed: int) -> None:
        self.transform.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(image=self.images[index])["image"], self.labels[index]


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
        prediction: the files ``medlab predict`` and ``medlab explain`` read instead of the test split (``paths``).
    """

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        train_transform: TransformPreset = "normalize",
        eval_transform: TransformPreset = "normalize",
        pin_memory: bool = False,
        prediction: Prediction = Prediction(),
    ) -> None:
        super().__init__()
        self.prediction = prediction
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
        return DataSpec(self.task, self.num_classes, self.in_channels, 2, list(self.class_names))

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
            if split not in self.arrays:
                images, labels = self.load_split(split)
                check_split_targets(labels, self.split_source(split), split, self.task, self.num_classes,
                                    self.class_names)  # fmt: skip
                self.arrays[split] = (images, labels)
        for split in serves:
            if split not in self.datasets:
                preset = self.train_transform if split == "train" else self.eval_transform
                self.datasets[split] = ArrayDataset(*self.arrays[split], build_transform(preset))

    def split_size(self, split: str) -> int:
        return len(self.arrays[split][1]) if split in self.arrays else super().split_size(split)

    def loader_options(self, split: str) -> dict:
        return {"pin_memory": self.pin_memory}
