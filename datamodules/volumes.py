"""3D volumes for classification (MedMNIST 3D flags, synthetic scans): read by slice-sequence (2.5D) or 3D nets."""

from typing import Any

import numpy as np
import torch
from medmnist import INFO
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.arrays import NpyRows
from datamodules.data_root import resolve_data_root
from datamodules.image_classification import Split
from datamodules.inputs import Prediction, read_inputs
from datamodules.loaders import SplitDataModule
from datamodules.medmnist import npz_name, read_medmnist_npz
from datamodules.spec import DataSpec, TaskType
from datamodules.synthetic import make_lesion_scans
from datamodules.validation import DatasetError, check_labels, check_split_targets

FLAGS_3D: tuple[str, ...] = tuple(flag for flag in INFO if flag.endswith("3d"))


class VolumeDataset(Dataset):
    """uint8 (N, D, H, W) volumes (an array, or rows of a file: ``datamodules.arrays``) as float (1, D, H, W) tensors
    in [-1, 1] (MedMNIST's normalisation)."""

    def __init__(self, volumes: "np.ndarray | NpyRows", labels: np.ndarray) -> None:
        self.volumes = volumes
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        volume = torch.as_tensor(np.asarray(self.volumes[index]))
        return (volume[None].float() / 255 - 0.5) / 0.5, self.labels[index]


class VolumeClassificationDataModule(SplitDataModule):
    """Train/val/test volumes; subclasses say how to read a split (``medlab predict`` predicts the test split).

    ``medlab predict`` predicts the test split, or the volumes of ``prediction.paths`` (NIfTI, MHA/NRRD, DICOM series
    folders, ``.npy``) brought to the training volumes' size and 8-bit range (``datamodules.inputs``).

    Args:
        batch_size: volumes per batch.
        num_workers: DataLoader worker processes.
        prediction: the files ``medlab predict`` and ``medlab explain`` read instead of the test split (``paths``).
    """

    num_classes: int
    size: int
    in_channels = 1
    preprocessing = {"input": "uint8 (D, H, W) volumes at the training size", "normalize": "(x / 255 - 0.5) / 0.5",
                     "layout": "float32 (batch, 1, D, H, W)"}  # fmt: skip
    task: TaskType
    class_names: list[str]

    def __init__(self, batch_size: int = 32, num_workers: int = 0, prediction: Prediction = Prediction()) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.prediction = batch_size, num_workers, prediction

    @property
    def input_size(self) -> tuple[int, int, int]:
        """The training volumes' (D, H, W): new volumes are resized to it."""
        return (self.size,) * 3

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.task, self.num_classes, self.in_channels, 3, list(self.class_names))

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.prediction.paths:
            if "predict" not in self.datasets:
                volumes, self.predicted_inputs = read_inputs(self.prediction.paths, self.input_size, 1, self.unreadable)
                self.datasets["predict"] = VolumeDataset(volumes[..., 0], np.full(len(volumes), -1, dtype=np.int64))
            return
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                volumes, labels = self.load_split(split)
                check_split_targets(labels, f"{type(self).__name__}", split, self.task, self.num_classes,
                                    self.class_names)  # fmt: skip
                self.datasets[split] = VolumeDataset(volumes, labels)


class MedMNIST3D(VolumeClassificationDataModule):
    """A MedMNIST 3D flag (``organmnist3d``, ``nodulemnist3d``, ...) at 28 or 64 voxels, official split, from
    ``<root>/medmnist/<flag>[_64].npz``; metadata from the medmnist package's INFO.

    Args:
        flag: the MedMNIST 3D dataset (``organmnist3d``, ``nodulemnist3d``...).
        size: 28 or 64 voxels per side.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        **kwargs: ``batch_size``, ``num_workers``.
    """

    def __init__(self, flag: str = "organmnist3d", size: int = 28, root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if flag not in FLAGS_3D:
            raise ValueError(f"Unknown MedMNIST 3D flag {flag!r} (data.flag); expected one of {', '.join(FLAGS_3D)}")
        if size not in (28, 64):
            raise ValueError(f"MedMNIST 3D comes at 28 or 64 voxels (data.size), got {size}")
        self.flag, self.size, self.root, self.info = flag, size, root, INFO[flag]
        self.num_classes = len(self.info["label"])
        self.task = "binary" if self.info["task"] == "binary-class" else "multiclass"
        self.class_names = [self.info["label"][str(i)] for i in range(self.num_classes)]
        self._arrays: dict[str, np.ndarray] | None = None

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        path = resolve_data_root(self.root) / "medmnist" / npz_name(self.flag, self.size)
        if not path.is_file():
            raise FileNotFoundError(f"MedMNIST 3D file not found: {path}; download it with the medmnist package")
        self._arrays = self._arrays or read_medmnist_npz(path)
        volumes = self._arrays[f"{split}_images"]
        if volumes.ndim != 4 or volumes.shape[1:] != (self.size,) * 3 or volumes.dtype != np.uint8:
            raise DatasetError(
                f"{path}[{split}_images]: expected uint8 volumes (N, {self.size}, {self.size}, {self.size}), "
                f"got {volumes.dtype} {volumes.shape}"
            )
        labels = check_labels(self._arrays[f"{split}_labels"], f"{path}[{split}_labels]", len(volumes),
                              self.num_classes, multilabel=False)  # fmt: skip
        return volumes, labels


class SyntheticVolumes(VolumeClassificationDataModule):
    """Synthetic 3D scans (organs from MONAI's ``create_test_image_3d``) with or without a small bright lesion
    that shows on a few slices only: a volume-level label a slice-sequence model has to find.

    Args:
        size: voxels per side.
        num_train: training volumes.
        num_val: validation volumes.
        num_test: test volumes.
        lesion_contrast: how much brighter the lesion is.
        seed: generator seed of the data.
        **kwargs: ``batch_size``, ``num_workers``.
    """

    task: TaskType = "binary"
    num_classes = 2
    class_names = ["no lesion", "lesion"]

    def __init__(
        self, size: int = 28, num_train: int = 800, num_val: int = 100, num_test: int = 200,
        lesion_contrast: float = 0.4, seed: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.size, self.lesion_contrast, self.seed = size, lesion_contrast, seed
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        seed = [self.seed, ("train", "val", "test").index(split)]
        return make_lesion_scans(self.sizes[split], self.size, seed, self.lesion_contrast, spatial_dims=3)
