"""CIFAR-10/100 through torchvision's datasets: the classic example the field starts from."""

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from datamodules.data_root import resolve_data_root
from datamodules.image_classification import ImageClassificationDataModule, Split
from datamodules.spec import TaskType
from datamodules.validation import DatasetError, check_images, check_labels


class _PlainDataUnpickler(pickle.Unpickler):
    """Rebuilds only what CIFAR's batches hold: dicts, lists, strings, numbers and numpy arrays. Any other global a
    pickle names (``os.system``, ``builtins.eval``...) is refused, so a crafted batch file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only arrays and plain data")


def read_cifar_file(path: Path, md5: str | None) -> dict:
    """One CIFAR batch or meta file (torchvision's layout), read by ``_PlainDataUnpickler``; ``md5`` checked unless
    None. Errors name the file and what was expected."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing (expected torchvision's CIFAR files; data.download=true fetches them)"
        )
    if md5 is not None and not check_integrity(str(path), md5):
        raise DatasetError(
            f"{path}: md5 differs from the official file's ({md5}); data.verify_checksums=false reads re-exported files"
        )
    try:
        with path.open("rb") as handle:
            content = _PlainDataUnpickler(handle, encoding="latin1").load()
    except pickle.UnpicklingError as error:
        raise DatasetError(f"{path}: {error}") from error
    except Exception as error:  # truncated or not a pickle at all
        raise DatasetError(f"{path}: not a CIFAR batch file ({type(error).__name__}: {error})") from error
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(content).__name__}")
    return content


class CIFAR10(ImageClassificationDataModule):
    """CIFAR-10 from ``<root>/cifar10/cifar-10-batches-py`` (torchvision's layout).

    Validation is a seeded hold-out of ``val_size`` training images, so model selection never sees the test set.
    ``verify_checksums=False`` reads files in the official format whose md5 differs (e.g. re-exported ones).

    Args:
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        download: fetch the files with torchvision's downloader.
        val_size: training images held out for validation.
        split_seed: seed of that hold-out.
        verify_checksums: check the official md5s (false for re-exported files in the same format).
        **loader_kwargs: ``batch_size``, ``num_workers``, transforms (``ImageClassificationDataModule``).
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
    input_size = (32, 32)
    task: TaskType = "multiclass"

    @property
    def class_names(self) -> list[str]:
        """From the dataset's own meta file (read on first use); label indices while it is not there yet (before a
        download)."""
        if self._class_names is None and self.meta_path.is_file():
            self._read_meta()
        return self._class_names or [str(i) for i in range(self.num_classes)]

    @property
    def path(self) -> Path:
        return resolve_data_root(self.root) / self.folder

    def _read(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, 32, 32, 3) and labels of the training or test batches, as torchvision's reader lays them out."""
        cls, folder = self.dataset_class, self.path / self.dataset_class.base_folder
        images, labels = [], []
        for name, md5 in cls.train_list if train else cls.test_list:
            batch = read_cifar_file(folder / name, md5 if self.verify_checksums else None)
            key = "labels" if "labels" in batch else "fine_labels"
            if "data" not in batch or key not in batch:
                raise DatasetError(f"{folder / name}: expected 'data' and '{key}' entries, found {sorted(batch)}")
            data = np.asarray(batch["data"])
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise DatasetError(f"{folder / name}: expected data of shape (N, 3072), got {data.shape}")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[key]))
        self._read_meta()
        return np.concatenate(images), np.concatenate(labels)

    @property
    def meta_path(self) -> Path:
        return self.path / self.dataset_class.base_folder / self.dataset_class.meta["filename"]

    def _read_meta(self) -> None:
        meta_info = self.dataset_class.meta
        meta = read_cifar_file(self.meta_path, meta_info["md5"] if self.verify_checksums else None)
        if meta_info["key"] not in meta:
            raise DatasetError(f"{self.meta_path}: no {meta_info['key']!r} entry")
        names = [str(name) for name in meta[meta_info["key"]]]
        if len(names) != self.num_classes:
            raise DatasetError(f"{self.meta_path}: meta lists {len(names)} classes, expected {self.num_classes}")
        self._class_names = names

    def prepare_data(self) -> None:
        if self.download:
            self.path.mkdir(parents=True, exist_ok=True)
            self.dataset_class(str(self.path), train=True, download=True)
            self.dataset_class(str(self.path), train=False, download=True)

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self._read(train=split != "test")
        source = str(self.path / self.dataset_class.base_folder)
        images = check_images(images, source, 32, 3)
        labels = check_labels(labels, source, len(images), self.num_classes, False)
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
