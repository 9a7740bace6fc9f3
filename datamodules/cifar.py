"""CIFAR-10/100 through torchvision's datasets: the classic example the field starts from."""

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from datamodules.data_root import resolve_data_root
from datamodules.image_classification import ImageClassificationDataModule, Split, Task
from datamodules.validation import check_images, check_labels


def _without_checksums(dataset_class: type[datasets.CIFAR10]) -> type[datasets.CIFAR10]:
    """The same torchvision reader with the md5 checks off (torchvision skips a check whose md5 is None)."""
    return type(
        f"Unchecked{dataset_class.__name__}",
        (dataset_class,),
        {
            "train_list": [[name, None] for name, _ in dataset_class.train_list],
            "test_list": [[name, None] for name, _ in dataset_class.test_list],
            "meta": {**dataset_class.meta, "md5": None},
        },
    )


class CIFAR10(ImageClassificationDataModule):
    """CIFAR-10 from ``<root>/cifar10/cifar-10-batches-py`` (torchvision's layout).

    Validation is a seeded hold-out of ``val_size`` training images, so model selection never sees the test set.
    ``verify_checksums=False`` reads files in the official format whose md5 differs (e.g. re-exported ones).
    """

    dataset_class = datasets.CIFAR10
    folder = "cifar10"

    def __init__(
        self,
        root: str | None = None,
        download: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
        verify_checksums: bool = True,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.root = root
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed
        self.verify_checksums = verify_checksums
        self._class_names: list[str] | None = None

    num_classes = 10
    in_channels = 3
    task: Task = "multiclass"

    @property
    def class_names(self) -> list[str]:
        """From the dataset's own meta file once read; label indices before that."""
        return self._class_names or [str(i) for i in range(self.num_classes)]

    @property
    def path(self) -> Path:
        return resolve_data_root(self.root) / self.folder

    def _read(self, train: bool) -> datasets.CIFAR10:
        reader = self.dataset_class if self.verify_checksums else _without_checksums(self.dataset_class)
        try:
            return reader(str(self.path), train=train, download=False)
        except RuntimeError as error:
            folder = self.path / self.dataset_class.base_folder
            raise FileNotFoundError(
                f"{folder}: {error}. Expected torchvision's {self.dataset_class.__name__} files "
                f"({', '.join(name for name, _ in self.dataset_class.train_list + self.dataset_class.test_list)}, "
                f"{self.dataset_class.meta['filename']}); set data.download=true to fetch them"
                + ("" if not self.verify_checksums else ", or data.verify_checksums=false for re-exported files")
            ) from error

    def prepare_data(self) -> None:
        if self.download:
            self.path.mkdir(parents=True, exist_ok=True)
            self.dataset_class(str(self.path), train=True, download=True)
            self.dataset_class(str(self.path), train=False, download=True)

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        dataset = self._read(train=split != "test")
        source = str(self.path / self.dataset_class.base_folder)
        if len(dataset.classes) != self.num_classes:
            raise ValueError(f"{source}: meta lists {len(dataset.classes)} classes, expected {self.num_classes}")
        self._class_names = list(dataset.classes)
        images = check_images(np.asarray(dataset.data), source, 32, 3)
        labels = check_labels(np.asarray(dataset.targets), source, len(images), self.num_classes, False)
        if split == "test":
            return images, labels
        if not 0 < self.val_size < len(images):
            raise ValueError(f"data.val_size must be between 1 and {len(images) - 1}, got {self.val_size}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed)).numpy()
        keep = order[: self.val_size] if split == "val" else order[self.val_size :]
        return images[keep], labels[keep]


class CIFAR100(CIFAR10):
    """CIFAR-100 (fine labels) from ``<root>/cifar100/cifar-100-python``."""

    dataset_class = datasets.CIFAR100
    folder = "cifar100"
    num_classes = 100


def write_cifar10(root: Path, per_batch: int = 20) -> Path:
    """CIFAR-shaped data for tests and benchmarks: random pixels in CIFAR-10's on-disk format (torchvision's
    ``cifar-10-batches-py``, pickled batches and ``batches.meta``); read it with ``verify_checksums: false``."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for name in names:
        batch = {
            "batch_label": name,
            "data": rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8),
            "labels": [int(i % 10) for i in range(per_batch)],
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": classes, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root
