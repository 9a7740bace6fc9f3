"""MedMNIST v2 2D datasets from their official ``.npz`` files; metadata comes from the medmnist package's INFO."""

import zipfile
from pathlib import Path

import numpy as np
from medmnist import INFO

from datamodules.arrays import NpyRows, cached_npz
from datamodules.data_root import resolve_data_root
from datamodules.image_classification import ImageClassificationDataModule, Split
from datamodules.spec import TaskType
from datamodules.validation import DatasetError, check_images, check_labels

FLAGS_2D: tuple[str, ...] = tuple(flag for flag in INFO if not flag.endswith("3d"))
SIZES = (28, 64, 128, 224)


def npz_name(flag: str, size: int) -> str:
    """The official file name: ``<flag>.npz`` at 28 px, ``<flag>_<size>.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def read_medmnist_npz(path: Path) -> dict[str, "NpyRows | np.ndarray"]:
    """All six arrays of a MedMNIST file, read without pickle: the images as rows of an uncompressed copy in the cache
    (``datamodules.arrays``: memory stays bounded at 224 px), the labels in memory; errors name the file and what is
    wrong."""
    keys = [f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels")]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MedMNIST file")
    try:
        with zipfile.ZipFile(path) as archive:
            found = sorted(name.removesuffix(".npy") for name in archive.namelist())
        missing = [k for k in keys if k not in found]
        if missing:
            raise DatasetError(f"{path}: missing keys {missing}; a MedMNIST file holds {keys}, found {found}")
        arrays = cached_npz(path, keys)
        return {key: np.asarray(rows) if key.endswith("labels") else rows for key, rows in arrays.items()}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise DatasetError(
            f"{path}: not a readable MedMNIST .npz (truncated or corrupt?): {error}. "
            "Delete it and download again (data.download=true)."
        ) from error


class MedMNIST(ImageClassificationDataModule):
    """Any 2D MedMNIST flag at 28/64/128/224 px, with the official train/val/test split.

    Files are looked up as ``<root>/medmnist/<flag>[_<size>].npz``; ``root`` defaults to ``$MEDLAB_DATA`` or
    ``../shared/data``. ``download=True`` fetches missing files with the medmnist package's own downloader.

    Args:
        flag: the MedMNIST 2D dataset (``breastmnist``, ``pathmnist``...); classes and channels come from
            ``medmnist.INFO``.
        size: image side: 28, 64, 128 or 224 (its own ``.npz`` file).
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        download: fetch a missing file with the medmnist package's downloader.
        **loader_kwargs: ``batch_size``, ``num_workers``, transforms (``ImageClassificationDataModule``).
    """

    def __init__(
        self,
        flag: str = "breastmnist",
        size: int = 28,
        root: str | None = None,
        download: bool = False,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        if flag not in FLAGS_2D:
            raise ValueError(f"Unknown MedMNIST 2D flag {flag!r} (data.flag); expected one of {', '.join(FLAGS_2D)}")
        if size not in SIZES:
            raise ValueError(f"Unknown MedMNIST size {size} (data.size); expected one of {SIZES}")
        self.flag = flag
        self.size = size
        self.root = root
        self.download = download
        self.info = INFO[flag]
        self._arrays: dict[str, NpyRows | np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.info["label"])

    @property
    def in_channels(self) -> int:
        return self.info["n_channels"]

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def task(self) -> TaskType:
        task = self.info["task"]
        if task.startswith("multi-label"):
            return "multilabel"
        return "binary" if task == "binary-class" else "multiclass"

    @property
    def class_names(self) -> list[str]:
        return [self.info["label"][str(i)] for i in range(self.num_classes)]

    @property
    def path(self) -> Path:
        return resolve_data_root(self.root) / "medmnist" / npz_name(self.flag, self.size)

    def prepare_data(self) -> None:
        if self.download and not self.path.is_file():
            import medmnist

            self.path.parent.mkdir(parents=True, exist_ok=True)
            dataset_class = getattr(medmnist, self.info["python_class"])
            try:
                dataset_class(split="train", root=str(self.path.parent), size=self.size, download=True)
            except Exception as error:
                url = self.info["url" if self.size == 28 else f"url_{self.size}"]
                raise RuntimeError(f"Downloading {url} to {self.path} failed: {error}") from error

    def split_source(self, split: Split) -> str:
        return f"{self.path}[{split}_labels]"

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            path = self.path
            if not path.is_file():
                raise FileNotFoundError(
                    f"MedMNIST file not found: {path} (expected {npz_name(self.flag, self.size)} under "
                    f"<data root>/medmnist). Set data.download=true to fetch it, or point data.root / "
                    "$MEDLAB_DATA at a folder holding medmnist/."
                )
            self._arrays = read_medmnist_npz(path)
        source = f"{self.path}[{split}_images]"
        images = check_images(self._arrays[f"{split}_images"], source, self.size, self.in_channels)
        labels = check_labels(
            self._arrays[f"{split}_labels"],
            f"{self.path}[{split}_labels]",
            len(images),
            self.num_classes,
            multilabel=self.task == "multilabel",
        )
        return images, labels
