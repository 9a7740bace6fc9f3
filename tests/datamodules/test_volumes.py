from pathlib import Path

import numpy as np
import pytest

from datamodules.validation import DatasetError
from datamodules.volumes import FLAGS_3D, MedMNIST3D, SyntheticVolumes
from tests.conftest import read_summary


def write_npz3d(root: Path, flag: str = "organmnist3d", shape: tuple = (28, 28, 28), dtype: type = np.uint8) -> None:
    rng = np.random.default_rng(0)
    classes = 11 if flag == "organmnist3d" else 2
    arrays = {}
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (count, *shape)).astype(dtype)
        arrays[f"{split}_labels"] = rng.integers(0, classes, (count, 1))
    (root / "medmnist").mkdir(parents=True, exist_ok=True)
    np.savez(root / "medmnist" / f"{flag}.npz", **arrays)


def test_medmnist3d_reads_volumes_with_metadata_from_info(tmp_path: Path) -> None:
    write_npz3d(tmp_path)
    data = MedMNIST3D("organmnist3d", root=str(tmp_path))
    data.setup()
    volume, label = data.datasets["train"][0]
    assert volume.shape == (1, 28, 28, 28) and volume.min() >= -1 and volume.max() <= 1 and label.ndim == 0
    assert data.num_classes == 11 and data.task == "multiclass" and data.class_names[0] == "liver"
    assert set(FLAGS_3D) >= {"organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d"}


def test_medmnist3d_refuses_2d_flags_and_wrong_volumes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown MedMNIST 3D flag 'breastmnist'"):
        MedMNIST3D("breastmnist")
    write_npz3d(tmp_path, shape=(28, 28))
    with pytest.raises(DatasetError, match=r"organmnist3d.npz\[train_images\]: expected uint8 volumes"):
        MedMNIST3D("organmnist3d", root=str(tmp_path)).setup()


def test_synthetic_volumes_repeat_from_their_seed_and_balance_the_labels() -> None:
    first, second = (SyntheticVolumes(num_train=10, num_val=4, num_test=4) for _ in range(2))
    first.setup()
    second.setup()
    assert np.array_equal(first.datasets["train"].volumes, second.datasets["train"].volumes)
    assert first.datasets["train"].labels.float().mean() == 0.5


def test_the_medmnist3d_recipe_runs_on_the_flag_it_is_given(tmp_path: Path, run_medlab) -> None:
    write_npz3d(tmp_path / "data", "nodulemnist3d")
    run_dir = run_medlab("medmnist3d/cnn_gru", f"--data.root={tmp_path / 'data'}", "--data.flag=nodulemnist3d",
                         "--trainer.max_epochs=1")  # fmt: skip
    assert run_dir.parent == tmp_path / "runs" / "medmnist3d" / "nodulemnist3d_cnn_gru_28"
    assert read_summary(run_dir)["test"]["test/acc"] >= 0
