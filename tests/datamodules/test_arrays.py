"""MedMNIST archives converted once into the cache and read row by row: the same pixels, one conversion, a new one when
the archive changes, and a broken copy said in one line."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import MedMNIST
from datamodules.arrays import NpyRows
from datamodules.validation import DatasetError


def write_medmnist(folder: Path, seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", 40), ("val", 10), ("test", 12)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2)[:, None].astype(np.uint8)
    path = folder / "medmnist" / "breastmnist.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path, arrays


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLAB_CACHE", str(tmp_path / "cache"))


def test_images_are_read_row_by_row_from_one_conversion_redone_when_the_archive_changes(tmp_path: Path) -> None:
    path, arrays = write_medmnist(tmp_path, seed=0)
    data = MedMNIST(root=str(tmp_path), batch_size=8, num_workers=1)
    data.setup("fit")
    images = data.arrays["train"][0]
    assert isinstance(images, NpyRows) and images.shape == (40, 28, 28, 1)
    assert np.array_equal(np.asarray(images)[..., 0], arrays["train_images"])
    assert np.array_equal(images[3][..., 0], arrays["train_images"][3])
    (folder,) = (Path(os.environ["MEDLAB_CACHE"]) / "arrays").glob("breastmnist-*")
    record = json.loads((folder / "source.json").read_text())
    assert record["path"] == str(path.resolve()) and len(record["sha256"]) == 64
    converted = (folder / "train_images.npy").stat().st_mtime_ns

    # A worker process reads the rows itself; the batches are the pixels the archive holds, normalised.
    data.setup("test")
    batch, _ = next(iter(torch.utils.data.DataLoader(data.datasets["test"], batch_size=12, num_workers=1)))
    expected = (torch.from_numpy(arrays["test_images"]).float() / 255 - 0.5) / 0.5
    assert torch.allclose(batch[:, 0], expected, atol=1e-6)

    MedMNIST(root=str(tmp_path)).setup("fit")  # read again: the copy is current, nothing converted
    assert (folder / "train_images.npy").stat().st_mtime_ns == converted

    _, changed = write_medmnist(tmp_path, seed=1)  # a new archive at the same path
    os.utime(path, ns=(record["mtime_ns"] + 10**9, record["mtime_ns"] + 10**9))
    again = MedMNIST(root=str(tmp_path))
    again.setup("fit")
    assert np.array_equal(np.asarray(again.arrays["val"][0])[..., 0], changed["val_images"])


def test_a_truncated_copy_in_the_cache_is_refused_naming_the_archive(tmp_path: Path) -> None:
    path, _ = write_medmnist(tmp_path, seed=0)
    MedMNIST(root=str(tmp_path)).setup("fit")
    (folder,) = (Path(os.environ["MEDLAB_CACHE"]) / "arrays").glob("breastmnist-*")
    copy = folder / "train_images.npy"
    copy.write_bytes(copy.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=rf"{path.resolve()}\[train_images\]: .* bytes, expected .*truncated"):
        MedMNIST(root=str(tmp_path)).setup("fit")
