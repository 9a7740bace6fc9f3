import zipfile
from pathlib import Path

import numpy as np
import pytest
from medmnist import INFO

from datamodules.medmnist import FLAGS_2D, MedMNIST, npz_name
from datamodules.validation import DatasetError


def write_npz(root: Path, flag: str = "breastmnist", size: int = 28, **overrides: np.ndarray | None) -> Path:
    """A MedMNIST-format file under ``root/medmnist``; ``key=None`` drops a key, ``key=array`` replaces it."""
    info = INFO[flag]
    channels, n_labels = info["n_channels"], len(info["label"])
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 12), ("val", 4), ("test", 6)):
        shape = (count, size, size) if channels == 1 else (count, size, size, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if info["task"].startswith("multi-label"):
            arrays[f"{split}_labels"] = rng.integers(0, 2, (count, n_labels))
        else:
            arrays[f"{split}_labels"] = (np.arange(count) % n_labels)[:, None]  # every split holds two classes
    for key, value in overrides.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = root / "medmnist" / npz_name(flag, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_breastmnist_keeps_official_split(shared_data: Path) -> None:
    data = MedMNIST("breastmnist", root=str(shared_data))
    data.setup()
    assert {split: len(data.datasets[split]) for split in ("train", "val", "test")} == {
        "train": 546,
        "val": 78,
        "test": 156,
    }
    assert (data.num_classes, data.in_channels, data.task) == (2, 1, "binary")
    assert data.class_names == ["malignant", "normal, benign"]
    image, label = data.datasets["train"][0]
    assert image.shape == (1, 28, 28) and -1 <= image.min() <= image.max() <= 1 and label.ndim == 0


@pytest.mark.parametrize("flag", FLAGS_2D)
def test_every_2d_flag_reads_metadata_from_medmnist_info(flag: str, tmp_path: Path) -> None:
    write_npz(tmp_path, flag)
    data = MedMNIST(flag, root=str(tmp_path))
    data.setup("fit")
    info = INFO[flag]
    image, label = data.datasets["train"][0]
    assert data.num_classes == len(info["label"]) and image.shape[0] == info["n_channels"] == data.in_channels
    # Ordinal regression (RetinaMNIST) is trained as multi-class with cross-entropy, as in MedMNIST v2.
    expected = {"multi-label, binary-class": "multilabel", "binary-class": "binary"}.get(info["task"], "multiclass")
    assert data.task == expected
    assert label.shape == ((14,) if flag == "chestmnist" else ())


@pytest.mark.parametrize("size", [64, 128, 224])
def test_larger_sizes_read_their_own_file(size: int, tmp_path: Path) -> None:
    write_npz(tmp_path, "pneumoniamnist", size)
    data = MedMNIST("pneumoniamnist", size=size, root=str(tmp_path))
    data.setup("test")
    assert data.datasets["test"][0][0].shape == (1, size, size)


def test_labels_of_shape_n_and_n1_read_alike(tmp_path: Path) -> None:
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1])
    write_npz(tmp_path, train_labels=labels)
    flat = MedMNIST(root=str(tmp_path)).load_split("train")[1]
    write_npz(tmp_path, train_labels=labels[:, None])
    column = MedMNIST(root=str(tmp_path)).load_split("train")[1]
    assert flat.shape == column.shape == (12,) and (flat == column).all()


def test_unknown_flag_names_the_key_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"data\.flag.*breastmnist"):
        MedMNIST("breastmnistt")
    with pytest.raises(ValueError, match="data.flag"):
        MedMNIST("organmnist3d")


def test_missing_file_names_path_and_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"breastmnist\.npz.*download"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_truncated_archive_is_reported(tmp_path: Path) -> None:
    path = write_npz(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match=rf"{path}.*truncated or corrupt"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_corrupt_archive_is_reported(tmp_path: Path) -> None:
    path = write_npz(tmp_path)
    path.write_bytes(b"this is not a zip archive" * 100)
    with pytest.raises(DatasetError, match=rf"{path}.*truncated or corrupt"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path, train_labels=np.array([{"label": 1}] * 12, dtype=object))
    assert zipfile.is_zipfile(path)
    with pytest.raises(DatasetError, match=str(path)):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = write_npz(tmp_path, val_labels=None)
    with pytest.raises(DatasetError, match=rf"{path}: missing keys \['val_labels'\]"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_image_label_count_mismatch_is_named(tmp_path: Path) -> None:
    write_npz(tmp_path, train_labels=np.zeros(11, dtype=np.int64))
    with pytest.raises(DatasetError, match=r"train_labels\]: 11 labels for 12 images"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_wrong_image_dtype_is_named(tmp_path: Path) -> None:
    write_npz(tmp_path, train_images=np.zeros((12, 28, 28), dtype=np.int32))
    with pytest.raises(DatasetError, match=r"train_images\]: expected uint8.*int32"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_wrong_image_size_is_named(tmp_path: Path) -> None:
    write_npz(tmp_path, train_images=np.zeros((12, 32, 32), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"train_images\]: expected 28x28 images, got 32x32"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_wrong_channel_count_is_named(tmp_path: Path) -> None:
    write_npz(tmp_path, train_images=np.zeros((12, 28, 28, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"train_images\]: expected images of shape \(N, 28, 28, 1\)"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_nan_pixels_are_reported_with_the_image(tmp_path: Path) -> None:
    images = np.full((12, 28, 28), 0.5, dtype=np.float32)
    images[3, 4, 5] = np.nan
    write_npz(tmp_path, train_images=images)
    with pytest.raises(DatasetError, match=r"train_images\]: 1 NaN/inf pixel values \(first in image 3\)"):
        MedMNIST(root=str(tmp_path)).setup("fit")


def test_float_images_in_unit_range_are_accepted(tmp_path: Path) -> None:
    write_npz(tmp_path, train_images=np.full((12, 28, 28), 1.0, dtype=np.float32))
    images, _ = MedMNIST(root=str(tmp_path)).load_split("train")
    assert images.dtype == np.uint8 and (images == 255).all()


def test_labels_outside_the_classes_are_named(tmp_path: Path) -> None:
    write_npz(tmp_path, test_labels=np.array([0, 1, 2, 0, 1, 0]))
    with pytest.raises(DatasetError, match=r"test_labels\]: labels must be in \[0, 1\], got range \[0, 2\]"):
        MedMNIST(root=str(tmp_path)).setup("test")


def test_multilabel_targets_must_match_the_label_count(tmp_path: Path) -> None:
    write_npz(tmp_path, "chestmnist", train_labels=np.zeros((12, 13), dtype=np.int64))
    with pytest.raises(DatasetError, match=r"expected multi-label shape \(12, 14\)"):
        MedMNIST("chestmnist", root=str(tmp_path)).setup("fit")


def test_download_goes_through_medmnist_and_names_url_and_file_on_failure(tmp_path: Path) -> None:
    """The real download path up to the network: with no network, the error says what and where."""
    data = MedMNIST("breastmnist", root=str(tmp_path), download=True)
    try:
        data.prepare_data()
    except RuntimeError as error:
        assert INFO["breastmnist"]["url"] in str(error) and str(data.path) in str(error)
    else:  # a machine with a network really downloads the official file
        assert data.path.is_file()
